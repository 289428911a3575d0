//! `directory`: a directory with its owner, group and mode.
//!
//! What it does: creates the directory (and any missing parents, owned by root, 0755), then sets
//! owner, group and mode; `state: absent` removes it with everything inside. With `source:`, it
//! also copies a tree from beside the playbook into it (tree.rs), and `purge: true` removes what
//! the source does not have.
//! Why: files, sockets and venvs need their directory first; converge orders a directory before
//! every resource inside it on its own.

pub mod tree;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};
use crate::kinds::file::apply_attributes;
use crate::kinds::resource::{Attr, Change, Need, Overlap, Ownership, Provide, Resource, State, ownership_changes};
use crate::kinds::{Kind, observe_owner, owner_ids, ownership_needs, path_needs};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{GROUP, MODE, OWNER, STATE, Table, Type, attr};
use crate::playbook::yaml_node::Node;
use tree::{Tree, TreeActual};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Directory {
    pub path: PathBuf,
    pub state: State,
    pub ownership: Ownership,
    pub mode: Option<Mode>,
    /// The tree `source:` copies into it.
    pub tree: Option<Tree>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DirectoryActual {
    Absent,
    /// It exists; `tree` is what it holds of the source's tree (empty without `source:`).
    Present { mode: Mode, owner: String, group: String, tree: TreeActual },
}

pub const DEFAULT_MODE: Mode = Mode(0o755);

impl Resource for Directory {
    type Actual = DirectoryActual;

    const KIND: Kind = Kind::Directory;

    const TABLE: Table = Table {
        names: Type::Path,
        doc: "a directory (and its missing parents) with its owner, group and mode",
        attrs: &[
            STATE,
            OWNER,
            GROUP,
            MODE,
            attr("source", Type::String, "a directory beside the playbook whose tree is copied into it"),
            attr("purge", Type::Bool, "with `source`: remove what the source does not have"),
            attr("file_mode", Type::Mode, "with `source`: the mode of every file (else 0755 if executable, 0644)"),
            attr("dir_mode", Type::Mode, "with `source`: the mode of every directory below it (else 0755)"),
        ],
    };

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<Directory> {
        let path = attrs.managed_path(Self::KIND.name(), name);
        let state = attrs.state();
        let ownership = attrs.ownership();
        let mode = attrs.mode_for("mode", true);
        let tree = read_tree(attrs, state);
        Some(Directory { path: path?, state, ownership, mode, tree: tree? })
    }

    fn name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// A directory makes its missing parents itself.
    fn needs(&self) -> Vec<Need> {
        let mut needs = path_needs(&self.path, false);
        needs.extend(ownership_needs(&self.ownership));
        needs
    }

    fn provides(&self) -> Vec<Provide> {
        vec![Provide::Directory(self.path.clone())]
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.path.clone()];
        paths.extend(self.tree.iter().flat_map(|tree| tree.paths(&self.path)));
        paths
    }

    /// A directory: beside long work, in the playbook's order.
    fn overlap(&self) -> Overlap {
        Overlap::Beside
    }

    fn observe(&self, host: &Host) -> Result<DirectoryActual> {
        let id = self.id();
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
        let tree = match &self.tree {
            Some(tree) => tree.observe(host, &self.path, &id)?,
            None => TreeActual::default(),
        };
        Ok(DirectoryActual::Present { mode: stat.mode, owner, group, tree })
    }

    fn diff(&self, actual: &DirectoryActual) -> Vec<Change> {
        match (self.state, actual) {
            (State::Absent, DirectoryActual::Absent) => vec![],
            (State::Absent, DirectoryActual::Present { .. }) => vec![Change::Remove],
            (State::Present, DirectoryActual::Absent) => {
                let mut changes = vec![Change::Create];
                changes.push(Change::set_to(Attr::Mode, self.mode.unwrap_or(DEFAULT_MODE)));
                changes.extend(ownership_changes(&self.ownership, "", ""));
                if let Some(tree) = &self.tree {
                    changes.extend(tree.diff(&self.path, &self.ownership, &tree.absent()));
                }
                changes
            }
            (State::Present, DirectoryActual::Present { mode, owner, group, tree: actual }) => {
                let mut changes = Vec::new();
                if let Some(want) = self.mode.filter(|m| m != mode) {
                    changes.push(Change::set(Attr::Mode, Some(*mode), want));
                }
                changes.extend(ownership_changes(&self.ownership, owner, group));
                if let Some(tree) = &self.tree {
                    changes.extend(tree.diff(&self.path, &self.ownership, actual));
                }
                changes
            }
        }
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let id = self.id();
        if changes.contains(&Change::Remove) {
            return host.remove(&self.path).map_err(|e| Error::resource_io(&id, "cannot remove it", e));
        }
        if changes.contains(&Change::Create) {
            self.create(host)?;
        } else {
            apply_attributes(host, &self.path, changes, &self.ownership, self.mode)
                .map_err(|e| Error::resource_io(&id, "cannot change its attributes", e))?;
        }
        match &self.tree {
            Some(tree) => tree
                .apply(&self.path, &self.ownership, changes, host)
                .map_err(|e| Error::resource_io(&id, "cannot copy its source", e)),
            None => Ok(()),
        }
    }
}

