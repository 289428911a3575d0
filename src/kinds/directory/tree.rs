//! A directory's `source:`: a tree copied from beside the playbook into the directory.
//!
//! What it does: makes every directory and file of the source below the managed directory, with
//! the file's bytes, its mode (`file_mode`, else 0755 for a file its owner may execute and 0644
//! for the others; `dir_mode`, else 0755, for directories) and the directory's `owner` and
//! `group`; with `purge: true`, removes what the source does not have.
//! Why: a no-op reads (stat and content) what is there and writes nothing, and a change writes
//! each file atomically through `host/`, never through a symlink: a symlink where the source
//! has a file or directory is an error, and one inside the source is refused when it is read
//! (host::read_input_tree).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host, InputEntry};
use crate::kinds::file::apply_attributes;
use crate::kinds::resource::{Attr, Change, Content, Ownership, ResourceId, ownership_changes};
use crate::kinds::{observe_owner, owner_ids};

/// The mode of a copied directory without `dir_mode`.
pub const DIR_MODE: Mode = Mode(0o755);
/// The mode of a copied file without `file_mode`.
pub const FILE_MODE: Mode = Mode(0o644);
/// The mode of a copied file its owner may execute, without `file_mode`.
pub const EXECUTABLE_MODE: Mode = Mode(0o755);

/// The tree a directory copies.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tree {
    /// What the source holds, each directory before what is inside it.
    pub entries: Vec<Entry>,
    /// Whether what the source does not have is removed.
    pub purge: bool,
}

/// A directory or file of the source, by its path below the top.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub path: PathBuf,
    pub mode: Mode,
    /// The file's bytes; None for a directory.
    pub content: Option<Content>,
}

/// What a path of the tree is on the host.
#[derive(Clone, PartialEq)]
pub enum Found {
    Absent,
    Directory { mode: Mode, owner: String, group: String },
    File { content: Content, mode: Mode, owner: String, group: String },
}

/// What the host has of the tree: one [`Found`] per entry of the source, and what the source
/// does not have (read only with `purge`).
#[derive(Clone, PartialEq, Default)]
pub struct TreeActual {
    pub found: Vec<Found>,
    pub extra: Vec<PathBuf>,
}

impl Tree {
    /// The tree of what the source holds, with the modes that `file_mode` and `dir_mode` give.
    pub fn new(inputs: Vec<InputEntry>, purge: bool, file_mode: Option<Mode>, dir_mode: Option<Mode>) -> Tree {
        let entries = inputs
            .into_iter()
            .map(|input| match input.bytes {
                None => Entry { path: input.path, mode: dir_mode.unwrap_or(DIR_MODE), content: None },
                Some(bytes) => {
                    let default = if input.mode & 0o100 != 0 { EXECUTABLE_MODE } else { FILE_MODE };
                    Entry { path: input.path, mode: file_mode.unwrap_or(default), content: Some(Content::from(bytes)) }
                }
            })
            .collect();
        Tree { entries, purge }
    }

    /// The host's paths of its entries below `top`.
    pub fn paths(&self, top: &Path) -> impl Iterator<Item = PathBuf> {
        self.entries.iter().map(move |e| top.join(&e.path))
    }

    /// Nothing of it on the host (its directory is not there).
    pub fn absent(&self) -> TreeActual {
        TreeActual { found: vec![Found::Absent; self.entries.len()], extra: Vec::new() }
    }

    /// Reads what the host has of it below `top`, an existing directory.
    pub fn observe(&self, host: &Host, top: &Path, id: &ResourceId) -> Result<TreeActual> {
        let mut found = Vec::with_capacity(self.entries.len());
        let mut missing: HashSet<&Path> = HashSet::new();
        for entry in &self.entries {
            let parent_missing = entry.path.parent().is_some_and(|p| missing.contains(p));
            let here = if parent_missing { Found::Absent } else { observe_entry(host, top, entry, id)? };
            if here == Found::Absent {
                missing.insert(&entry.path);
            }
            found.push(here);
        }
        let extra = if self.purge { self.extra(host, top, &found, id)? } else { Vec::new() };
        Ok(TreeActual { found, extra })
    }

    /// What the directories of the tree hold that the source does not, outermost only (removing
    /// a directory takes what is inside it).
    fn extra(&self, host: &Host, top: &Path, found: &[Found], id: &ResourceId) -> Result<Vec<PathBuf>> {
        let wanted: HashSet<&Path> = self.entries.iter().map(|e| e.path.as_path()).collect();
        let present = self.entries.iter().zip(found).filter(|(_, f)| matches!(f, Found::Directory { .. }));
        let mut dirs: Vec<&Path> = vec![Path::new("")];
        dirs.extend(present.map(|(e, _)| e.path.as_path()));
        let mut extra = Vec::new();
        for dir in dirs {
            let listing =
                host.read_dir(&top.join(dir)).map_err(|e| Error::resource_io(id, "cannot list what it holds", e))?;
            let mut names: Vec<PathBuf> = listing.into_iter().map(|(name, _)| dir.join(name)).collect();
            names.sort();
            extra.extend(names.into_iter().filter(|p| !wanted.contains(p.as_path())).map(|p| top.join(p)));
        }
        Ok(extra)
    }

