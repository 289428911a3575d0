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
//!
//! Between the write and nginx's verdict the site is recorded in the nginx site journal
//! ([`journal::SITE_PATH`]), saved before anything is written, with what to put back: the previous
//! file's bytes, mode and owner, the previous links (or their absence). A run killed during
//! `nginx -t` leaves it behind; the next `apply` finishes it first ([`finish_interrupted`]):
//! nginx is asked again, and the site is kept or the recorded one put back, mode and owner too.
//! Until then `plan` shows the site as not yet tested, never as converged.

pub mod journal;

use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use crate::host::systemd::JobAction;
use crate::kinds::notify::Notify;
use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{Failure, FileKind, Host};
use crate::kinds::Kind;
use crate::kinds::resource::{Attr, Change, Content, Need, Resource, ResourceId, State};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{CONTENT, STATE, TEMPLATE, Table, Type, attr};
use crate::playbook::yaml_node::{Node, Span};
use journal::{Bytes, Entry, SiteInTest};

const AVAILABLE: &str = "/etc/nginx/sites-available";
const ENABLED: &str = "/etc/nginx/sites-enabled";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// An interrupted run wrote it and nginx has not yet accepted it (the nginx site journal
    /// names it).
    pub untested: bool,
}

/// What a path holds now, as the journal records it; a directory or a special file is an error.
fn entry(host: &Host, path: &Path) -> std::io::Result<Entry> {
    let Some(stat) = host.stat(path)? else { return Ok(Entry::Absent) };
    Ok(match stat.kind {
        FileKind::File => {
            Entry::File { content: Bytes::new(host.read(path)?), mode: stat.mode.0, uid: stat.uid, gid: stat.gid }
        }
        FileKind::Symlink => {
            let target = host.read_link(path)?.into_os_string().into_vec();
            Entry::Link { target: Bytes::new(target), uid: stat.uid, gid: stat.gid }
        }
        kind => {
            return Err(std::io::Error::other(format!("{} is {}, not a file or a link", path.display(), kind.name())));
        }
    })
}

/// Puts `was` back at `path`, with its mode and owner; nothing is written where it is there.
fn put_back(host: &Host, path: &Path, was: &Entry) -> std::io::Result<()> {
    if entry(host, path).ok().as_ref() == Some(was) {
        return Ok(());
    }
    match was {
        Entry::Absent => host.remove(path),
        Entry::File { content, mode, uid, gid } => host.write_atomic(path, content.as_slice(), Mode(*mode), *uid, *gid),
        Entry::Link { target, uid, gid } => {
            let target = PathBuf::from(std::ffi::OsString::from_vec(target.as_slice().to_vec()));
            host.symlink(&target, path, *uid, *gid)
        }
    }
}

/// Puts back what the journal recorded for its site.
fn restore(host: &Host, was: &SiteInTest) -> std::io::Result<()> {
    put_back(host, &Path::new(AVAILABLE).join(&was.site), &was.available)?;
    put_back(host, &Path::new(ENABLED).join(&was.site), &was.enabled)?;
    match &was.default {
        Some(default) => put_back(host, &Path::new(ENABLED).join("default"), default),
        None => Ok(()),
    }
}

/// What [`finish_interrupted`] did with the site an interrupted run left untested.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finished {
    pub id: ResourceId,
    /// nginx accepted it; otherwise the previous site was put back.
    pub accepted: bool,
    /// nginx's message when it rejected the site.
    pub message: String,
}

/// Finishes what an interrupted run left in the nginx site journal: asks `nginx -t` about the
/// site as it is, and keeps it or puts the recorded one back; then removes the journal. Runs
/// under the run lock, before anything is planned.
pub fn finish_interrupted(host: &Host) -> Result<Option<Finished>> {
    let Some(was) = journal::load_site(host)? else { return Ok(None) };
    if was.site.is_empty() || was.site.contains('/') || was.site.starts_with('.') {
        return Err(Error::resource(
            journal::SITE_PATH,
            format!("the nginx site journal names `{}`, which is not a site; remove it to go on", was.site),
        ));
    }
    let id = ResourceId::new(Kind::NginxSite, was.site.clone());
    let io = |what: &'static str| {
        let id = id.clone();
        move |e| Error::resource_io(&id, what, e)
    };
    let verdict = if was.rolling_back {
        Err("nginx had rejected it; an interrupted run was putting the previous site back".to_owned())
    } else {
        nginx_test(host)
    };
    let finished = match verdict {
        Ok(_) => Finished { id: id.clone(), accepted: true, message: String::new() },
        Err(message) => {
            restore(host, &was)
                .map_err(io("an interrupted run left it untested, and putting the old site back failed"))?;
            Finished { id: id.clone(), accepted: false, message }
        }
    };
    journal::clear_site(host).map_err(io("cannot remove the nginx site journal"))?;
    Ok(Some(finished))
}

