//! The resource contract: the core of converge.
//!
//! A resource is one thing on the host that a playbook describes (a file, a user, a unit). It is
//! converged in three separate steps, so that what is read, what is compared and what is written
//! never mix (mgmt's `CheckApply(apply bool)` does all three in one function):
//!
//! - `observe` reads the host and nothing else;
//! - `diff` compares the desired state with an observation: pure, so it is unit-tested with
//!   hand-built observations and no filesystem;
//! - `apply` makes exactly the changes that `diff` returned.
//!
//! A resource is converged when `diff(observe())` is empty, and that holds right after `apply`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::host::Host;
use crate::kinds::Kind;
use crate::kinds::notify::Notify;
use crate::playbook::attrs::Attrs;
use crate::playbook::table::Table;
pub use crate::playbook::values::{Ownership, State};
use crate::playbook::yaml_node::{Node, Span};

/// A kind of resource: how it is built from its entry, what it needs first, and how it is
/// observed, diffed and applied. Adding a kind is a file in `kinds/` implementing this trait and
/// one line in the registry (`kinds/mod.rs`); the methods with defaults say nothing for a kind
/// that has nothing to say (no ordering facts, no paths, no implicit triggers).
pub trait Resource: Sized {
    /// What `observe` found on the host.
    type Actual: fmt::Debug;

    /// Its kind (the registry's name for it).
    const KIND: Kind;

    /// Its attributes: the keys `Attrs` accepts for it and `converge schema` describes.
    const TABLE: Table;

    /// Builds it from its entry: `name` is the kind key's value (`file: /etc/motd`). Every
    /// attribute is read even when the name is wrong, so that every mistake of the entry is
    /// reported (into `attrs`) and none of its keys is taken for an unknown one.
    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<Self>;

    /// The name in its id (`kind:name`).
    fn name(&self) -> String;

    /// Its id: what plans, `after:` and triggers call it.
    fn id(&self) -> ResourceId {
        ResourceId::new(Self::KIND, self.name())
    }

    /// What must be there before it is applied (ordering facts, as mgmt's AutoEdges): the
    /// dependency graph orders it after the resources of the playbook that provide them, and the
    /// plan checks that the host has the others.
    fn needs(&self) -> Vec<Need> {
        Vec::new()
    }

    /// What it makes that others may need (the other half of [`Resource::needs`]).
    fn provides(&self) -> Vec<Provide> {
        Vec::new()
    }

    /// Folds in another entry of the playbook with the same id, for a kind whose entries add up
    /// (the `line_in_file` entries of one file, made in one write); otherwise it is a duplicate.
    fn merge(&mut self, _other: &Self) -> Result<(), Unmerged> {
        Err(Unmerged::Duplicate)
    }

    /// Ids of other resources it names (a unit's `restart_triggers`), with where: each must be a
    /// resource of the playbook.
    fn names_ids(&self) -> Vec<(&ResourceId, Span)> {
        Vec::new()
    }

    /// The text it writes (a file's, a site's, a unit's), for what `sensitive` hides.
    fn content(&self) -> Option<&Content> {
        None
    }

    /// Triggers a change of it always sets off, besides its `notify:`.
    fn implicit_notify(&self) -> Vec<Notify> {
        Vec::new()
    }

    /// The paths it writes: what a saved plan observes again and a run record keeps.
    fn paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Whether the facts of its paths (existence, type, mode, owner, sha256, target) are all
    /// that its observation reads; otherwise a saved plan also keeps what `observe` found.
    const PATHS_TELL_ALL: bool = false;

