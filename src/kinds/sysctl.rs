//! `sysctl`: a kernel parameter, kept in `/etc/sysctl.d/KEY.conf` and applied at once.
//!
//! What it does: writes `KEY = VALUE` to the file (atomically, root-owned, 0644), then runs
//! `sysctl -p FILE` so that the kernel has the value now; systemd-sysctl.service applies the
//! file again at every boot. Under `--root` it only writes the file (the image's first boot
//! applies it). `state: absent` removes the file and leaves the running kernel's value alone.
//! When the kernel refuses the value, the file is put back as it was and the run fails.
//! The plan compares the file, not the kernel's current value.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};
use crate::kinds::Kind;
use crate::kinds::resource::{Change, Content, Resource, State};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{STATE, Table, Type, attr};
use crate::playbook::yaml_node::Node;

/// Where the files go.
pub const SYSCTL_DIR: &str = "/etc/sysctl.d";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sysctl {
    /// The parameter, dotted (`net.ipv4.ip_forward`).
    pub key: String,
    pub state: State,
    /// Its value, one line; None with `state: absent`.
    pub value: Option<String>,
}

/// The file as it is on the host (None: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct SysctlActual {
    pub file: Option<Content>,
}

impl Sysctl {
    /// The file that holds it.
    pub fn path(&self) -> PathBuf {
        Path::new(SYSCTL_DIR).join(format!("{}.conf", self.key))
    }

    /// The file as converge writes it.
    pub fn file_content(&self) -> Option<Content> {
        let value = self.value.as_deref()?;
        Some(Content::from(format!("# Managed by converge.\n{} = {value}\n", self.key).as_str()))
    }

    fn error(&self, message: impl Into<String>, e: std::io::Error) -> Error {
        Error::resource_io(self.id(), message, e)
    }
}

/// Why `key` is not a parameter name: dotted words of letters, digits, `_` and `-`.
pub fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("it is empty")
    } else if !key.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        Some("it holds a character other than letters, digits, `_`, `-` and `.`")
    } else if key.split('.').any(str::is_empty) {
        Some("it has an empty part between dots")
    } else if key.len() > 200 {
        Some("it is longer than 200 characters")
    } else {
        None
    }
}

impl Resource for Sysctl {
    type Actual = SysctlActual;

    const KIND: Kind = Kind::Sysctl;

    const TABLE: Table = Table {
        names: Type::String,
        doc: "a kernel parameter in /etc/sysctl.d/KEY.conf, applied at once with sysctl -p",
        attrs: &[STATE, attr("value", Type::String, "its value, such as \"1\"")],
    };

    const PATHS_TELL_ALL: bool = true;

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<Sysctl> {
        let key = attrs.render_string(Self::KIND.name(), name);
        let key = key.filter(|key| match key_problem(key) {
            None => true,
            Some(why) => {
                let shown = crate::error::escape(key).into_owned();
                attrs.error(
                    name.span,
                    format!("`{shown}` is not a sysctl key: {why}"),
                    "not a key",
                    "name the parameter with dots, such as `net.ipv4.ip_forward`",
                );
                false
            }
        });
        let state = attrs.state();
        let value = attrs.node("value").and_then(|node| {
            let value = attrs.render_string("value", node)?;
            if value.contains('\n') || value.trim().is_empty() {
                attrs.error(
                    node.span,
                    "`value` must be one line of text",
                    "not one line",
                    "write the value as `sysctl -w` takes it, such as `value: \"1\"`",
                );
                return None;
            }
            Some(value.trim().to_owned())
        });
        attrs.one_of(&["value"], state == State::Present, name.span);
        Some(Sysctl { key: key?, state, value })
    }