impl NginxSite {
    /// Builds it; `name` is the kind key's value, rendered (empty when it could not be).
    fn build(name: String, at: Span, attrs: &mut Attrs) -> Option<NginxSite> {
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

    /// What is there now, for the journal and for a rollback.
    fn previous(&self, host: &Host) -> std::io::Result<SiteInTest> {
        Ok(SiteInTest {
            site: self.name.clone(),
            rolling_back: false,
            available: entry(host, &self.available())?,
            enabled: entry(host, &self.enabled_link())?,
            default: match self.remove_default {
                true => Some(entry(host, &Path::new(ENABLED).join("default"))?),
                false => None,
            },
        })
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
    let pid_file = crate::host::Scratch::new("nginx-test.pid");
    let test = ["-t", "-q", "-e", "stderr"];
    let program = match host.root() {
        None => host.program(&[&["nginx"][..], &test].concat()),
        Some(_) if host.stat(Path::new("/usr/sbin/nginx")).ok().flatten().is_some() => {
            host.program(&[&["/usr/sbin/nginx"][..], &test].concat())
        }
        Some(root) => {
            // `nginx -t` writes its pid file: keep it out of the root (removed when dropped).
            let prefix = format!("{}/", root.display());
            let conf = root.join("etc/nginx/nginx.conf").display().to_string();
            let pid = format!("pid {};", pid_file.path().display());
            host.tool(&[&["nginx", "-p", &prefix, "-c", &conf, "-g", &pid][..], &test].concat())
        }
    };
    match program.run(false) {
        Ok(()) => Ok(Some(String::new())),
        Err(Failure::Start { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(Failure::Start { error, .. }) => Err(format!("cannot run nginx -t: {error}")),
        Err(Failure::Said { status, .. } | Failure::Streamed(status)) if status.signal().is_some() => {
            Err(format!("nginx -t was killed by signal {} before it answered", status.signal().unwrap_or_default()))
        }
        Err(Failure::Said { said, .. }) => Err(said),
        Err(Failure::Streamed(status)) => Err(format!("nginx -t failed ({status})")),
    }
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

    const KIND: Kind = Kind::NginxSite;

    const TABLE: Table = Table {
        names: Type::String,
        doc: "an nginx site in sites-available, enabled in sites-enabled, checked with nginx -t",
        attrs: &[
            STATE,
            CONTENT,
            TEMPLATE,
            attr("enabled", Type::Bool, "linked in sites-enabled (default true)"),
            attr("remove_default", Type::Bool, "remove the distribution's default site (default false)"),
        ],
    };

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<NginxSite> {
        let site = attrs.render_string(Self::KIND.name(), name);
        let resource = NginxSite::build(site.clone().unwrap_or_default(), name.span, attrs)?;
        site.map(|_| resource)
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    /// nginx itself, installed first when the playbook installs it.
    fn needs(&self) -> Vec<Need> {
        vec![Need::Package(&["nginx", "nginx-light", "nginx-full", "nginx-extras"])]
    }

    fn content(&self) -> Option<&Content> {
        self.content.as_ref()
    }

    /// A changed site reloads nginx, or starts it when it is not running.
    fn implicit_notify(&self) -> Vec<Notify> {
        [JobAction::Reload, JobAction::Start]
            .into_iter()
            .map(|action| Notify { action, unit: "nginx.service".into() })
            .collect()
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.available(), self.enabled_link(), Path::new(ENABLED).join("default")]
    }

    fn slow_step(&self) -> Option<&'static str> {
        Some("nginx -t")
    }

    fn observe(&self, host: &Host) -> Result<SiteActual> {
        let content = match host.stat(&self.available()).map_err(self.io("cannot read it"))? {
            Some(stat) if stat.kind == FileKind::File => {
                Some(Content::from(host.read(&self.available()).map_err(self.io("cannot read it"))?))
            }
            _ => None,
        };
        let exists = |p: &Path| host.stat(p).map(|s| s.is_some());
        Ok(SiteActual {
            content,
            enabled: exists(&self.enabled_link()).map_err(self.io("cannot read it"))?,
            default_enabled: exists(&Path::new(ENABLED).join("default")).map_err(self.io("cannot read it"))?,
            untested: journal::load_site(host)?.is_some_and(|s| s.site == self.name),
        })
    }

    fn diff(&self, actual: &SiteActual) -> Vec<Change> {
        let mut changes = Vec::new();
        if actual.untested {
            // `apply` finishes the interrupted run's test before anything else.
            changes.push(Change::set(
                Attr::NginxTest,
                Some("not run (a run was stopped before nginx answered)"),
                "run, then kept or rolled back",
            ));
        }
        if self.state == State::Absent {
            let exists = actual.content.is_some() || actual.enabled;
            if exists {
                changes.insert(0, Change::Remove);
            }
            return changes;
        }
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
            let from = (!new).then_some(actual.enabled);
            changes.push(Change::set(Attr::Enabled, from, self.enabled));
        }
        if self.remove_default && actual.default_enabled {
            changes.push(Change::set(Attr::DefaultSite, Some("enabled"), "removed"));
        }
        changes
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        // `apply` did this before planning; a site left untested must not become "previous".
        finish_interrupted(host)?;
        let mut previous = self.previous(host).map_err(self.io("cannot read it"))?;
        // Recorded before anything is written: a run killed from here on is finished by the next.
        journal::save_site(host, &previous).map_err(self.io("cannot write the nginx site journal"))?;
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
        if let Err(e) = written {
            // Put back what was written so far; when that fails too, the journal stays for the
            // next run.
            if restore(host, &previous).is_ok() {
                let _ = journal::clear_site(host);
            }
            return Err(self.io("cannot write it")(e));
        }
        if let Err(message) = nginx_test(host) {
            previous.rolling_back = true;
            let _ = journal::save_site(host, &previous);
            restore(host, &previous).map_err(self.io("nginx rejected it, and putting the old site back failed"))?;
            journal::clear_site(host).map_err(self.io("cannot remove the nginx site journal"))?;
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
        journal::clear_site(host).map_err(self.io("nginx accepted it, but the nginx site journal cannot be removed"))
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
        let converged = SiteActual {
            content: Some(Content::from("server {}\n")),
            enabled: true,
            default_enabled: false,
            untested: false,
        };
        assert_eq!(site().diff(&converged), vec![]);
        let untested = SiteActual { untested: true, ..converged.clone() };
        assert!(matches!(site().diff(&untested)[..], [Change::Set { attr: Attr::NginxTest, .. }]), "never converged");
        let fresh = SiteActual { content: None, enabled: false, default_enabled: true, untested: false };
        let changes = site().diff(&fresh);
        assert_eq!(changes[0], Change::Create);
        assert!(changes.contains(&Change::set_to(Attr::Enabled, true)));
        assert!(changes.contains(&Change::set(Attr::DefaultSite, Some("enabled"), "removed")));
        let mut gone = site();
        gone.state = State::Absent;
        assert_eq!(gone.diff(&converged), vec![Change::Remove]);
        let nothing = SiteActual { content: None, enabled: false, default_enabled: false, untested: false };
        assert_eq!(gone.diff(&nothing), vec![]);
    }

    /// A run killed while it put the old site back: the next one finishes that without asking
    /// nginx, bytes, mode, owner and links as recorded.
    #[test]
    fn an_interrupted_rollback_is_finished_as_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(Some(dir.path().to_owned()));
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        host.create_dirs(Path::new(ENABLED)).unwrap();
        host.create_dirs(Path::new(AVAILABLE)).unwrap();
        host.write_atomic(&site().available(), b"broken\n", Mode(0o644), uid, gid).unwrap();
        host.symlink(Path::new("../sites-available/mysite"), &site().enabled_link(), uid, gid).unwrap();
        let was = SiteInTest {
            site: "mysite".into(),
            rolling_back: true,
            available: Entry::File { content: Bytes::new(b"old\n".to_vec()), mode: 0o640, uid, gid },
            enabled: Entry::Absent,
            default: Some(Entry::Link { target: Bytes::new(b"../sites-available/default".to_vec()), uid, gid }),
        };
        journal::save_site(&host, &was).unwrap();
        assert!(site().observe(&host).unwrap().untested);

        let finished = finish_interrupted(&host).unwrap().expect("something to finish");
        assert!(!finished.accepted);
        assert_eq!(host.read(&site().available()).unwrap(), b"old\n");
        assert_eq!(host.stat(&site().available()).unwrap().unwrap().mode, Mode(0o640));
        assert_eq!(host.stat(&site().enabled_link()).unwrap(), None);
        assert_eq!(
            host.read_link(&Path::new(ENABLED).join("default")).unwrap(),
            Path::new("../sites-available/default")
        );
        assert_eq!(journal::load_site(&host).unwrap(), None);
        assert!(!site().observe(&host).unwrap().untested);
        assert_eq!(finish_interrupted(&host).unwrap(), None, "finished once");
    }

    #[test]
    fn finds_the_line_nginx_names() {
        let content = Content::from("server {\n  listen 80;\n  locaton / {}\n}\n");
        let message = "[emerg] 1#1: unknown directive \"locaton\" in /etc/nginx/sites-enabled/mysite:3";
        assert_eq!(named_line(message, "mysite", &content), Some((3, "  locaton / {}".into())));
        assert_eq!(named_line("no line here", "mysite", &content), None);
    }
}