    /// Why a rollback cannot put back what applying it changed (a command that ran), if so.
    fn not_restored(&self) -> Option<&'static str> {
        None
    }

    /// What its apply waits for when that can take seconds (worth a spinner).
    fn slow_step(&self) -> Option<&'static str> {
        None
    }

    /// How its apply may overlap with other resources' (engine/apply.rs).
    fn overlap(&self) -> Overlap {
        Overlap::Alone
    }

    /// Its ordering facts at apply time, when the host can tell that some of [`Resource::needs`]
    /// are met already (a venv that uv makes with an interpreter that is there waits for no
    /// package). Reads the host; never writes.
    fn needs_now(&self, host: &Host) -> Result<Vec<Need>> {
        let _ = host;
        Ok(self.needs())
    }

    /// Reads the host; never writes.
    fn observe(&self, host: &Host) -> Result<Self::Actual>;

    /// The changes that would bring `actual` to the desired state; empty when converged.
    fn diff(&self, actual: &Self::Actual) -> Vec<Change>;

    /// Makes `changes` (which `diff` returned) on the host. What to do is taken from the desired
    /// state (`self`); a change says only which attribute differs.
    fn apply(&self, changes: &[Change], host: &Host) -> Result<()>;
}

/// How a resource's apply may overlap with others' during an apply (engine/apply.rs): what is not
/// joined by an ordering edge (`after:`, [`Resource::needs`]) may run at the same time as long work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// After everything before it, and nothing else meanwhile: it may run programs that need
    /// anything applied before it (a command, a unit started, a site tested with `nginx -t`).
    Alone,
    /// Files and accounts: in the playbook's order, while long work before it that no ordering
    /// edge joins it to goes on.
    Beside,
    /// Long work of its own (a venv built): beside other work that no ordering edge joins it
    /// to, a few at once.
    Long,
    /// Long work that holds a host-wide lock (apt-get, dpkg's): as [`Overlap::Long`], but never
    /// beside another of its kind.
    LongExclusive,
}

/// Something a resource needs before it is applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    /// The path it manages: it comes after a `directory` resource of any of its ancestors.
    Inside(PathBuf),
    /// A directory that must exist when it is applied: made by an earlier resource of the
    /// playbook, or on the host already.
    Directory(PathBuf),
    /// A user that must exist: a `user` resource of the playbook comes first, or the host has it.
    User(String),
    /// A group that must exist, as a user does.
    Group(String),
    /// One of these packages: an `apt` resource that installs one of them comes first.
    Package(&'static [&'static str]),
    /// The apt sources written before it: each `apt_repository` resource earlier in the
    /// playbook comes first (one written later does not: an install before it may bring what
    /// fetching it needs, such as ca-certificates).
    AptSources,
    /// A resource of the playbook whose change it reacts to (a command's `on_change:`): it comes
    /// after it.
    Changed(ResourceId),
}

impl Need {
    /// The resource of the playbook that would provide it by its id (a user, a group).
    pub fn id(&self) -> Option<ResourceId> {
        match self {
            Need::User(name) => Some(ResourceId::new(Kind::User, name)),
            Need::Group(name) => Some(ResourceId::new(Kind::Group, name)),
            Need::Inside(_) | Need::Directory(_) | Need::Package(_) | Need::AptSources | Need::Changed(_) => None,
        }
    }
}

/// Why an entry with the id of an earlier one is not folded into it ([`Resource::merge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmerged {
    /// Its kind does not add entries up: it is a duplicate.
    Duplicate,
    /// The two disagree; the message says on what, and how to make them agree.
    Conflict(String),
}

/// Something a resource makes, that others may need.
#[derive(Debug, Clone, PartialEq)]
pub enum Provide {
    /// A directory: what is inside it comes after it.
    Directory(PathBuf),
    /// An installed package.
    Package(String),
    /// An apt source (`apt_repository`), that installs come after.
    AptSource,
}

/// What a resource is called in plans, in `after:` and in triggers: `kind:name`. It is written
/// (and serialized, in JSON output and saved plans) as that one string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    pub kind: Kind,
    pub name: String,
}

impl ResourceId {
    /// The id of the `kind` resource called `name`.
    pub fn new(kind: Kind, name: impl Into<String>) -> ResourceId {
        ResourceId { kind, name: name.into() }
    }

