//! `tmpfiles`: a systemd-tmpfiles configuration, `/etc/tmpfiles.d/NAME.conf`, from typed
//! entries, applied at once.
//!
//! What it does: writes the file (one line per entry, `d /run/app 0750 app www-data -`), then runs
//! `systemd-tmpfiles --create` on that file only, so that what it describes exists now; systemd
//! creates it again at every boot (systemd-tmpfiles-setup.service). It also runs when the file
//! is right but a path it creates is missing, or a directory's mode or owner drifted.
//! Under `--root` it only writes the file: the image's first boot creates the rest.
//! Why: `/run` is a tmpfs. A `directory: /run/app` is gone after the next reboot, and the service
//! that needs it fails before anyone runs converge again.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};
use crate::kinds::observe_owner;
use crate::kinds::resource::{Change, Content, Resource, ResourceId, State};
use crate::playbook::attrs::Attrs;
use crate::playbook::yaml_node::{Node, Span, Value};

pub const TMPFILES_DIR: &str = "/etc/tmpfiles.d";

/// The line types of tmpfiles.d(5).
const TYPES: &str = "fFwdDevqQpLcbCxXrRzZtThHaA";
/// The types that create their path (so a missing path means the configuration is not applied).
const CREATING: &str = "fFdDvqQpLcbC";

/// One line of a tmpfiles.d file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TmpfilesEntry {
    /// The type with its modifiers (`d`, `L+`, `f!`).
    pub kind: String,
    pub path: PathBuf,
    pub mode: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub age: Option<String>,
    pub argument: Option<String>,
}

impl TmpfilesEntry {
    /// The line, with `-` for what is not given.
    pub fn line(&self) -> String {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let mut line = format!(
            "{} {} {} {} {} {}",
            self.kind,
            self.path.display(),
            dash(&self.mode),
            dash(&self.user),
            dash(&self.group),
            dash(&self.age)
        );
        if let Some(argument) = &self.argument {
            line += " ";
            line += argument;
        }
        line
    }

