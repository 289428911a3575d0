//! `file`: a regular file with its content, owner, group and mode.
//!
//! What it does: writes `content` (inline), `template` (rendered) or `source` (copied as bytes),
//! atomically, then sets owner, group and mode; `state: absent` removes it. With `validate:`, a
//! checker must accept the new content before it replaces the file (kinds/validate.rs).
//! Why: the content is compared byte for byte, so an unchanged file is never rewritten and
//! its mtime and inode stay as they were.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};
use crate::kinds::resource::{Attr, Change, Content, Need, Overlap, Ownership, Resource, State, ownership_changes};
use crate::kinds::validate::{self, VALIDATE, Validate};
use crate::kinds::{Kind, observe_owner, owner_ids, ownership_needs, path_needs};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{CONTENT, GROUP, MODE, OWNER, STATE, TEMPLATE, Table, Type, attr};
use crate::playbook::yaml_node::Node;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct File {
    pub path: PathBuf,
    pub state: State,
    /// The desired content; None with `state: absent`.
    pub content: Option<Content>,
    pub ownership: Ownership,
    pub mode: Option<Mode>,
    /// A checker of new content (`visudo -cf %s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Validate>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FileActual {
    Absent,
    Present { content: Content, mode: Mode, owner: String, group: String },
}

pub const DEFAULT_MODE: Mode = Mode(0o644);

impl Resource for File {
    type Actual = FileActual;

    const KIND: Kind = Kind::File;

    const TABLE: Table = Table {
        names: Type::Path,
        doc: "a regular file with its content, owner, group and mode",
        attrs: &[
            STATE,
            CONTENT,
            TEMPLATE,
            attr("source", Type::String, "a file copied byte for byte, relative to the playbook"),
            OWNER,
            GROUP,
            MODE,
            VALIDATE,
        ],
    };

    const PATHS_TELL_ALL: bool = true;

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<File> {
        let path = attrs.managed_path(Self::KIND.name(), name);
        let at = name.span;
        let state = attrs.state();
        let inline = attrs.string("content");
        let template = attrs.node("template").and_then(|node| {
            let relative = attrs.render_string("template", node)?;
            attrs.templates().render_file(&relative, node.span).map_err(|e| attrs.errors.push(e)).ok()
        });
        let source = attrs.node("source").and_then(|node| {
            let relative = attrs.render_string("source", node)?;
            attrs.templates().read_bytes(&relative, node.span).map_err(|e| attrs.errors.push(e)).ok()
        });
        attrs.one_of(&["content", "template", "source"], state == State::Present, at);
        let ownership = attrs.ownership();
        let mode = attrs.mode("mode");
        let validate = Validate::from_attrs(attrs);
        if validate.is_some() && state == State::Absent {
            attrs.error(
                at,
                "`validate` checks new content, and `state: absent` writes none",
                "nothing to check",
                "remove `validate`, or the `state: absent`",
            );
        }
        let content = match (inline, template, source) {
            (Some(text), _, _) | (None, Some(text), _) => Some(Content::from(text.as_str())),
            (None, None, Some(bytes)) => Some(Content::from(bytes)),
            (None, None, None) => None,
        };
        Some(File { path: path?, state, content, ownership, mode, validate })
    }

    fn name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn needs(&self) -> Vec<Need> {
        let mut needs = path_needs(&self.path, self.state == State::Present);
        needs.extend(ownership_needs(&self.ownership));
        needs
    }