impl Directory {
    /// Makes it, and its missing parents (owned by whoever runs converge, 0755).
    fn create(&self, host: &Host) -> Result<()> {
        let id = self.id();
        let (uid, gid) =
            owner_ids(host, &self.ownership, None).map_err(|e| Error::resource_io(&id, "cannot resolve its owner", e))?;
        let missing: Vec<_> = self.path.ancestors().skip(1).take_while(|p| matches!(host.stat(p), Ok(None))).collect();
        let (euid, egid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        for parent in missing.into_iter().rev() {
            host.create_dir(parent, DEFAULT_MODE, euid, egid)
                .map_err(|e| Error::resource_io(&id, format!("cannot create {}", parent.display()), e))?;
        }
        host.create_dir(&self.path, self.mode.unwrap_or(DEFAULT_MODE), uid, gid)
            .map_err(|e| Error::resource_io(&id, "cannot create it", e))
    }
}

/// The tree of `source:` with `purge`, `file_mode` and `dir_mode` (Some(None) without a source;
/// None after an error, which is in `attrs`).
fn read_tree(attrs: &mut Attrs, state: State) -> Option<Option<Tree>> {
    let source = attrs.node("source");
    let purge = attrs.node("purge").map(|node| (node.span, attrs.bool("purge")));
    let file_mode = attrs.node("file_mode").map(|node| (node.span, attrs.mode("file_mode")));
    let dir_mode = attrs.node("dir_mode").map(|node| (node.span, attrs.mode_for("dir_mode", true)));
    let Some(source) = source else {
        let stray = [("purge", purge.map(|p| p.0)), ("file_mode", file_mode.map(|m| m.0)), ("dir_mode", dir_mode.map(|m| m.0))];
        for (key, span) in stray.into_iter().filter_map(|(key, span)| Some((key, span?))) {
            attrs.error(span, format!("`{key}` is for a copied tree"), "without `source:`", "add `source: DIR` (a directory beside the playbook), or remove it");
        }
        return Some(None);
    };
    if state == State::Absent {
        attrs.error(source.span, "`source` copies a tree into a directory that is present", "with `state: absent`", "remove `source:`, or `state: absent`");
        return None;
    }
    let relative = attrs.render_string("source", source)?;
    let inputs = attrs.templates().read_tree(&relative, source.span).map_err(|e| attrs.errors.push(e)).ok()?;
    let purge = purge.and_then(|p| p.1).unwrap_or(false);
    Some(Some(Tree::new(inputs, purge, file_mode.and_then(|m| m.1), dir_mode.and_then(|m| m.1))))
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
            tree: None,
        }
    }

    #[test]
    fn converged() {
        let actual = DirectoryActual::Present {
            mode: Mode(0o2775),
            owner: "vagrant".into(),
            group: "www-data".into(),
            tree: TreeActual::default(),
        };
        assert_eq!(dir().diff(&actual), vec![]);
    }

    #[test]
    fn created_with_mode_and_owner() {
        let changes = dir().diff(&DirectoryActual::Absent);
        assert_eq!(changes[0], Change::Create);
        assert!(changes.contains(&Change::set_to(Attr::Mode, Mode(0o2775))));
        assert!(changes.contains(&Change::set(Attr::Group, Some(""), "www-data")));
    }

    #[test]
    fn group_and_mode_drift() {
        let actual = DirectoryActual::Present {
            mode: Mode(0o755),
            owner: "vagrant".into(),
            group: "root".into(),
            tree: TreeActual::default(),
        };
        assert_eq!(
            dir().diff(&actual),
            vec![
                Change::set(Attr::Mode, Some(Mode(0o755)), Mode(0o2775)),
                Change::set(Attr::Group, Some("root"), "www-data"),
            ]
        );
    }

    #[test]
    fn absent() {
        let mut d = dir();
        d.state = State::Absent;
        assert_eq!(d.diff(&DirectoryActual::Absent), vec![]);
        let actual = DirectoryActual::Present {
            mode: Mode(0o755),
            owner: "root".into(),
            group: "root".into(),
            tree: TreeActual::default(),
        };
        assert_eq!(d.diff(&actual), vec![Change::Remove]);
    }
}