    fn base_type(&self) -> char {
        self.kind.chars().next().unwrap_or('?')
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tmpfiles {
    pub name: String,
    pub state: State,
    pub entries: Vec<TmpfilesEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TmpfilesActual {
    pub file: Option<Content>,
    /// Why the configuration must be applied although the file is right (a missing path).
    pub unapplied: Option<String>,
}

impl Tmpfiles {
    pub fn from_attrs(name: String, at: Span, attrs: &mut Attrs) -> Option<Tmpfiles> {
        let state = attrs.state();
        let valid_name = !name.is_empty()
            && name.len() <= 200
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
        if !valid_name {
            attrs.error(
                at,
                format!("`{name}` is not a tmpfiles.d name"),
                "not a file name",
                "name it like the service it serves, such as `app`: converge writes /etc/tmpfiles.d/app.conf",
            );
        }
        let mut entries = Vec::new();
        match attrs.node("entries") {
            Some(Node { value: Value::Seq(items), .. }) => {
                for item in items {
                    if let Some(entry) = entry(attrs, item) {
                        entries.push(entry);
                    }
                }
            }
            Some(node) => attrs.error(
                node.span,
                "`entries` must be a list",
                "expected a list of entries",
                "write `entries: [\"d /run/app 0750 app www-data -\"]`, or entries as mappings with type, path, mode, user, group, age",
            ),
            None if state == State::Present => attrs.error(
                at,
                "a tmpfiles resource needs `entries`",
                "no entries",
                "add `entries: [\"d /run/app 0750 app www-data -\"]`",
            ),
            None => {}
        }
        Some(Tmpfiles { name, state, entries })
    }

    pub fn id(&self) -> ResourceId {
        ResourceId::new("tmpfiles", &self.name)
    }

    pub fn path(&self) -> PathBuf {
        Path::new(TMPFILES_DIR).join(format!("{}.conf", self.name))
    }

    /// The file as converge writes it.
    pub fn content(&self) -> Content {
        let mut text = String::from("# Managed by converge: edits are overwritten on the next run.\n");
        for entry in &self.entries {
            text += &entry.line();
            text.push('\n');
        }
        Content::from(text.as_str())
    }

    /// The users and groups its entries name, for ordering and the "exists" check.
    pub fn needs(&self) -> Vec<ResourceId> {
        let mut needs = Vec::new();
        for entry in &self.entries {
            needs.extend(entry.user.iter().filter(|u| !u.starts_with(':')).map(|u| ResourceId::new("user", u)));
            needs.extend(entry.group.iter().filter(|g| !g.starts_with(':')).map(|g| ResourceId::new("group", g)));
        }
        needs
    }

    fn error(&self, message: impl Into<String>, e: std::io::Error) -> Error {
        Error::resource_io(self.id(), message, e)
    }

    /// Why applying the configuration would change something although the file is right.
    fn unapplied(&self, host: &Host) -> std::io::Result<Option<String>> {
        for entry in &self.entries {
            let path_text = entry.path.to_string_lossy();
            if path_text.contains('%') || path_text.contains(['*', '?', '[']) || !CREATING.contains(entry.base_type()) {
                continue;
            }
            let Some(stat) = host.stat(&entry.path)? else {
                return Ok(Some(format!("{} does not exist", entry.path.display())));
            };
            if !matches!(entry.base_type(), 'd' | 'D') {
                continue;
            }
            if stat.kind != FileKind::Directory {
                return Ok(Some(format!("{} is {}, not a directory", entry.path.display(), stat.kind.name())));
            }
            if let Some(mode) = entry.mode.as_deref().and_then(|m| u32::from_str_radix(m, 8).ok())
                && stat.mode != Mode(mode)
            {
                return Ok(Some(format!("{} has mode {}, not {:04o}", entry.path.display(), stat.mode, mode)));
            }
            let (owner, group) = observe_owner(host, &stat)?;
            if entry.user.as_ref().is_some_and(|u| *u != owner) || entry.group.as_ref().is_some_and(|g| *g != group) {
                return Ok(Some(format!("{} is owned by {owner}:{group}", entry.path.display())));
            }
        }
        Ok(None)
    }
}

/// One entry: a line (`d /run/app 0750 app www-data -`) or a mapping (`type: d`, `path: ...`).
fn entry(attrs: &mut Attrs, node: &Node) -> Option<TmpfilesEntry> {
    let help = "write `d /run/app 0750 app www-data -` (type, path, mode, user, group, age[, argument]), or a mapping \
                with type, path, mode, user, group, age, argument";
    let fields: Vec<(String, String)> = match &node.value {
        Value::String(_) => {
            let line = attrs.render_string("entries", node)?;
            // The argument is the rest of the line: it may hold spaces (a symlink target, text).
            let mut words = line.split_whitespace();
            let names = ["type", "path", "mode", "user", "group", "age"];
            let mut fields: Vec<(String, String)> =
                names.iter().zip(words.by_ref()).map(|(n, w)| (n.to_string(), w.to_string())).collect();
            let rest: Vec<&str> = words.collect();
            if !rest.is_empty() {
                fields.push(("argument".into(), rest.join(" ")));
            }
            fields
        }
        Value::Map(pairs) => {
            let mut fields = Vec::new();
            for (key, value) in pairs {
                let key_text = key.as_str().unwrap_or_default().to_owned();
                if !["type", "path", "mode", "user", "group", "age", "argument"].contains(&key_text.as_str()) {
                    attrs.error(key.span, format!("unknown entry key `{key_text}`"), "unknown key", help);
                    continue;
                }
                let text = match &value.value {
                    Value::Int(_) => value.source(&attrs.templates().source().text).to_owned(),
                    _ => attrs.render_string("entries", value)?,
                };
                fields.push((key_text, text));
            }
            fields
        }
        _ => {
            attrs.error(node.span, "a tmpfiles entry must be a line or a mapping", "expected an entry", help);
            return None;
        }
    };
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).filter(|v| v != "-");
    let mut bad = |message: String, label: &str| {
        attrs.error(node.span, message, label, help);
        None
    };
    let Some(kind) = get("type") else { return bad("the entry has no type".into(), "no type") };
    let base = kind.chars().next().unwrap_or('?');
    if !TYPES.contains(base) || !kind[base.len_utf8()..].chars().all(|c| "+!-=~^$".contains(c)) {
        return bad(format!("`{kind}` is not a tmpfiles.d type"), "unknown type (see tmpfiles.d(5))");
    }
    let Some(path) = get("path") else { return bad("the entry has no path".into(), "no path") };
    if !path.starts_with('/') || path.split('/').any(|part| part == "..") {
        return bad(format!("`{path}` is not an absolute path"), "expected an absolute path");
    }
    let mode = get("mode");
    if let Some(mode) = &mode {
        let digits = mode.trim_start_matches(['~', ':']);
        if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
            return bad(format!("`{mode}` is not a mode"), "expected an octal mode such as 0750");
        }
    }
    let (user, group, age, argument) = (get("user"), get("group"), get("age"), get("argument"));
    for (what, value) in [("user", &user), ("group", &group), ("age", &age)] {
        if value.as_ref().is_some_and(|v| v.chars().any(char::is_whitespace)) {
            return bad(format!("the {what} holds a space"), "a space in one field");
        }
    }
    if argument.as_ref().is_some_and(|a| a.contains('\n')) {
        return bad("the argument holds a line break".into(), "one line per entry");
    }
    Some(TmpfilesEntry { kind, path: PathBuf::from(path), mode, user, group, age, argument })
}

impl Resource for Tmpfiles {
    type Actual = TmpfilesActual;

    fn observe(&self, host: &Host) -> Result<TmpfilesActual> {
        let io = |e| self.error("cannot read it", e);
        let file = match host.stat(&self.path()).map_err(io)? {
            Some(stat) if stat.kind == FileKind::File => Some(Content::from(host.read(&self.path()).map_err(io)?)),
            Some(stat) => {
                return Err(Error::resource(
                    self.id(),
                    format!("{} is {}, not a file; remove it first", self.path().display(), stat.kind.name()),
                ));
            }
            None => None,
        };
        // Under --root the paths are created at boot, not now: only the file counts.
        let unapplied = match (self.state, host.root()) {
            (State::Present, None) => self.unapplied(host).map_err(io)?,
            _ => None,
        };
        Ok(TmpfilesActual { file, unapplied })
    }