    /// The changes that bring what the host has (`actual`) below `top` to the source.
    pub fn diff(&self, top: &Path, ownership: &Ownership, actual: &TreeActual) -> Vec<Change> {
        let mut changes: Vec<Change> = actual.extra.iter().map(|p| Change::entry(p, Change::Remove)).collect();
        for (entry, found) in self.entries.iter().zip(&actual.found) {
            let file = top.join(&entry.path);
            let (mode, owner, group) = match (found, &entry.content) {
                (Found::Absent, None) => {
                    changes.push(Change::entry(file, Change::Create));
                    continue;
                }
                (Found::Absent, Some(to)) => {
                    changes.push(Change::Content { file: Some(file), from: None, to: to.clone() });
                    continue;
                }
                (Found::File { content, mode, owner, group }, Some(to)) => {
                    if content != to {
                        let from = Some(content.clone());
                        changes.push(Change::Content { file: Some(file.clone()), from, to: to.clone() });
                    }
                    (mode, owner, group)
                }
                (Found::Directory { mode, owner, group }, None) => (mode, owner, group),
                // observe refuses a file where the source has a directory, and the reverse.
                (Found::File { .. }, None) | (Found::Directory { .. }, Some(_)) => continue,
            };
            if *mode != entry.mode {
                changes.push(Change::entry(&file, Change::set(Attr::Mode, Some(*mode), entry.mode)));
            }
            changes.extend(ownership_changes(ownership, owner, group).into_iter().map(|c| Change::entry(&file, c)));
        }
        changes
    }

    /// Makes the changes of its entries (those of `changes` that are about them): removals first,
    /// then in the source's order, each directory before what is inside it.
    pub fn apply(&self, top: &Path, ownership: &Ownership, changes: &[Change], host: &Host) -> std::io::Result<()> {
        let modes: HashMap<PathBuf, Mode> = self.entries.iter().map(|e| (top.join(&e.path), e.mode)).collect();
        let mode_of = |file: &Path| modes.get(file).copied().unwrap_or(FILE_MODE);
        for change in changes {
            if let Change::Entry { file, of } = change
                && **of == Change::Remove
            {
                host.remove(file)?;
            }
        }
        for change in changes {
            match change {
                Change::Entry { file, of } if **of == Change::Create => {
                    let (uid, gid) = owner_ids(host, ownership, None)?;
                    host.create_dir(file, mode_of(file), uid, gid)?;
                }
                Change::Entry { file, of } if matches!(**of, Change::Set { .. }) => {
                    apply_attributes(host, file, std::slice::from_ref(of), ownership, Some(mode_of(file)))?;
                }
                Change::Content { file: Some(file), to, .. } => {
                    let current = host.stat(file)?;
                    let (uid, gid) = owner_ids(host, ownership, current.as_ref())?;
                    host.write_atomic(file, to.bytes(), mode_of(file), uid, gid)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What the host has at the path of one entry; an error for a symlink, or for something else
/// than the source has there.
fn observe_entry(host: &Host, top: &Path, entry: &Entry, id: &ResourceId) -> Result<Found> {
    let path = top.join(&entry.path);
    let io = |e| Error::resource_io(id, format!("cannot read {}", path.display()), e);
    let Some(stat) = host.stat(&path).map_err(io)? else { return Ok(Found::Absent) };
    let want = if entry.content.is_some() { FileKind::File } else { FileKind::Directory };
    if stat.kind == FileKind::Symlink {
        let target = host.read_link(&path).map_err(io)?;
        return Err(Error::resource(
            id,
            format!(
                "{} is a symlink (to {}) where the source has {}: converge never writes through a link in a tree it \
                 copies; remove it",
                path.display(),
                target.display(),
                want.name()
            ),
        ));
    }
    if stat.kind != want {
        return Err(Error::resource(
            id,
            format!("{} is {} where the source has {}; remove it first", path.display(), stat.kind.name(), want.name()),
        ));
    }
    let (owner, group) = observe_owner(host, &stat).map_err(io)?;
    if want == FileKind::Directory {
        return Ok(Found::Directory { mode: stat.mode, owner, group });
    }
    // A file too big to read into memory is compared by its streamed sha256.
    let content = if stat.size > crate::host::MAX_READ {
        let (len, sha256) = host.digest(&path).map_err(io)?;
        Content::Large { len, sha256 }
    } else {
        Content::from(host.read(&path).map_err(io)?)
    };
    Ok(Found::File { content, mode: stat.mode, owner, group })
}

/// Digests, never contents: a saved plan keeps this (of a tree that may be sensitive).
impl fmt::Debug for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Absent => f.write_str("Absent"),
            Found::Directory { mode, owner, group } => write!(f, "Directory({mode} {owner}:{group})"),
            Found::File { content, mode, owner, group } => {
                write!(f, "File(sha256:{} {mode} {owner}:{group})", content.sha256())
            }
        }
    }
}

impl fmt::Debug for TreeActual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreeActual").field("found", &self.found).field("extra", &self.extra).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &str, mode: u32, bytes: Option<&str>) -> InputEntry {
        InputEntry { path: path.into(), mode, bytes: bytes.map(|b| b.as_bytes().to_vec()) }
    }