    /// The id of a resource that manages `path`.
    pub fn path(kind: Kind, path: &Path) -> ResourceId {
        ResourceId::new(kind, path.to_string_lossy())
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// Why a text is not an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// There is no `:` between a kind and a name.
    NoKind,
    /// What comes before the `:` is no kind.
    UnknownKind(String),
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::NoKind => f.write_str("an id is kind:name, such as file:/etc/app.conf"),
            IdError::UnknownKind(kind) => {
                let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                write!(f, "`{kind}` is not a kind; an id starts with one of: {}", kinds.join(", "))
            }
        }
    }
}

impl std::str::FromStr for ResourceId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<ResourceId, IdError> {
        let (kind, name) = text.split_once(':').ok_or(IdError::NoKind)?;
        let kind = kind.parse().map_err(|_| IdError::UnknownKind(kind.to_owned()))?;
        Ok(ResourceId::new(kind, name))
    }
}

impl serde::Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ResourceId, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|e: IdError| serde::de::Error::custom(format!("`{text}`: {e}")))
    }
}

/// One difference between the host and the playbook. Saved plans and run records keep it as
/// it is (serde, `"change": "set"`, ...).
///
/// A `Set` names its attribute with one shared [`Attr`] enum rather than one change type per
/// kind: most attributes are shared (mode, owner, group, enabled), and a kind whose changes are
/// content, creation, removal or those attributes adds nothing here. A kind with an attribute of
/// its own adds a variant and its name. `apply` takes what to do from the desired state and the
/// attribute; the values are for people ([`Change::shown`]) and for comparing plans.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// The thing does not exist and will be created with the desired attributes.
    Create,
    /// The thing exists and will be removed.
    Remove,
    /// The content differs (`from` is None when there is none yet). `file` names the file when
    /// the resource has several (a unit's drop-ins); None is the resource's own path.
    Content { file: Option<PathBuf>, from: Option<Content>, to: Content },
    /// An attribute differs: mode, owner, shell, symlink target, ...
    Set { attr: Attr, from: Option<Value>, to: Value },
    /// A command will run, and why.
    Run { reason: String },
    /// One entry inside a tree the resource copies (a `directory` with `source:`), by its path:
    /// `Create` (a directory made), `Remove` (what `purge` removes) or a `Set` of its mode, owner
    /// or group. A file's new content is a `Content` change naming the file.
    Entry { file: PathBuf, of: Box<Change> },
}

impl Change {
    /// A `Set` change of `attr`.
    pub fn set(attr: Attr, from: Option<impl Into<Value>>, to: impl Into<Value>) -> Change {
        Change::Set { attr, from: from.map(Into::into), to: to.into() }
    }

    /// A `Set` change of `attr`, which had no value.
    pub fn set_to(attr: Attr, to: impl Into<Value>) -> Change {
        Change::Set { attr, from: None, to: to.into() }
    }

    /// A change of the entry `file` of a tree.
    pub fn entry(file: impl Into<PathBuf>, change: Change) -> Change {
        Change::Entry { file: file.into(), of: Box::new(change) }
    }

    /// Whether it is a `Set` of `attr`.
    pub fn sets(&self, attr: Attr) -> bool {
        matches!(self, Change::Set { attr: a, .. } if *a == attr)
    }

    /// A `Set` change as people read it: the one place that renders one, for the printer and
    /// the JSON records.
    pub fn shown(&self) -> Option<Shown> {
        let Change::Set { attr, from, to } = self else { return None };
        Some(Shown { attr: *attr, from: from.as_ref().map(Value::to_string), to: to.to_string() })
    }
}

/// A `Set` change as text: `attr: from -> to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub attr: Attr,
    pub from: Option<String>,
    pub to: String,
}

