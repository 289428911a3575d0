//! `apt_repository`: a third-party apt repository, as a deb822 source file and its signing key.
//!
//! What it does: writes `/etc/apt/sources.list.d/NAME.sources` (Types, URIs, Suites, Components,
//! Architectures, Enabled, Signed-By) and the repository's key, from a file beside the playbook or
//! inline, as `/etc/apt/keyrings/NAME.asc` (armored) or `NAME.gpg` (binary), which `Signed-By:`
//! names: the key vouches for this repository alone. Never apt-key, never trusted.gpg.d. Both
//! files are root's, 0644 (apt reads them as the `_apt` user), written atomically, key first.
//! `state: absent` removes the source and the key.
//!
//! A change of the source or its key makes the next `apt` resource of the run that installs
//! something fetch the lists of this source first, and the `apt` resources written after it that
//! install wait for it (docs/apt-repositories.md).

mod key;
mod stanza;

use std::path::{Path, PathBuf};

pub use key::KeyFormat;
pub use stanza::{SourceType, Stanza};

use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};
use crate::kinds::Kind;
use crate::kinds::resource::{Attr, Change, Content, Need, Overlap, Provide, Resource, State};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{STATE, Table, Type, attr};
use crate::playbook::yaml_node::{Node, Span};

/// Where apt reads its sources.
pub const SOURCES_DIR: &str = "/etc/apt/sources.list.d";
/// Where keys that sign one repository each belong (apt's own convention, sources.list(5)).
pub const KEYRINGS_DIR: &str = "/etc/apt/keyrings";
/// The mode of both files: apt reads them as the `_apt` user.
const MODE: Mode = Mode(0o644);

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AptRepository {
    /// The source file's name, without `.sources`.
    pub name: String,
    pub state: State,
    /// The source; None with `state: absent`.
    pub stanza: Option<Stanza>,
    /// The key converge writes; None when the playbook gives none (apt's own keys vouch).
    pub key: Option<Key>,
}

/// A repository's signing key, as its file holds it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Key {
    pub format: KeyFormat,
    pub content: Content,
}

/// Its files as they are on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct AptRepositoryActual {
    /// Each of its files that is there (the source, the armored key, the binary key).
    pub files: Vec<(PathBuf, FileFacts)>,
    /// The owner its files must have: root (or whoever runs converge on a folder of their own).
    pub system_owner: String,
}

/// One file of the repository, as found.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFacts {
    pub content: Content,
    pub mode: Mode,
    pub owner: String,
}

impl AptRepository {
    /// Its source file.
    pub fn sources_path(&self) -> PathBuf {
        sources_path(&self.name)
    }

    /// Where its key goes, in `format`.
    fn key_path(&self, format: KeyFormat) -> PathBuf {
        Path::new(KEYRINGS_DIR).join(format!("{}.{}", self.name, format.extension()))
    }

    /// The files it writes, with their content.
    fn wanted(&self) -> Vec<(PathBuf, Content)> {
        let Some(stanza) = &self.stanza else { return Vec::new() };
        let key = self.key.as_ref().map(|key| (self.key_path(key.format), key.content.clone()));
        key.into_iter().chain([(self.sources_path(), Content::from(stanza.render().as_str()))]).collect()
    }

    fn error(&self, message: String, e: std::io::Error) -> Error {
        Error::resource_io(self.id(), message, e)
    }
}

/// The source file of the repository `name`.
pub fn sources_path(name: &str) -> PathBuf {
    Path::new(SOURCES_DIR).join(format!("{name}.sources"))
}

/// The changes that bring the file at `path` from `found` to `content`, root's and 0644.
fn file_changes(path: &Path, found: Option<&FileFacts>, content: &Content, owner: &str) -> Vec<Change> {
    let Some(found) = found else {
        return vec![Change::Content { file: Some(path.to_owned()), from: None, to: content.clone() }];
    };
    let mut changes = Vec::new();
    if found.content != *content {
        changes.push(Change::Content {
            file: Some(path.to_owned()),
            from: Some(found.content.clone()),
            to: content.clone(),
        });
    }
    if found.mode != MODE {
        changes.push(Change::entry(path, Change::set(Attr::Mode, Some(found.mode), MODE)));
    }
    if found.owner != owner {
        changes.push(Change::entry(path, Change::set(Attr::Owner, Some(found.owner.as_str()), owner)));
    }
    changes
}

/// The file a change is about, if it names one.
fn changed_file(change: &Change) -> Option<&Path> {
    match change {
        Change::Content { file, .. } => file.as_deref(),
        Change::Entry { file, .. } => Some(file),
        _ => None,
    }
}

