//! `directory`: a directory with its owner, group and mode.
//!
//! What it does: creates the directory (and any missing parents, owned by root, 0755), then sets
//! owner, group and mode; `state: absent` removes it with everything inside.
//! Why: files, sockets and venvs need their directory first; converge orders a directory before
//! every resource inside it on its own.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};
use crate::kinds::file::apply_attributes;
use crate::kinds::resource::{Change, Ownership, Resource, State};
use crate::kinds::{observe_owner, owner_ids};
use crate::playbook::attrs::Attrs;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Directory {
    pub path: PathBuf,
    pub state: State,
    pub ownership: Ownership,
    pub mode: Option<Mode>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DirectoryActual {
    Absent,
    Present { mode: Mode, owner: String, group: String },
}

pub const DEFAULT_MODE: Mode = Mode(0o755);

impl Directory {
    pub fn from_attrs(path: PathBuf, attrs: &mut Attrs) -> Option<Directory> {
        let state = attrs.state();
        let ownership = attrs.ownership();
        let mode = attrs.mode_for("mode", true);
        Some(Directory { path, state, ownership, mode })
    }
}

impl Resource for Directory {
    type Actual = DirectoryActual;

    fn observe(&self, host: &Host) -> Result<DirectoryActual> {
        let id = format!("directory:{}", self.path.display());
        let io = |e| Error::resource_io(&id, "cannot read it", e);
        let Some(stat) = host.stat(&self.path).map_err(io)? else {
            return Ok(DirectoryActual::Absent);
        };
        if stat.kind != FileKind::Directory {
            return Err(Error::resource(
                &id,
                format!("{} is {}, not a directory; remove it first", self.path.display(), stat.kind.name()),
            ));
        }
        let (owner, group) = observe_owner(host, &stat).map_err(io)?;
        Ok(DirectoryActual::Present { mode: stat.mode, owner, group })
    }

    fn diff(&self, actual: &DirectoryActual) -> Vec<Change> {
        match (self.state, actual) {
            (State::Absent, DirectoryActual::Absent) => vec![],
            (State::Absent, DirectoryActual::Present { .. }) => vec![Change::Remove],
            (State::Present, DirectoryActual::Absent) => {
                let mut changes = vec![Change::Create];
                changes.push(Change::Set {
                    attr: "mode",
                    from: None,
                    to: self.mode.unwrap_or(DEFAULT_MODE).to_string(),
                });
                changes.extend(self.ownership.diff("", ""));
                changes
            }
            (State::Present, DirectoryActual::Present { mode, owner, group }) => {
                let mut changes = Vec::new();
                if let Some(want) = self.mode.filter(|m| m != mode) {
                    changes.push(Change::Set { attr: "mode", from: Some(mode.to_string()), to: want.to_string() });
                }
                changes.extend(self.ownership.diff(owner, group));
                changes
            }
        }
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let id = format!("directory:{}", self.path.display());
        if changes.contains(&Change::Remove) {
            return host.remove(&self.path).map_err(|e| Error::resource_io(&id, "cannot remove it", e));
        }
        if changes.contains(&Change::Create) {
            let (uid, gid) = owner_ids(host, &self.ownership, None)
                .map_err(|e| Error::resource_io(&id, "cannot resolve its owner", e))?;
            let missing: Vec<_> =
                self.path.ancestors().skip(1).take_while(|p| matches!(host.stat(p), Ok(None))).collect();
            let (euid, egid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
            for parent in missing.into_iter().rev() {
                host.create_dir(parent, DEFAULT_MODE, euid, egid)
                    .map_err(|e| Error::resource_io(&id, format!("cannot create {}", parent.display()), e))?;
            }
            return host
                .create_dir(&self.path, self.mode.unwrap_or(DEFAULT_MODE), uid, gid)
                .map_err(|e| Error::resource_io(&id, "cannot create it", e));
        }
        apply_attributes(host, &self.path, changes, &self.ownership)
            .map_err(|e| Error::resource_io(&id, "cannot change its attributes", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        Directory {
            path: "/srv/app".into(),
            state: State::Present,
            ownership: Ownership { owner: Some("vagrant".into()), group: Some("www-data".into()) },
            mode: Some(Mode(0o2775)),
        }
    }

    #[test]
    fn converged() {
        let actual = DirectoryActual::Present { mode: Mode(0o2775), owner: "vagrant".into(), group: "www-data".into() };
        assert_eq!(dir().diff(&actual), vec![]);
    }

    #[test]
    fn created_with_mode_and_owner() {
        let changes = dir().diff(&DirectoryActual::Absent);
        assert_eq!(changes[0], Change::Create);
        assert!(changes.contains(&Change::Set { attr: "mode", from: None, to: "2775".into() }));
        assert!(changes.contains(&Change::Set { attr: "group", from: Some(String::new()), to: "www-data".into() }));
    }

    #[test]
    fn group_and_mode_drift() {
        let actual = DirectoryActual::Present { mode: Mode(0o755), owner: "vagrant".into(), group: "root".into() };
        assert_eq!(
            dir().diff(&actual),
            vec![
                Change::Set { attr: "mode", from: Some("0755".into()), to: "2775".into() },
                Change::Set { attr: "group", from: Some("root".into()), to: "www-data".into() },
            ]
        );
    }

    #[test]
    fn absent() {
        let mut d = dir();
        d.state = State::Absent;
        assert_eq!(d.diff(&DirectoryActual::Absent), vec![]);
        let actual = DirectoryActual::Present { mode: Mode(0o755), owner: "root".into(), group: "root".into() };
        assert_eq!(d.diff(&actual), vec![Change::Remove]);
    }
}
