//! `nginx_site`: an nginx site that never goes live broken.
//!
//! What it does: writes /etc/nginx/sites-available/NAME (atomically: beside its final place, then
//! renamed in, so relative includes resolve as they will in production) and the
//! sites-enabled/NAME symlink, then runs `nginx -t` on the whole configuration. If nginx rejects
//! it, the previous file and link (or their absence) are put back byte for byte, and the run fails
//! with nginx's own message and the line it names; nothing is reloaded. If nginx accepts it, the
//! run reloads nginx once, through systemd (`ReloadUnit`), or starts it when it is not running.
//! `remove_default: true` also removes the distribution's `default` site from sites-enabled.
//! `state: absent` removes both the file and the link.

use std::path::{Path, PathBuf};

use crate::attrs::Attrs;
use crate::error::{Error, Result};
use crate::host::{FileKind, Host};
use crate::mode::Mode;
use crate::resource::{Change, Content, Resource, ResourceId, State};
use crate::yaml_node::Span;

const AVAILABLE: &str = "/etc/nginx/sites-available";
const ENABLED: &str = "/etc/nginx/sites-enabled";

#[derive(Debug, Clone, PartialEq)]
pub struct NginxSite {
    pub name: String,
    pub state: State,
    pub content: Option<Content>,
    pub enabled: bool,
    pub remove_default: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SiteActual {
    pub content: Option<Content>,
    /// Whether sites-enabled/NAME exists (a link or a file).
    pub enabled: bool,
    pub default_enabled: bool,
}

/// What was there before an apply, to put back when nginx rejects the new configuration.
struct Previous {
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
    default_link: Option<PathBuf>,
}

impl NginxSite {
    pub fn from_attrs(name: String, at: Span, attrs: &mut Attrs) -> Option<NginxSite> {
        let state = attrs.state();
        let inline = attrs.string("content");
        let template = attrs.node("template").and_then(|node| {
            let relative = attrs.render_string("template", node)?;
            attrs.templates().render_file(&relative, node.span).map_err(|e| attrs.errors.push(e)).ok()
        });
        attrs.one_of(&["content", "template"], state == State::Present, at);
        let enabled = attrs.bool("enabled").unwrap_or(true);
        let remove_default = attrs.bool("remove_default").unwrap_or(false);
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            attrs.error(
                at,
                format!("`{name}` is not a site name"),
                "expected a file name",
                "name the site like `mysite`",
            );
        }
        let content = inline.or(template).map(|t| Content::from(t.as_str()));
        Some(NginxSite { name, state, content, enabled, remove_default })
    }

    pub fn id(&self) -> ResourceId {
        ResourceId::new("nginx_site", &self.name)
    }

    pub fn available(&self) -> PathBuf {
        Path::new(AVAILABLE).join(&self.name)
    }

    fn enabled_link(&self) -> PathBuf {
        Path::new(ENABLED).join(&self.name)
    }

    fn io(&self, what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
        let what = what.to_owned();
        move |e| Error::resource_io(self.id(), what.clone(), e)
    }

    fn previous(&self, host: &Host) -> std::io::Result<Previous> {
        let content = match host.stat(&self.available())? {
            Some(stat) if stat.kind == FileKind::File => Some(host.read(&self.available())?),
            _ => None,
        };
        let link_of = |path: &Path| -> std::io::Result<Option<PathBuf>> {
            match host.stat(path)? {
                Some(stat) if stat.kind == FileKind::Symlink => Ok(Some(host.read_link(path)?)),
                _ => Ok(None),
            }
        };
        Ok(Previous {
            content,
            link: link_of(&self.enabled_link())?,
            default_link: link_of(&Path::new(ENABLED).join("default"))?,
        })
    }

    fn restore(&self, host: &Host, previous: &Previous) -> std::io::Result<()> {
        match &previous.content {
            Some(bytes) => host.write_system_file(&self.available(), bytes, Mode(0o644))?,
            None => host.remove(&self.available())?,
        }
        match &previous.link {
            Some(target) => host.system_symlink(target, &self.enabled_link())?,
            None => host.remove(&self.enabled_link())?,
        }
        if let Some(target) = &previous.default_link {
            host.system_symlink(target, &Path::new(ENABLED).join("default"))?;
        }
        Ok(())
    }
}

/// `nginx -t` on the host's whole configuration. Under `--root`, nginx inside the root runs
/// chrooted; without one there, the build machine's nginx checks DIR/etc/nginx/nginx.conf with
/// DIR as its prefix (its includes must then be relative, as in the tests). Returns nginx's
/// message when it rejects the configuration; None when there is no nginx to ask.
pub fn nginx_test(host: &Host) -> Result<Option<String>, String> {
    if host.root().is_some() && host.stat(Path::new("/etc/nginx/nginx.conf")).ok().flatten().is_none() {
        return Ok(None); // an image without nginx's configuration: nothing to check against
    }
    let mut command = match host.root() {
        None => host.program(&["nginx"]).command(),
        Some(_) if host.stat(Path::new("/usr/sbin/nginx")).ok().flatten().is_some() => {
            host.program(&["/usr/sbin/nginx"]).command()
        }
        Some(root) => {
            // `nginx -t` writes its pid file: keep it out of the root, and remove it below.
            let pid = format!("pid {};", test_pid_file().display());
            let mut command = host.tool(&["nginx"]).command();
            command.arg("-p").arg(format!("{}/", root.display()));
            command.arg("-c").arg(root.join("etc/nginx/nginx.conf")).args(["-g", &pid]);
            command
        }
    };
    command.args(["-t", "-q", "-e", "stderr"]);
    let output = command.output();
    let _ = std::fs::remove_file(test_pid_file());
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot run nginx -t: {e}")),
    };
    if output.status.success() {
        return Ok(Some(String::new()));
    }
    Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
}