    fn name(&self) -> String {
        self.key.clone()
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path()]
    }

    fn observe(&self, host: &Host) -> Result<SysctlActual> {
        let path = self.path();
        let file = match host.stat(&path).map_err(|e| self.error("cannot read it", e))? {
            Some(stat) if stat.kind == FileKind::File => {
                Some(Content::from(host.read(&path).map_err(|e| self.error("cannot read it", e))?))
            }
            Some(stat) => {
                return Err(Error::resource(
                    self.id(),
                    format!("{} is {}, not a file; remove it first", path.display(), stat.kind.name()),
                ));
            }
            None => None,
        };
        Ok(SysctlActual { file })
    }

    fn diff(&self, actual: &SysctlActual) -> Vec<Change> {
        match (self.state, &actual.file, self.file_content()) {
            (State::Absent, Some(_), _) => vec![Change::Remove],
            (State::Present, from, Some(to)) if from.as_ref() != Some(&to) => {
                let mut changes = if from.is_none() { vec![Change::Create] } else { Vec::new() };
                changes.push(Change::Content { file: Some(self.path()), from: from.clone(), to });
                changes
            }
            _ => vec![],
        }
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let path = self.path();
        if changes.contains(&Change::Remove) {
            return host.remove(&path).map_err(|e| self.error("cannot remove it", e));
        }
        let Some(content) = self.file_content() else { return Ok(()) };
        host.create_dirs(Path::new(SYSCTL_DIR))
            .and_then(|()| host.write_system_file(&path, content.bytes(), Mode(0o644)))
            .map_err(|e| self.error(format!("cannot write {}", path.display()), e))?;
        if host.root().is_some() {
            return Ok(()); // an offline root: its first boot applies the file
        }
        let argv = [std::ffi::OsString::from("sysctl"), "-p".into(), path.clone().into_os_string()];
        let output = host
            .program(&argv)
            .env("LC_ALL", "C")
            .command()
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| self.error("cannot run sysctl", e))?;
        if !output.status.success() {
            // A value the kernel refuses must not be applied at every boot: the file goes back
            // to what it was (or away), and the error says so.
            let before = changes.iter().find_map(|c| match c {
                Change::Content { from, .. } => Some(from.clone()),
                _ => None,
            });
            let restored = match before.flatten() {
                Some(old @ Content::Bytes(_)) => host.write_system_file(&path, old.bytes(), Mode(0o644)),
                Some(Content::Large { .. }) => Ok(()), // never ours: it was over 64 MiB
                None => host.remove(&path),
            };
            let stderr = String::from_utf8_lossy(&output.stderr);
            let what = match restored {
                Ok(()) => format!("{} is as it was", path.display()),
                Err(e) => format!("{} could not be put back: {e}", path.display()),
            };
            return Err(Error::resource(
                self.id(),
                format!("sysctl -p failed ({}): {}; {what}", output.status, stderr.trim()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(value: &str) -> Sysctl {
        Sysctl { key: "net.ipv4.ip_forward".into(), state: State::Present, value: Some(value.into()) }
    }

    #[test]
    fn the_file_names_the_key() {
        assert_eq!(forward("1").path(), Path::new("/etc/sysctl.d/net.ipv4.ip_forward.conf"));
        assert_eq!(forward("1").file_content().unwrap().as_text(), Some("# Managed by converge.\nnet.ipv4.ip_forward = 1\n"));
    }

    #[test]
    fn diffs() {
        let written = SysctlActual { file: forward("1").file_content() };
        assert_eq!(forward("1").diff(&written), vec![]);
        let changed = forward("0").diff(&written);
        assert!(matches!(&changed[..], [Change::Content { file: Some(_), from: Some(_), .. }]), "{changed:?}");
        let new = forward("1").diff(&SysctlActual { file: None });
        assert!(matches!(&new[..], [Change::Create, Change::Content { from: None, .. }]), "{new:?}");
        let gone = Sysctl { state: State::Absent, value: None, ..forward("1") };
        assert_eq!(gone.diff(&written), vec![Change::Remove]);
        assert_eq!(gone.diff(&SysctlActual { file: None }), vec![]);
    }

    #[test]
    fn keys_are_dotted_names() {
        for good in ["net.ipv4.ip_forward", "vm.swappiness", "net.ipv6.conf.eth-0.disable_ipv6", "kernel"] {
            assert_eq!(key_problem(good), None, "{good}");
        }
        for bad in ["", "net/ipv4", "a..b", ".a", "a.", "a b", "a=b", "../etc/passwd", "a\nb"] {
            assert!(key_problem(bad).is_some(), "{bad:?}");
        }
    }
}