    fn content(&self) -> Option<&Content> {
        self.content.as_ref()
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    /// A file: beside long work, in the playbook's order; alone when a checker (`validate:`)
    /// runs a program that may need what long work before it installs.
    fn overlap(&self) -> Overlap {
        match self.validate {
            Some(_) => Overlap::Alone,
            None => Overlap::Beside,
        }
    }

    fn observe(&self, host: &Host) -> Result<FileActual> {
        let io = |e| Error::resource_io(self.id(), "cannot read it", e);
        let Some(stat) = host.stat(&self.path).map_err(io)? else {
            return Ok(FileActual::Absent);
        };
        if stat.kind != FileKind::File {
            return Err(Error::resource(
                self.id(),
                format!(
                    "{} is {}, not a file; remove it first or manage it as {}",
                    self.path.display(),
                    stat.kind.name(),
                    stat.kind.name()
                ),
            ));
        }
        if self.state == State::Absent {
            return Ok(FileActual::Present {
                content: Content::from(""),
                mode: stat.mode,
                owner: String::new(),
                group: String::new(),
            });
        }
        // A file too big to read into memory is compared by its streamed sha256.
        let content = if stat.size > crate::host::MAX_READ {
            let (len, sha256) = host.digest(&self.path).map_err(io)?;
            Content::Large { len, sha256 }
        } else {
            Content::from(host.read(&self.path).map_err(io)?)
        };
        let (owner, group) = observe_owner(host, &stat).map_err(io)?;
        Ok(FileActual::Present { content, mode: stat.mode, owner, group })
    }

    fn diff(&self, actual: &FileActual) -> Vec<Change> {
        match (self.state, actual, &self.content) {
            (State::Absent, FileActual::Absent, _) => vec![],
            (State::Absent, FileActual::Present { .. }, _) => vec![Change::Remove],
            (State::Present, _, None) => vec![],
            (State::Present, FileActual::Absent, Some(to)) => {
                let mut changes = vec![Change::Create, Change::Content { file: None, from: None, to: to.clone() }];
                changes.push(Change::set_to(Attr::Mode, self.mode.unwrap_or(DEFAULT_MODE)));
                changes.extend(ownership_changes(&self.ownership, "", ""));
                changes
            }
            (State::Present, FileActual::Present { content, mode, owner, group }, Some(to)) => {
                let mut changes = Vec::new();
                if content != to {
                    changes.push(Change::Content { file: None, from: Some(content.clone()), to: to.clone() });
                }
                if let Some(want) = self.mode.filter(|m| m != mode) {
                    changes.push(Change::set(Attr::Mode, Some(*mode), want));
                }
                changes.extend(ownership_changes(&self.ownership, owner, group));
                changes
            }
        }
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let id = self.id();
        let io = |what: &str| {
            let id = id.clone();
            let what = what.to_owned();
            move |e| Error::resource_io(id, what, e)
        };
        if changes.contains(&Change::Remove) {
            return host.remove(&self.path).map_err(io("cannot remove it"));
        }
        let current = host.stat(&self.path).map_err(io("cannot read it"))?;
        if let (Some(content), true) = (&self.content, changes.iter().any(|c| matches!(c, Change::Content { .. }))) {
            let mode = self.mode.or(current.as_ref().map(|s| s.mode)).unwrap_or(DEFAULT_MODE);
            let (uid, gid) =
                owner_ids(host, &self.ownership, current.as_ref()).map_err(io("cannot resolve its owner"))?;
            let parent = self.path.parent().unwrap_or(&self.path);
            if host.stat(parent).map_err(io("cannot read its directory"))?.is_none() {
                return Err(Error::resource(
                    &id,
                    format!("its directory {} does not exist; add a `directory:` resource for it", parent.display()),
                ));
            }
            let validate = self.validate.as_ref();
            return validate::write(host, &id, validate, &self.path, content.bytes(), (mode, uid, gid));
        }
        apply_attributes(host, &self.path, changes, &self.ownership, self.mode)
            .map_err(io("cannot change its attributes"))
    }
}

/// Applies the `mode`, `owner` and `group` that `changes` name, as the desired state says them,
/// to an existing file or directory, through one fd of it (`Host::set_attributes`: the owner
/// first, then the mode).
pub fn apply_attributes(
    host: &Host,
    path: &std::path::Path,
    changes: &[Change],
    ownership: &Ownership,
    mode: Option<Mode>,
) -> std::io::Result<()> {
    let set = |attr| changes.iter().any(|c| c.sets(attr));
    let mode = mode.filter(|_| set(Attr::Mode));
    let uid = set(Attr::Owner).then(|| host.uid(ownership.owner.as_deref().unwrap_or_default())).transpose()?;
    let gid = set(Attr::Group).then(|| host.gid(ownership.group.as_deref().unwrap_or_default())).transpose()?;
    if uid.is_none() && gid.is_none() && mode.is_none() {
        return Ok(());
    }
    host.set_attributes(path, uid, gid, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str) -> File {
        File {
            path: "/etc/motd".into(),
            state: State::Present,
            content: Some(Content::from(content)),
            ownership: Ownership { owner: Some("www-data".into()), group: None },
            mode: Some(Mode(0o640)),
            validate: None,
        }
    }

    fn present(content: &str, mode: u32, owner: &str) -> FileActual {
        FileActual::Present {
            content: Content::from(content),
            mode: Mode(mode),
            owner: owner.into(),
            group: "root".into(),
        }
    }

    #[test]
    fn converged_file_has_no_changes() {
        assert_eq!(file("hi\n").diff(&present("hi\n", 0o640, "www-data")), vec![]);
    }

    #[test]
    fn missing_file_is_created_with_its_attributes() {
        let changes = file("hi\n").diff(&FileActual::Absent);
        assert_eq!(changes[0], Change::Create);
        assert_eq!(changes[1], Change::Content { file: None, from: None, to: Content::from("hi\n") });
        assert!(changes.contains(&Change::set_to(Attr::Mode, Mode(0o640))));
        assert!(changes.contains(&Change::set(Attr::Owner, Some(""), "www-data")));
    }

    #[test]
    fn only_what_differs_changes() {
        let changes = file("new\n").diff(&present("old\n", 0o644, "www-data"));
        assert_eq!(
            changes,
            vec![
                Change::Content { file: None, from: Some(Content::from("old\n")), to: Content::from("new\n") },
                Change::set(Attr::Mode, Some(Mode(0o644)), Mode(0o640)),
            ]
        );
    }

    #[test]
    fn unmanaged_mode_and_owner_are_left_alone() {
        let mut f = file("hi\n");
        f.mode = None;
        f.ownership = Ownership::default();
        assert_eq!(f.diff(&present("hi\n", 0o600, "nobody")), vec![]);
    }

    #[test]
    fn absent_file_is_removed_once() {
        let mut f = file("");
        f.state = State::Absent;
        f.content = None;
        assert_eq!(f.diff(&present("x", 0o644, "root")), vec![Change::Remove]);
        assert_eq!(f.diff(&FileActual::Absent), vec![]);
    }
}