fn test_pid_file() -> PathBuf {
    std::env::temp_dir().join(format!("converge-nginx-test-{}.pid", std::process::id()))
}

/// The line nginx names in its message ("... in /etc/nginx/sites-enabled/mysite:3"), if it is
/// in this site's file.
fn named_line(message: &str, site: &str, content: &Content) -> Option<(usize, String)> {
    let at = message.find(&format!("/{site}:"))? + site.len() + 2;
    let line: usize = message[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()?;
    let text = content.as_text()?.lines().nth(line.checked_sub(1)?)?.to_owned();
    Some((line, text))
}

impl Resource for NginxSite {
    type Actual = SiteActual;

    fn observe(&self, host: &Host) -> Result<SiteActual> {
        let previous = self.previous(host).map_err(self.io("cannot read it"))?;
        let exists = |p: &Path| host.stat(p).map(|s| s.is_some());
        Ok(SiteActual {
            content: previous.content.map(Content::from),
            enabled: exists(&self.enabled_link()).map_err(self.io("cannot read it"))?,
            default_enabled: exists(&Path::new(ENABLED).join("default")).map_err(self.io("cannot read it"))?,
        })
    }

    fn diff(&self, actual: &SiteActual) -> Vec<Change> {
        if self.state == State::Absent {
            let exists = actual.content.is_some() || actual.enabled;
            return if exists { vec![Change::Remove] } else { vec![] };
        }
        let mut changes = Vec::new();
        if let Some(to) = &self.content
            && actual.content.as_ref() != Some(to)
        {
            if actual.content.is_none() {
                changes.push(Change::Create);
            }
            changes.push(Change::Content {
                file: Some(self.available()),
                from: actual.content.clone(),
                to: to.clone(),
            });
        }
        let new = actual.content.is_none() && !actual.enabled;
        if actual.enabled != self.enabled {
            let from = (!new).then(|| actual.enabled.to_string());
            changes.push(Change::Set { attr: "enabled", from, to: self.enabled.to_string() });
        }
        if self.remove_default && actual.default_enabled {
            changes.push(Change::Set { attr: "default site", from: Some("enabled".into()), to: "removed".into() });
        }
        changes
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let previous = self.previous(host).map_err(self.io("cannot read it"))?;
        let written = (|| -> std::io::Result<()> {
            if changes.contains(&Change::Remove) {
                host.remove(&self.enabled_link())?;
                return host.remove(&self.available());
            }
            if let Some(content) = &self.content {
                host.create_dirs(Path::new(AVAILABLE))?;
                host.write_system_file(&self.available(), content.bytes(), Mode(0o644))?;
            }
            if self.enabled {
                host.create_dirs(Path::new(ENABLED))?;
                // Relative, so that it resolves inside an offline root as on the host.
                host.system_symlink(&Path::new("../sites-available").join(&self.name), &self.enabled_link())?;
            } else {
                host.remove(&self.enabled_link())?;
            }
            if self.remove_default {
                host.remove(&Path::new(ENABLED).join("default"))?;
            }
            Ok(())
        })();
        written.map_err(self.io("cannot write it"))?;
        if let Err(message) = nginx_test(host) {
            self.restore(host, &previous)
                .map_err(self.io("nginx rejected it, and putting the old site back failed"))?;
            let hint = self.content.as_ref().and_then(|c| named_line(&message, &self.name, c));
            let hint = hint.map(|(n, text)| format!("\n  line {n}: {}", text.trim())).unwrap_or_default();
            return Err(Error::resource(
                self.id(),
                format!(
                    "nginx rejected the configuration; the previous site was put back and nothing was reloaded:\n  {}{hint}",
                    message.replace('\n', "\n  ")
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> NginxSite {
        NginxSite {
            name: "mysite".into(),
            state: State::Present,
            content: Some(Content::from("server {}\n")),
            enabled: true,
            remove_default: true,
        }
    }

    #[test]
    fn diffs() {
        let converged =
            SiteActual { content: Some(Content::from("server {}\n")), enabled: true, default_enabled: false };
        assert_eq!(site().diff(&converged), vec![]);
        let fresh = SiteActual { content: None, enabled: false, default_enabled: true };
        let changes = site().diff(&fresh);
        assert_eq!(changes[0], Change::Create);
        assert!(changes.contains(&Change::Set { attr: "enabled", from: None, to: "true".into() }));
        assert!(changes.contains(&Change::Set {
            attr: "default site",
            from: Some("enabled".into()),
            to: "removed".into()
        }));
        let mut gone = site();
        gone.state = State::Absent;
        assert_eq!(gone.diff(&converged), vec![Change::Remove]);
        assert_eq!(gone.diff(&SiteActual { content: None, enabled: false, default_enabled: false }), vec![]);
    }

    #[test]
    fn finds_the_line_nginx_names() {
        let content = Content::from("server {\n  listen 80;\n  locaton / {}\n}\n");
        let message = "[emerg] 1#1: unknown directive \"locaton\" in /etc/nginx/sites-enabled/mysite:3";
        assert_eq!(named_line(message, "mysite", &content), Some((3, "  locaton / {}".into())));
        assert_eq!(named_line("no line here", "mysite", &content), None);
    }
}
