//! `line_in_file`: a line in a file that converge does not own (`PasswordAuthentication no` in
//! sshd_config).
//!
//! What it does: `line:` replaces the first line that `match:` finds, or, when there is none and
//! no line is equal to it, is inserted after the first line `insert_after:` finds, before the
//! first line `insert_before:` finds, or at the end (`after:` is every kind's ordering key).
//! `state: absent` removes every line equal to `line:` or found by `match:`. The rest of the file
//! stays byte for byte (text.rs). The file must be a regular file that is there (a package or an
//! earlier resource makes it), or, with `create: true`, is made with the lines, `owner`, `group`
//! and `mode` (root and 0644 by default); a symlink is refused, never followed. An existing
//! file's mode and owner stay; with `validate:` a checker accepts the result first.
//!
//! Several entries on one file are one resource, `line_in_file:PATH` ([`Resource::merge`]): the
//! plan shows one diff per entry, in the playbook's order, and apply makes them all in one
//! write, checked once.

pub mod text;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::host::{FileKind, Host, Stat};
use crate::host::mode::Mode;
use crate::kinds::resource::{Attr, Change, Content, Need, Ownership, Resource, Unmerged, ownership_changes};
use crate::kinds::validate::{self, VALIDATE, Validate};
use crate::kinds::{Kind, owner_ids, ownership_needs, path_needs};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{STATE, Table, Type, attr};
use crate::playbook::values::State;
use crate::playbook::yaml_node::{Node, Span};
use text::{Anchor, Edit, Finder, Pattern, Text};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LineInFile {
    pub path: PathBuf,
    /// Its entries' edits, in the playbook's order.
    pub edits: Vec<Edit>,
    /// A checker of the edited file (`sshd -t -f %s`).
    pub validate: Option<Validate>,
    /// `create: true`: a missing file is made, with this owner, group and mode.
    pub create: Option<Created>,
}

/// How `create: true` makes a missing file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Created {
    /// `owner` and `group` (root when not given).
    pub ownership: Ownership,
    /// `mode` (0644 when not given).
    pub mode: Option<Mode>,
}

/// The mode of a file `create: true` makes.
const DEFAULT_MODE: Mode = Mode(0o644);

/// What is at its path.
#[derive(Debug, Clone, PartialEq)]
pub enum LinesActual {
    /// Nothing yet: an earlier resource of the run may make it.
    Missing,
    Present(Content),
}

impl LineInFile {
    /// What is at its path: None when nothing is; an error for anything but a regular file.
    fn stat(&self, host: &Host) -> Result<Option<Stat>> {
        let io = |e| Error::resource_io(self.id(), "cannot read it", e);
        let Some(stat) = host.stat(&self.path).map_err(io)? else { return Ok(None) };
        match stat.kind {
            FileKind::File => Ok(Some(stat)),
            FileKind::Symlink => {
                let target = host.read_link(&self.path).map_err(io)?;
                Err(Error::resource(
                    self.id(),
                    format!(
                        "{} is a symlink (to {}): line_in_file edits a regular file and never follows a link; name the file it leads to",
                        self.path.display(),
                        target.display()
                    ),
                ))
            }
            kind => Err(Error::resource(
                self.id(),
                format!("{} is {}, not a regular file: line_in_file edits lines of a text file", self.path.display(), kind.name()),
            )),
        }
    }

    /// `content` with every edit made.
    fn edited(&self, content: &[u8]) -> Vec<u8> {
        let mut text = Text::parse(content);
        self.edits.iter().for_each(|edit| text.apply(edit));
        text.bytes()
    }
}

impl Resource for LineInFile {
    type Actual = LinesActual;

    const KIND: Kind = Kind::LineInFile;

    const TABLE: Table = Table {
        names: Type::Path,
        doc: "a line in a file that converge does not own; the rest of the file stays byte for byte",
        attrs: &[
            STATE,
            attr("line", Type::String, "the line to have (present) or to remove (absent), without its line break"),
            attr("match", Type::String, "a regular expression: the first line it finds is replaced (absent: every line it finds is removed)"),
            attr("insert_after", Type::String, "a regular expression: a new line goes after the first line it finds (else at the end)"),
            attr("insert_before", Type::String, "a regular expression: a new line goes before the first line it finds (else at the end)"),
            VALIDATE,
            attr("create", Type::Bool, "make the file when it is missing, with the line (default false: an error)"),
            attr("owner", Type::String, "the owner of the file `create: true` makes (default root)"),
            attr("group", Type::String, "the group of the file `create: true` makes (default root)"),
            attr("mode", Type::Mode, "the mode of the file `create: true` makes (default \"0644\")"),
        ],
    };

