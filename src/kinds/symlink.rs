//! `symlink`: a symbolic link pointing at `target`.
//!
//! What it does: creates the link, or repoints it atomically (a new link renamed over the old);
//! `state: absent` removes it. It never replaces a file or directory that stands in its place.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::host::{FileKind, Host};
use crate::kinds::resource::{Attr, Change, Need, Overlap, Resource, State};
use crate::kinds::{Kind, path_needs};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{STATE, Table, Type, attr};
use crate::playbook::yaml_node::Node;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Symlink {
    pub path: PathBuf,
    pub state: State,
    /// Where the link points, exactly as written (relative targets stay relative).
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SymlinkActual {
    Absent,
    Link { target: String },
}

impl Resource for Symlink {
    type Actual = SymlinkActual;

    const KIND: Kind = Kind::Symlink;

    const TABLE: Table = Table {
        names: Type::Path,
        doc: "a symbolic link",
        attrs: &[STATE, attr("target", Type::String, "what the link points to")],
    };

    const PATHS_TELL_ALL: bool = true;

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<Symlink> {
        let path = attrs.managed_path(Self::KIND.name(), name);
        let state = attrs.state();
        let target = attrs.string("target");
        attrs.one_of(&["target"], state == State::Present, name.span);
        Some(Symlink { path: path?, state, target })
    }

    fn name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn needs(&self) -> Vec<Need> {
        path_needs(&self.path, self.state == State::Present)
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    /// A link: beside long work, in the playbook's order.
    fn overlap(&self) -> Overlap {
        Overlap::Beside
    }

    fn observe(&self, host: &Host) -> Result<SymlinkActual> {
        let id = self.id();
        let io = |e| Error::resource_io(&id, "cannot read it", e);
        let Some(stat) = host.stat(&self.path).map_err(io)? else {
            return Ok(SymlinkActual::Absent);
        };
        if stat.kind != FileKind::Symlink {
            return Err(Error::resource(
                &id,
                format!("{} is {}, not a symlink; remove it first", self.path.display(), stat.kind.name()),
            ));
        }
        let target = host.read_link(&self.path).map_err(io)?;
        Ok(SymlinkActual::Link { target: target.to_string_lossy().into_owned() })
    }

    fn diff(&self, actual: &SymlinkActual) -> Vec<Change> {
        match (self.state, actual, &self.target) {
            (State::Absent, SymlinkActual::Absent, _) | (State::Present, _, None) => vec![],
            (State::Absent, SymlinkActual::Link { .. }, _) => vec![Change::Remove],
            (State::Present, SymlinkActual::Absent, Some(to)) => {
                vec![Change::Create, Change::set_to(Attr::Target, to)]
            }
            (State::Present, SymlinkActual::Link { target }, Some(to)) if target != to => {
                vec![Change::set(Attr::Target, Some(target), to)]
            }
            (State::Present, SymlinkActual::Link { .. }, Some(_)) => vec![],
        }
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let id = self.id();
        if changes.contains(&Change::Remove) {
            return host.remove(&self.path).map_err(|e| Error::resource_io(&id, "cannot remove it", e));
        }
        let Some(target) = &self.target else {
            return Ok(());
        };
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        host.symlink(target.as_ref(), &self.path, uid, gid).map_err(|e| Error::resource_io(&id, "cannot create it", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(to: &str) -> Symlink {
        Symlink { path: "/etc/nginx/sites-enabled/app".into(), state: State::Present, target: Some(to.into()) }
    }

    #[test]
    fn create_repoint_and_converged() {
        assert_eq!(link("/a").diff(&SymlinkActual::Absent), vec![Change::Create, Change::set_to(Attr::Target, "/a")]);
        let actual = SymlinkActual::Link { target: "/b".into() };
        assert_eq!(link("/a").diff(&actual), vec![Change::set(Attr::Target, Some("/b"), "/a")]);
        assert_eq!(link("/b").diff(&actual), vec![]);
    }

    #[test]
    fn absent() {
        let mut l = link("/a");
        l.state = State::Absent;
        assert_eq!(l.diff(&SymlinkActual::Link { target: "/a".into() }), vec![Change::Remove]);
        assert_eq!(l.diff(&SymlinkActual::Absent), vec![]);
    }
}