/// The attributes a `Set` change can name (see [`Change`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attr {
    Mode,
    Owner,
    Group,
    /// A symlink's target.
    Target,
    Enabled,
    Masked,
    Active,
    Uid,
    Gid,
    /// A user's supplementary groups.
    Groups,
    Home,
    Shell,
    /// A package of an `apt` resource.
    Package,
    /// A virtualenv's interpreter.
    Python,
    /// A virtualenv's requirement to install, upgrade, downgrade or replace.
    Install,
    Upgrade,
    Downgrade,
    Replace,
    /// A virtualenv's package that `exact` uninstalls, or that is left alone.
    Uninstall,
    Extraneous,
    /// A virtualenv made again, and why.
    Recreate,
    /// The program that makes a virtualenv and installs into it: uv or pip.
    Installer,
    /// An nginx site an interrupted run left untested.
    NginxTest,
    /// The distribution's default nginx site.
    DefaultSite,
    /// A download's sha256.
    Sha256,
    /// The directory a download is extracted into.
    Extract,
    /// The lines `line_in_file` edits, in a file that is not there yet.
    Lines,
    /// The URL of a git checkout's `origin`.
    Repo,
    /// The commit a git checkout has checked out.
    Commit,
    /// A commit that checking out another brings (`+`) or leaves (`-`), with its subject.
    Log,
    /// What a git checkout with `force: true` throws away: local changes and commits.
    Discard,
}

impl Attr {
    /// Its name as plans show it (a playbook attribute's name where it is one).
    pub fn name(self) -> &'static str {
        match self {
            Attr::Mode => "mode",
            Attr::Owner => "owner",
            Attr::Group => "group",
            Attr::Target => "target",
            Attr::Enabled => "enabled",
            Attr::Masked => "masked",
            Attr::Active => "active",
            Attr::Uid => "uid",
            Attr::Gid => "gid",
            Attr::Groups => "groups",
            Attr::Home => "home",
            Attr::Shell => "shell",
            Attr::Package => "package",
            Attr::Python => "python",
            Attr::Install => "install",
            Attr::Upgrade => "upgrade",
            Attr::Downgrade => "downgrade",
            Attr::Replace => "replace",
            Attr::Uninstall => "uninstall",
            Attr::Extraneous => "extraneous",
            Attr::Recreate => "recreate",
            Attr::Installer => "installer",
            Attr::NginxTest => "nginx -t",
            Attr::DefaultSite => "default site",
            Attr::Sha256 => "sha256",
            Attr::Extract => "extract",
            Attr::Lines => "lines",
            Attr::Repo => "repo",
            Attr::Commit => "commit",
            Attr::Log => "log",
            Attr::Discard => "discard",
        }
    }
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value of an attribute in a `Set` change, typed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// A name, a path or words for people.
    Text(String),
    /// A file mode.
    Mode(crate::host::mode::Mode),
    /// A number (a uid).
    Number(u32),
    /// true or false.
    Flag(bool),
    /// Whether a unit runs: active or inactive.
    Running(bool),
    /// Names, shown comma-separated (a user's groups).
    Names(Vec<String>),
    /// A package and what becomes of it.
    Package { name: String, to: PackageTo },
}