    const PATHS_TELL_ALL: bool = true;

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<LineInFile> {
        let path = attrs.managed_path(Self::KIND.name(), name);
        let state = attrs.state();
        let line = line(attrs);
        let found = pattern(attrs, "match");
        let after = pattern(attrs, "insert_after");
        let before = pattern(attrs, "insert_before");
        let validate = Validate::from_attrs(attrs);
        let create = created(attrs);
        let edit = match state {
            State::Present => ensure(attrs, name.span, line, found, [after, before]),
            State::Absent => remove(attrs, name.span, line, found, [after, before]),
        };
        Some(LineInFile { path: path?, edits: vec![edit?], validate, create })
    }

    fn name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Another entry on the same file: its edit is made after this one's, in the same write.
    fn merge(&mut self, other: &LineInFile) -> Result<(), Unmerged> {
        match (&self.validate, &other.validate) {
            (Some(mine), Some(theirs)) if mine != theirs => {
                return Err(Unmerged::Conflict(format!(
                    "the line_in_file entries of {} are written together and checked once, so they need the same \
                     `validate`; an earlier one has `{}`",
                    self.path.display(),
                    shell_words::join(&mine.argv)
                )));
            }
            (None, Some(theirs)) => self.validate = Some(theirs.clone()),
            _ => {}
        }
        match (&self.create, &other.create) {
            (Some(mine), Some(theirs)) if mine != theirs => {
                return Err(Unmerged::Conflict(format!(
                    "the line_in_file entries of {} make the file once, so their `create` needs the same \
                     `owner`, `group` and `mode`",
                    self.path.display()
                )));
            }
            (None, Some(theirs)) => self.create = Some(theirs.clone()),
            _ => {}
        }
        self.edits.extend(other.edits.iter().cloned());
        Ok(())
    }