    fn tree(purge: bool) -> Tree {
        let inputs = vec![
            input("css", 0o700, None),
            input("css/site.css", 0o600, Some("body {}\n")),
            input("index.html", 0o644, Some("<h1>hi</h1>\n")),
            input("run.sh", 0o700, Some("#!/bin/sh\n")),
        ];
        Tree::new(inputs, purge, None, None)
    }

    fn owned() -> Ownership {
        Ownership { owner: Some("app".into()), group: None }
    }

    fn file(content: &str, mode: u32) -> Found {
        Found::File { content: Content::from(content), mode: Mode(mode), owner: "app".into(), group: "root".into() }
    }

    fn dir(mode: u32) -> Found {
        Found::Directory { mode: Mode(mode), owner: "app".into(), group: "root".into() }
    }

    #[test]
    fn modes_default_by_kind_and_the_owner_execute_bit() {
        let modes: Vec<u32> = tree(false).entries.iter().map(|e| e.mode.0).collect();
        assert_eq!(modes, [0o755, 0o644, 0o644, 0o755]);
        let given = Tree::new(vec![input("a", 0o700, Some("x")), input("d", 0o700, None)], false, Some(Mode(0o600)), Some(Mode(0o750)));
        assert_eq!(given.entries.iter().map(|e| e.mode.0).collect::<Vec<_>>(), [0o600, 0o750]);
    }

    #[test]
    fn a_converged_tree_has_no_changes() {
        let actual = TreeActual {
            found: vec![dir(0o755), file("body {}\n", 0o644), file("<h1>hi</h1>\n", 0o644), file("#!/bin/sh\n", 0o755)],
            extra: vec![],
        };
        assert_eq!(tree(true).diff(Path::new("/srv/site"), &owned(), &actual), vec![]);
    }

    #[test]
    fn each_file_created_updated_or_removed_is_its_own_change() {
        let actual = TreeActual {
            found: vec![Found::Absent, Found::Absent, file("old\n", 0o600), file("#!/bin/sh\n", 0o755)],
            extra: vec!["/srv/site/old.html".into()],
        };
        let changes = tree(true).diff(Path::new("/srv/site"), &owned(), &actual);
        assert_eq!(
            changes,
            vec![
                Change::entry("/srv/site/old.html", Change::Remove),
                Change::entry("/srv/site/css", Change::Create),
                Change::Content { file: Some("/srv/site/css/site.css".into()), from: None, to: "body {}\n".into() },
                Change::Content {
                    file: Some("/srv/site/index.html".into()),
                    from: Some("old\n".into()),
                    to: "<h1>hi</h1>\n".into()
                },
                Change::entry("/srv/site/index.html", Change::set(Attr::Mode, Some(Mode(0o600)), Mode(0o644))),
            ]
        );
    }

    #[test]
    fn owners_are_those_of_the_directory() {
        let mut actual = tree(false).absent();
        actual.found = vec![dir(0o755), file("body {}\n", 0o644), file("<h1>hi</h1>\n", 0o644), file("#!/bin/sh\n", 0o755)];
        actual.found[2] = Found::File {
            content: Content::from("<h1>hi</h1>\n"),
            mode: Mode(0o644),
            owner: "root".into(),
            group: "root".into(),
        };
        let changes = tree(false).diff(Path::new("/srv/site"), &owned(), &actual);
        assert_eq!(changes, vec![Change::entry("/srv/site/index.html", Change::set(Attr::Owner, Some("root"), "app"))]);
    }

    #[test]
    fn the_saved_observation_shows_digests_not_contents() {
        let shown = format!("{:?}", TreeActual { found: vec![file("secret", 0o600)], extra: vec![] });
        assert!(!shown.contains("secret") && shown.contains("sha256:"), "{shown}");
    }
}