/// What becomes of a package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageTo {
    /// Installed, at the candidate version.
    Install,
    /// Installed at this version.
    Version(String),
    Remove,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(text) => f.write_str(text),
            Value::Mode(mode) => write!(f, "{mode}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Flag(b) => write!(f, "{b}"),
            Value::Running(true) => f.write_str("active"),
            Value::Running(false) => f.write_str("inactive"),
            Value::Names(names) => f.write_str(&names.join(",")),
            Value::Package { name, to: PackageTo::Install } => write!(f, "{name}: install"),
            Value::Package { name, to: PackageTo::Version(version) } => write!(f, "{name}: {version}"),
            Value::Package { name, to: PackageTo::Remove } => write!(f, "{name}: remove"),
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Text(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Text(text)
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Value {
        Value::Text(text.clone())
    }
}

impl From<bool> for Value {
    fn from(flag: bool) -> Value {
        Value::Flag(flag)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Number(n)
    }
}

impl From<crate::host::mode::Mode> for Value {
    fn from(mode: crate::host::mode::Mode) -> Value {
        Value::Mode(mode)
    }
}

/// File content, shared cheaply between the desired state, the observation and the plan; or,
/// for a file on the host too big to read into memory, only its size and sha256 (it can never
/// equal content of the playbook, which is read into memory).
#[derive(Clone, PartialEq, Eq)]
pub enum Content {
    Bytes(Arc<[u8]>),
    Large { len: u64, sha256: String },
}

impl Content {
    /// The bytes (none for a large file known by its digest).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Content::Bytes(bytes) => bytes,
            Content::Large { .. } => &[],
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::Large { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn sha256(&self) -> String {
        match self {
            Content::Bytes(bytes) => crate::host::hex(&Sha256::digest(bytes)),
            Content::Large { sha256, .. } => sha256.clone(),
        }
    }

    /// Text that a unified diff can show: UTF-8, no NUL bytes, not too big.
    pub fn as_text(&self) -> Option<&str> {
        const LIMIT: usize = 256 * 1024;
        let Content::Bytes(bytes) = self else { return None };
        if bytes.len() > LIMIT || bytes.contains(&0) {
            return None;
        }
        std::str::from_utf8(bytes).ok()
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_text() {
            Some(text) if text.len() < 80 => write!(f, "Content({text:?})"),
            _ => write!(f, "Content({} bytes)", self.len()),
        }
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Content {
        Content::Bytes(Arc::from(text.as_bytes()))
    }
}

impl From<Vec<u8>> for Content {
    fn from(bytes: Vec<u8>) -> Content {
        Content::Bytes(Arc::from(bytes))
    }
}

/// `Set` changes for the owner and group of `ownership` that differ from what was observed.
pub fn ownership_changes(ownership: &Ownership, owner: &str, group: &str) -> Vec<Change> {
    let mut changes = Vec::new();
    if let Some(want) = ownership.owner.as_deref().filter(|w| *w != owner) {
        changes.push(Change::set(Attr::Owner, Some(owner), want));
    }
    if let Some(want) = ownership.group.as_deref().filter(|w| *w != group) {
        changes.push(Change::set(Attr::Group, Some(group), want));
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mode::Mode;

    #[test]
    fn ids_parse_and_show_as_kind_colon_name() {
        let id: ResourceId = "file:/etc/a:b".parse().unwrap();
        assert_eq!(id, ResourceId::new(Kind::File, "/etc/a:b"));
        assert_eq!(id.to_string(), "file:/etc/a:b");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"file:/etc/a:b\"");
        assert_eq!(serde_json::from_str::<ResourceId>("\"nginx_site:app\"").unwrap().kind, Kind::NginxSite);
        assert_eq!("motd".parse::<ResourceId>(), Err(IdError::NoKind));
        assert_eq!("fiel:/a".parse::<ResourceId>(), Err(IdError::UnknownKind("fiel".into())));
        assert!(serde_json::from_str::<ResourceId>("\"path:/a\"").is_err());
    }

    #[test]
    fn changes_are_shown_as_before_and_kept_typed() {
        let changes = [
            (Change::set(Attr::Mode, Some(Mode(0o644)), Mode(0o640)), "mode", Some("0644"), "0640"),
            (Change::set_to(Attr::Enabled, true), "enabled", None, "true"),
            (
                Change::set(Attr::Active, Some(Value::Running(false)), Value::Running(true)),
                "active",
                Some("inactive"),
                "active",
            ),
            (
                Change::set(Attr::Groups, Some(Value::Names(vec![])), Value::Names(vec!["a".into(), "b".into()])),
                "groups",
                Some(""),
                "a,b",
            ),
            (
                Change::set(Attr::Package, Some("1.0"), Value::Package { name: "nginx".into(), to: PackageTo::Remove }),
                "package",
                Some("1.0"),
                "nginx: remove",
            ),
            (Change::set_to(Attr::DefaultSite, "removed"), "default site", None, "removed"),
        ];
        for (change, attr, from, to) in changes {
            let shown = change.shown().unwrap();
            assert_eq!((shown.attr.name(), shown.from.as_deref(), shown.to.as_str()), (attr, from, to));
            let json = serde_json::to_string(&change).unwrap();
            assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), change, "{json}");
        }
        assert_eq!(Change::Create.shown(), None);
    }
}