    fn needs(&self) -> Vec<Need> {
        let mut needs = path_needs(&self.path, self.create.is_some());
        needs.extend(self.create.iter().flat_map(|c| ownership_needs(&c.ownership)));
        needs
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn observe(&self, host: &Host) -> Result<LinesActual> {
        if self.stat(host)?.is_none() {
            return Ok(LinesActual::Missing);
        }
        let content = host.read(&self.path).map_err(|e| Error::resource_io(self.id(), "cannot read it", e))?;
        Ok(LinesActual::Present(Content::from(content)))
    }

    /// One content change per edit that changes something, each from what the edits before it
    /// made; none when all of them together change nothing.
    fn diff(&self, actual: &LinesActual) -> Vec<Change> {
        let LinesActual::Present(content) = actual else {
            if self.edits.iter().all(|e| e.state() == State::Absent) {
                return vec![];
            }
            if let Some(create) = &self.create {
                let to = Content::from(self.edited(b""));
                let mut changes = vec![Change::Create, Change::Content { file: None, from: None, to }];
                changes.push(Change::set_to(Attr::Mode, create.mode.unwrap_or(DEFAULT_MODE)));
                changes.extend(ownership_changes(&create.ownership, "", ""));
                return changes;
            }
            let to = "edited once an earlier resource makes it (apply fails if none does; or add `create: true`)";
            return vec![Change::set(Attr::Lines, Some("the file is not there yet"), to)];
        };
        if self.edited(content.bytes()) == content.bytes() {
            return vec![];
        }
        let mut text = Text::parse(content.bytes());
        let mut from = content.clone();
        let mut changes = Vec::new();
        for edit in &self.edits {
            text.apply(edit);
            let to = Content::from(text.bytes());
            if to != from {
                changes.push(Change::Content { file: None, from: Some(from), to: to.clone() });
                from = to;
            }
        }
        changes
    }

    fn apply(&self, _changes: &[Change], host: &Host) -> Result<()> {
        let Some(stat) = self.stat(host)? else {
            return self.make(host);
        };
        let old = host.read(&self.path).map_err(|e| Error::resource_io(self.id(), "cannot read it", e))?;
        let new = self.edited(&old);
        if new == old {
            return Ok(());
        }
        let keep = (stat.mode, stat.uid, stat.gid);
        validate::write(host, &self.id(), self.validate.as_ref(), &self.path, &new, keep)
    }
}

impl LineInFile {
    /// The missing file, made with the lines when `create: true`; otherwise an error that says how.
    fn make(&self, host: &Host) -> Result<()> {
        let Some(create) = &self.create else {
            return Err(Error::resource(
                self.id(),
                format!(
                    "{} does not exist: line_in_file edits a file that is there; add `create: true` to make it, \
                     install the package that brings it, or make it with a `file:` resource before this one",
                    self.path.display()
                ),
            ));
        };
        let (uid, gid) = owner_ids(host, &create.ownership, None)
            .map_err(|e| Error::resource_io(self.id(), "cannot resolve its owner", e))?;
        let meta = (create.mode.unwrap_or(DEFAULT_MODE), uid, gid);
        validate::write(host, &self.id(), self.validate.as_ref(), &self.path, &self.edited(b""), meta)
    }
}

/// `create: true` with the owner, group and mode of the file it makes; those without it are
/// errors, since an existing file keeps its own.
fn created(attrs: &mut Attrs) -> Option<Created> {
    let ownership = attrs.ownership();
    let mode = attrs.mode("mode");
    if attrs.bool("create").unwrap_or(false) {
        return Some(Created { ownership, mode });
    }
    let given = ["owner", "group", "mode"].into_iter().find_map(|key| attrs.node(key));
    if let Some(node) = given {
        attrs.error(
            node.span,
            "`owner`, `group` and `mode` are those of the file `create: true` makes",
            "without `create: true`",
            "add `create: true` (a missing file is made with them), or remove them: an existing file keeps its own",
        );
    }
    None
}

/// `line:`: one line, without its line break.
fn line(attrs: &mut Attrs) -> Option<(String, Span)> {
    let node = attrs.node("line")?;
    let line = attrs.render_string("line", node)?;
    if line.contains(['\n', '\r']) {
        attrs.error(
            node.span,
            "`line` holds a line break",
            "more than one line",
            "give each line an entry of its own (they are written together), or manage the whole file with `file:`",
        );
        return None;
    }
    Some((line, node.span))
}

/// A regular expression of an entry, and where it is.
type Found = Option<(Pattern, Span)>;

/// A regular expression attribute, compiled; an error at its line when it is not one.
fn pattern(attrs: &mut Attrs, key: &'static str) -> Found {
    let node = attrs.node(key)?;
    let text = attrs.render_string(key, node)?;
    match Pattern::new(&text) {
        Ok(pattern) => Some((pattern, node.span)),
        Err(e) => {
            let why = e.to_string();
            let why = why.lines().last().unwrap_or_default().trim().trim_start_matches("error: ").to_owned();
            attrs.error(
                node.span,
                format!("`{key}` is not a valid regular expression: {why}"),
                "invalid regular expression",
                "write it in the regex crate's syntax (Perl-like, no look-around); escape a literal `.`, `(`, `[` or `\\` with `\\`",
            );
            None
        }
    }
}

/// The edit of a `state: present` entry: `line` is required, and `match` must find it too.
fn ensure(
    attrs: &mut Attrs,
    at: Span,
    line: Option<(String, Span)>,
    pattern: Found,
    [after, before]: [Found; 2],
) -> Option<Edit> {
    attrs.one_of(&["insert_after", "insert_before"], false, at);
    let Some((line, line_span)) = line else {
        if attrs.node("line").is_none() {
            attrs.error(
                at,
                "this line_in_file needs `line`",
                "no line to have",
                "add `line:` (the line the file must hold), or `state: absent` with `match:` to remove lines",
            );
        }
        return None;
    };
    if line.is_empty() {
        attrs.error(line_span, "`line` is empty", "empty line", "write the line the file must hold");
        return None;
    }
    if let Some((_, span)) = pattern.as_ref().filter(|(p, _)| !p.finds(line.as_bytes())) {
        attrs.error(
            *span,
            format!("`match` does not find the line it writes (`{line}`)"),
            "does not find `line`",
            format!(
                "make `match` find both the line to replace and `line` itself, or a second run would replace another \
                 line (such as `^#?\\s*{}` for a setting)",
                regex::escape(line.split_whitespace().next().unwrap_or_default())
            ),
        );
        return None;
    }
    let anchor = match (after, before) {
        (Some((p, _)), _) => Anchor::After(p),
        (None, Some((p, _))) => Anchor::Before(p),
        (None, None) => Anchor::End,
    };
    Some(Edit::Ensure { line, pattern: pattern.map(|(p, _)| p), anchor })
}

/// The edit of a `state: absent` entry: `line` or `match`, and no anchor.
fn remove(
    attrs: &mut Attrs,
    at: Span,
    line: Option<(String, Span)>,
    pattern: Found,
    anchors: [Found; 2],
) -> Option<Edit> {
    for (key, anchor) in ["insert_after", "insert_before"].into_iter().zip(anchors) {
        if let Some((_, span)) = anchor {
            attrs.error(
                span,
                format!("`{key}` places a new line, and `state: absent` adds none"),
                "nothing to place",
                format!("remove `{key}`: `state: absent` removes every line equal to `line` or found by `match`"),
            );
        }
    }
    match (line, pattern) {
        (Some((line, _)), None) => Some(Edit::Remove(Finder::Line(line))),
        (None, Some((pattern, _))) => Some(Edit::Remove(Finder::Pattern(pattern))),
        (Some(_), Some((_, span))) => {
            attrs.error(
                span,
                "with `state: absent`, `line` and `match` cannot both be given",
                "second way to find the lines",
                "keep `line` to remove that exact line, or `match` to remove every line it finds",
            );
            None
        }
        (None, None) => {
            if attrs.node("line").is_none() && attrs.node("match").is_none() {
                attrs.error(
                    at,
                    "this line_in_file removes nothing: it needs `line` or `match`",
                    "no line to remove",
                    "add `line:` (that exact line is removed) or `match:` (every line it finds is removed)",
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(edits: Vec<Edit>) -> LineInFile {
        LineInFile { path: "/etc/ssh/sshd_config".into(), edits, validate: None, create: None }
    }

    fn ensure(line: &str) -> Edit {
        Edit::Ensure { line: line.into(), pattern: None, anchor: Anchor::End }
    }

    fn present(text: &str) -> LinesActual {
        LinesActual::Present(Content::from(text))
    }

    #[test]
    fn each_edit_is_a_diff_from_what_the_ones_before_made() {
        let resource = lines(vec![ensure("a"), ensure("b"), ensure("c")]);
        let changes = resource.diff(&present("b\n"));
        assert_eq!(
            changes,
            vec![
                Change::Content { file: None, from: Some(Content::from("b\n")), to: Content::from("b\na\n") },
                Change::Content { file: None, from: Some(Content::from("b\na\n")), to: Content::from("b\na\nc\n") },
            ]
        );
        assert_eq!(resource.diff(&present("a\nb\nc\n")), vec![]);
    }

    #[test]
    fn edits_that_undo_each_other_change_nothing() {
        let resource = lines(vec![ensure("a"), Edit::Remove(Finder::Line("a".into()))]);
        assert_eq!(resource.diff(&present("x\n")), vec![]);
    }

    #[test]
    fn create_makes_a_missing_file_with_the_lines_and_its_mode() {
        let mut resource = lines(vec![ensure("a"), ensure("b")]);
        resource.create = Some(Created { ownership: Ownership::default(), mode: None });
        assert_eq!(
            resource.diff(&LinesActual::Missing),
            vec![
                Change::Create,
                Change::Content { file: None, from: None, to: Content::from("a\nb\n") },
                Change::set_to(Attr::Mode, Mode(0o644)),
            ]
        );
        resource.edits = vec![Edit::Remove(Finder::Line("a".into()))];
        assert_eq!(resource.diff(&LinesActual::Missing), vec![], "nothing to make for a removal");
    }

    #[test]
    fn a_missing_file_waits_for_an_earlier_resource_unless_only_lines_go() {
        assert!(lines(vec![ensure("a")]).diff(&LinesActual::Missing)[0].sets(Attr::Lines));
        assert_eq!(lines(vec![Edit::Remove(Finder::Line("a".into()))]).diff(&LinesActual::Missing), vec![]);
    }

    #[test]
    fn entries_on_one_file_merge_unless_their_checkers_differ() {
        let check = |argv: &[&str]| Some(Validate { argv: argv.iter().map(|a| a.to_string()).collect() });
        let mut first = lines(vec![ensure("a")]);
        let mut second = lines(vec![ensure("b")]);
        second.validate = check(&["sshd", "-t", "-f", "%s"]);
        first.merge(&second).unwrap();
        assert_eq!((first.edits.len(), &first.validate), (2, &second.validate));
        second.validate = check(&["true", "%s"]);
        assert!(matches!(first.merge(&second), Err(Unmerged::Conflict(_))));
    }
}