impl Resource for AptRepository {
    type Actual = AptRepositoryActual;

    const KIND: Kind = Kind::AptRepository;

    const TABLE: Table = Table {
        names: Type::String,
        doc: "an apt repository: /etc/apt/sources.list.d/NAME.sources (deb822) and its signing key",
        attrs: &[
            STATE,
            attr("uris", Type::Strings, "the repository's URIs, such as https://nginx.org/packages/debian"),
            attr("suites", Type::Strings, "distributions (bookworm), or an exact path ending in / (flat)"),
            attr("components", Type::Strings, "components (main); none for a flat repository"),
            attr("architectures", Type::Strings, "the architectures to fetch (default: the host's)"),
            attr("types", Type::Strings, "deb (default) and/or deb-src"),
            attr("enabled", Type::Bool, "false writes `Enabled: no` (default true)"),
            attr("key", Type::String, "its signing key: a file beside the playbook, or armored text inline"),
        ],
    };

    const PATHS_TELL_ALL: bool = true;

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<AptRepository> {
        let repository = attrs.render_string(Self::KIND.name(), name).filter(|n| check_name(attrs, n, name.span));
        let state = attrs.state();
        let stanza = read_stanza(attrs, name.span, state);
        let key = read_key(attrs);
        let repository = repository?;
        let stanza = stanza.map(|stanza| Stanza {
            signed_by: key
                .as_ref()
                .map(|k| Path::new(KEYRINGS_DIR).join(format!("{repository}.{}", k.format.extension()))),
            ..stanza
        });
        Some(AptRepository { name: repository, state, stanza, key })
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    /// After a `directory` resource of /etc/apt/sources.list.d or /etc/apt/keyrings; the
    /// directories are made when missing.
    fn needs(&self) -> Vec<Need> {
        self.paths().into_iter().map(Need::Inside).collect()
    }

    /// The `apt` resources written after it that install come after it.
    fn provides(&self) -> Vec<Provide> {
        vec![Provide::AptSource]
    }

    fn paths(&self) -> Vec<PathBuf> {
        let keys = KeyFormat::ALL.map(|format| self.key_path(format));
        [self.sources_path()].into_iter().chain(keys).collect()
    }

    /// Two small files, beside long work.
    fn overlap(&self) -> Overlap {
        Overlap::Beside
    }

    fn observe(&self, host: &Host) -> Result<AptRepositoryActual> {
        let mut files = Vec::new();
        for path in self.paths() {
            let cannot = |e| self.error(format!("cannot read {}", path.display()), e);
            let Some(stat) = host.stat(&path).map_err(cannot)? else { continue };
            if stat.kind != FileKind::File {
                return Err(Error::resource(
                    self.id(),
                    format!("{} is {}, not a file; remove it first", path.display(), stat.kind.name()),
                ));
            }
            let content = Content::from(host.read(&path).map_err(cannot)?);
            let owner = host.user_name(stat.uid).map_err(cannot)?;
            files.push((path, FileFacts { content, mode: stat.mode, owner }));
        }
        let system_owner =
            host.user_name(host.system_owner().0).map_err(|e| self.error("cannot name root".into(), e))?;
        Ok(AptRepositoryActual { files, system_owner })
    }

    fn diff(&self, actual: &AptRepositoryActual) -> Vec<Change> {
        let found = |path: &Path| actual.files.iter().find(|(p, _)| p == path).map(|(_, f)| f);
        let wanted = self.wanted();
        let stray = actual.files.iter().filter(|(path, _)| !wanted.iter().any(|(p, _)| p == path));
        let removals = stray.map(|(path, _)| Change::entry(path, Change::Remove));
        let mut changes: Vec<Change> = match self.state {
            State::Absent => removals.collect(),
            State::Present => {
                let writes = wanted
                    .iter()
                    .flat_map(|(path, content)| file_changes(path, found(path), content, &actual.system_owner));
                writes.chain(removals).collect()
            }
        };
        match self.state {
            State::Absent if !changes.is_empty() => changes.insert(0, Change::Remove),
            State::Present if found(&self.sources_path()).is_none() => changes.insert(0, Change::Create),
            _ => {}
        }
        changes
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let touched = |path: &Path| changes.iter().any(|c| changed_file(c) == Some(path));
        let wanted: Vec<(PathBuf, Content)> = self.wanted().into_iter().filter(|(path, _)| touched(path)).collect();
        for dir in wanted.iter().filter_map(|(path, _)| path.parent()) {
            host.create_dirs(dir).map_err(|e| self.error(format!("cannot make {}", dir.display()), e))?;
        }
        // The key first: the source never names a keyring that is not there.
        for (path, content) in &wanted {
            host.write_system_file(path, content.bytes(), MODE)
                .map_err(|e| self.error(format!("cannot write {}", path.display()), e))?;
        }
        let removed = changes.iter().filter_map(|c| match c {
            Change::Entry { file, of } if **of == Change::Remove => Some(file),
            _ => None,
        });
        // The source first: no source names a keyring that is gone.
        let mut removed: Vec<&PathBuf> = removed.collect();
        removed.sort_by_key(|path| !path.starts_with(SOURCES_DIR));
        for path in removed {
            host.remove(path).map_err(|e| self.error(format!("cannot remove {}", path.display()), e))?;
        }
        let fetched = self.stanza.as_ref().is_some_and(|s| s.enabled);
        if fetched && changes.iter().any(|c| matches!(c, Change::Content { .. })) {
            host.note_stale_lists(&self.sources_path());
        }
        Ok(())
    }
}

/// Reports `name` when apt would not read a source file of that name.
fn check_name(attrs: &mut Attrs, name: &str, span: Span) -> bool {
    let Some(problem) = stanza::name_problem(name) else { return true };
    let shown = crate::error::escape(name).into_owned();
    attrs.error(
        span,
        format!("`{shown}` cannot name an apt source: {problem}"),
        "not a source file name",
        "name it with letters, digits, `_`, `-` and `.`, such as `nginx` or `docker-ce`",
    );
    false
}

/// The words of `key` (a list, or one string), each checked by `problem`; errors at each word.
fn words(attrs: &mut Attrs, key: &'static str, problem: impl Fn(&str) -> Option<String>, help: &str) -> Vec<String> {
    let mut kept = Vec::new();
    for (word, span) in attrs.strings(key) {
        match problem(&word) {
            None => kept.push(word),
            Some(why) => {
                let shown = crate::error::escape(&word).into_owned();
                attrs.error(span, format!("`{shown}` cannot be one of `{key}`: {why}"), "not a valid value", help);
            }
        }
    }
    kept
}

/// The stanza's fields, each value checked; None with `state: absent` or when one is missing.
fn read_stanza(attrs: &mut Attrs, at: Span, state: State) -> Option<Stanza> {
    let uris = words(attrs, "uris", stanza::uri_problem, "write a URI such as `https://nginx.org/packages/debian`");
    let suites = words(attrs, "suites", plain_problem, "write a suite such as `bookworm`, or `./` (flat)");
    let components = words(attrs, "components", plain_problem, "write components such as `main`");
    let architectures = words(attrs, "architectures", architecture_problem, "write architectures such as `amd64`");
    let types = words(attrs, "types", type_problem, "write `types: [deb]` or `types: [deb, deb-src]`");
    let enabled = attrs.bool("enabled").unwrap_or(true);
    if state == State::Absent {
        return None;
    }
    require(attrs, "uris", !uris.is_empty(), at, "`uris: https://nginx.org/packages/debian`");
    require(attrs, "suites", !suites.is_empty(), at, "`suites: bookworm`");
    if !suites.is_empty() && !check_layout(attrs, &suites, &components, at) {
        return None;
    }
    let mut types: Vec<SourceType> = types.iter().filter_map(|word| SourceType::named(word)).collect();
    if types.is_empty() {
        types.push(SourceType::Deb);
    }
    let complete = !uris.is_empty() && !suites.is_empty();
    complete.then_some(Stanza { types, uris, suites, components, architectures, enabled, signed_by: None })
}

fn plain_problem(word: &str) -> Option<String> {
    stanza::value_problem(word).map(str::to_owned)
}

fn architecture_problem(word: &str) -> Option<String> {
    stanza::architecture_problem(word).map(str::to_owned)
}

fn type_problem(word: &str) -> Option<String> {
    SourceType::named(word).is_none().then(|| "the types are `deb` and `deb-src`".to_owned())
}

/// Reports `key` missing (when it is not there at all: a wrong value is reported already).
fn require(attrs: &mut Attrs, key: &'static str, found: bool, at: Span, example: &str) {
    if !found && attrs.node(key).is_none() {
        attrs.error(at, format!("an apt_repository needs `{key}`"), format!("no `{key}`"), format!("add {example}"));
    }
}

/// Reports suites and components that do not make a repository as apt reads them.
fn check_layout(attrs: &mut Attrs, suites: &[String], components: &[String], at: Span) -> bool {
    let Some(problem) = stanza::layout_problem(suites, components) else { return true };
    attrs.error(
        at,
        format!("these suites and components do not make an apt repository: {problem}"),
        "suites and components disagree",
        "a flat repository is `suites: ./` without `components:`; any other is `suites: bookworm` with `components: [main]`",
    );
    false
}

/// `key:`: armored text inline, or a file beside the playbook; its format told by its content.
fn read_key(attrs: &mut Attrs) -> Option<Key> {
    let node = attrs.node("key")?;
    let text = attrs.render_string("key", node)?;
    let bytes = match text.trim_start().starts_with("-----BEGIN") {
        true => text.into_bytes(),
        false => attrs.templates().read_bytes(text.trim(), node.span).map_err(|e| attrs.errors.push(e)).ok()?,
    };
    match KeyFormat::of(&bytes) {
        Ok(format) => Some(Key { format, content: Content::from(bytes) }),
        Err(why) => {
            attrs.error(
                node.span,
                format!("`key` is not a public key apt can read: {why}"),
                "not an OpenPGP public key",
                "give the vendor's key file beside the playbook (`key: files/vendor.asc`), or its armored text inline (`key: |`)",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n-----END PGP PUBLIC KEY BLOCK-----\n";

    fn vendor() -> AptRepository {
        AptRepository {
            name: "vendor".into(),
            state: State::Present,
            stanza: Some(Stanza {
                types: vec![SourceType::Deb],
                uris: vec!["https://example.org/debian".into()],
                suites: vec!["bookworm".into()],
                components: vec!["main".into()],
                architectures: vec![],
                enabled: true,
                signed_by: Some("/etc/apt/keyrings/vendor.asc".into()),
            }),
            key: Some(Key { format: KeyFormat::Armored, content: Content::from(KEY) }),
        }
    }

    fn facts(content: &str) -> FileFacts {
        FileFacts { content: Content::from(content), mode: MODE, owner: "root".into() }
    }

    fn actual(files: &[(&str, FileFacts)]) -> AptRepositoryActual {
        let files = files.iter().map(|(p, f)| (PathBuf::from(p), f.clone())).collect();
        AptRepositoryActual { files, system_owner: "root".into() }
    }

    fn converged() -> AptRepositoryActual {
        let source = vendor().stanza.unwrap().render();
        actual(&[
            ("/etc/apt/sources.list.d/vendor.sources", facts(&source)),
            ("/etc/apt/keyrings/vendor.asc", facts(KEY)),
        ])
    }

    #[test]
    fn a_new_repository_writes_its_key_then_its_source() {
        let changes = vendor().diff(&actual(&[]));
        let files: Vec<_> = changes.iter().map(|c| changed_file(c).map(Path::to_owned)).collect();
        assert_eq!(changes[0], Change::Create);
        assert_eq!(
            files[1..],
            [Some("/etc/apt/keyrings/vendor.asc".into()), Some("/etc/apt/sources.list.d/vendor.sources".into())]
        );
        assert_eq!(vendor().diff(&converged()), vec![]);
    }

    #[test]
    fn a_key_of_the_other_format_and_a_wrong_mode_are_put_right() {
        let mut binary = vendor();
        binary.key = Some(Key { format: KeyFormat::Binary, content: Content::from(vec![0x98, 1, 2]) });
        binary.stanza.as_mut().unwrap().signed_by = Some("/etc/apt/keyrings/vendor.gpg".into());
        let changes = binary.diff(&converged());
        assert!(changes.contains(&Change::entry("/etc/apt/keyrings/vendor.asc", Change::Remove)), "{changes:?}");
        assert!(
            changes.iter().any(|c| changed_file(c) == Some(Path::new("/etc/apt/keyrings/vendor.gpg"))),
            "{changes:?}"
        );
        let mut loose = converged();
        loose.files[1].1.mode = Mode(0o600);
        let set = Change::entry("/etc/apt/keyrings/vendor.asc", Change::set(Attr::Mode, Some(Mode(0o600)), MODE));
        assert_eq!(vendor().diff(&loose), vec![set]);
    }

    #[test]
    fn absent_removes_the_source_and_the_key() {
        let gone = AptRepository { state: State::Absent, stanza: None, key: None, ..vendor() };
        assert_eq!(
            gone.diff(&converged()),
            vec![
                Change::Remove,
                Change::entry("/etc/apt/sources.list.d/vendor.sources", Change::Remove),
                Change::entry("/etc/apt/keyrings/vendor.asc", Change::Remove),
            ]
        );
        assert_eq!(gone.diff(&actual(&[])), vec![]);
    }
}