    fn diff(&self, actual: &TmpfilesActual) -> Vec<Change> {
        if self.state == State::Absent {
            return if actual.file.is_some() { vec![Change::Remove] } else { vec![] };
        }
        let to = self.content();
        let mut changes = Vec::new();
        if actual.file.as_ref() != Some(&to) {
            if actual.file.is_none() {
                changes.push(Change::Create);
            }
            changes.push(Change::Content { file: None, from: actual.file.clone(), to });
        } else if let Some(reason) = &actual.unapplied {
            changes
                .push(Change::Run { reason: format!("{reason}: systemd-tmpfiles --create {}", self.path().display()) });
        }
        changes
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        if changes.contains(&Change::Remove) {
            // What it created stays until the next boot, as with `rm` of the file by hand.
            return host.remove(&self.path()).map_err(|e| self.error("cannot remove it", e));
        }
        for change in changes {
            if let Change::Content { to, .. } = change {
                host.create_dirs(Path::new(TMPFILES_DIR))
                    .and_then(|()| host.write_system_file(&self.path(), to.bytes(), Mode(0o644)))
                    .map_err(|e| self.error(format!("cannot write {}", self.path().display()), e))?;
            }
        }
        if host.root().is_some() {
            return Ok(());
        }
        let path = self.path();
        let argv = [Path::new("systemd-tmpfiles").as_os_str(), "--create".as_ref(), path.as_os_str()];
        let output = host
            .program(&argv)
            .env("LC_ALL", "C")
            .command()
            .output()
            .map_err(|e| self.error("cannot run systemd-tmpfiles", e))?;
        if !output.status.success() {
            return Err(Error::resource(
                self.id(),
                format!(
                    "systemd-tmpfiles --create {} failed ({}): {}",
                    path.display(),
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }
        Ok(())
    }
}

/// `validate`'s warning for a `directory:` under /run or /var/run: a tmpfs, emptied at boot.
pub fn run_directory_help(path: &Path) -> Option<String> {
    let run = path.starts_with("/run") || path.starts_with("/var/run");
    if !run || path == Path::new("/run") || path == Path::new("/var/run") {
        return None;
    }
    let relative = path.strip_prefix("/var/run").or_else(|_| path.strip_prefix("/run")).ok()?;
    let name = relative.components().next()?.as_os_str().to_string_lossy().into_owned();
    Some(format!(
        "/run is a tmpfs: {} is gone after the next boot, and a service that needs it fails before converge runs \
         again. Let the service's unit make it (`RuntimeDirectory={}`; systemd removes it when the service stops \
         unless `RuntimeDirectoryPreserve=yes`), or use `- tmpfiles: {name}` with `entries: [\"d {} 0755 root root -\"]`, \
         which writes /etc/tmpfiles.d/{name}.conf and creates it now and at every boot",
        path.display(),
        relative.display(),
        Path::new("/run").join(relative).display(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpfiles() -> Tmpfiles {
        Tmpfiles {
            name: "app".into(),
            state: State::Present,
            entries: vec![TmpfilesEntry {
                kind: "d".into(),
                path: "/run/app".into(),
                mode: Some("0750".into()),
                user: Some("app".into()),
                group: Some("www-data".into()),
                age: None,
                argument: None,
            }],
        }
    }

    #[test]
    fn lines_and_needs() {
        let t = tmpfiles();
        assert_eq!(t.entries[0].line(), "d /run/app 0750 app www-data -");
        assert_eq!(t.path(), Path::new("/etc/tmpfiles.d/app.conf"));
        assert_eq!(t.needs(), vec![ResourceId::new("user", "app"), ResourceId::new("group", "www-data")]);
    }

    #[test]
    fn diff_writes_then_runs_for_what_is_missing() {
        let t = tmpfiles();
        let new = t.diff(&TmpfilesActual { file: None, unapplied: None });
        assert_eq!(new[0], Change::Create);
        let converged = TmpfilesActual { file: Some(t.content()), unapplied: None };
        assert_eq!(t.diff(&converged), vec![]);
        let rebooted = TmpfilesActual { file: Some(t.content()), unapplied: Some("/run/app does not exist".into()) };
        assert!(
            matches!(&t.diff(&rebooted)[..], [Change::Run { reason }] if reason.contains("/run/app does not exist"))
        );
    }

    #[test]
    fn run_directories_are_named() {
        let help = run_directory_help(Path::new("/var/run/app/sub")).unwrap();
        assert!(help.contains("RuntimeDirectory=app/sub") && help.contains("tmpfiles: app"), "{help}");
        assert!(run_directory_help(Path::new("/srv/app")).is_none());
        assert!(run_directory_help(Path::new("/running")).is_none());
    }
}
