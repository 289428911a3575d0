//! Saved plans: `converge plan --out FILE` writes what was reviewed, `converge show FILE` prints
//! it again, and `converge apply --plan FILE` applies exactly that, or refuses when the host
//! changed since (docs/saved-plans.md).
//!
//! A saved plan holds each resource's desired state itself (the resolved `AnyResource`, as
//! JSON), not the playbook it came from: applying it never reads the playbook, its templates or
//! its variables again, so an edit of the playbook after the review changes nothing of what is
//! applied. Beside the desired state it keeps, per resource, the facts observed when it was
//! planned (existence, type, mode, owner, group, sha256, link target, unit and package state)
//! and their digest; `apply --plan` observes them again for every resource before it changes
//! anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::engine::journal::Pending;
use crate::engine::plan::{Plan, ResourcePlan};
use crate::engine::resolve::{Entry, Resolved};
use crate::engine::trigger::Trigger;
use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};
use crate::kinds::AnyResource;
use crate::kinds::notify::Notify;
use crate::kinds::resource::{Change, Content, ResourceId};
use crate::kinds::virtualenv::Wanted;

/// What the file says it is.
pub const FORMAT: &str = "converge-plan";
/// The layout of the file; a converge that does not know it refuses the file.
pub const FORMAT_VERSION: u32 = 2;

/// A plan as `plan --out` writes it.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    pub format_version: u32,
    /// The converge that made it; another version refuses to apply it.
    pub converge_version: String,
    /// When it was made, in seconds since the epoch.
    pub created: u64,
    pub playbook: PlaybookInfo,
    /// `--root` when it was made (absolute); `apply --plan` must be given the same.
    pub root: Option<PathBuf>,
    /// The variables the playbook used; a secret one has its name only.
    pub variables: Vec<Variable>,
    /// Whether sensitive values were written (only with `--allow-secrets`).
    pub contains_secrets: bool,
    /// Every resource of the playbook, in the order they are applied.
    pub resources: Vec<SavedResource>,
    pub triggers: Vec<Trigger>,
    /// What the triggers were decided from.
    pub pending: Pending,
    pub units_unobserved: bool,
    /// Resources a `when:` left out, with the expression.
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PlaybookInfo {
    pub path: PathBuf,
    pub name: String,
    /// Every file read to resolve it (the playbook, modules, templates, sources, vars files;
    /// never a secrets file), with its sha256.
    pub files: Vec<FileDigest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    #[serde(default)]
    pub secret: bool,
    /// The value as templates render it; absent for a secret variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SavedResource {
    pub id: ResourceId,
    pub sensitive: bool,
    #[serde(default)]
    pub notify: Vec<Notify>,
    /// The desired state, as planned.
    pub desired: AnyResource,
    /// What the host was when it was planned.
    pub observed: Observation,
    /// The planned changes; empty when it already matched.
    #[serde(default)]
    pub changes: Vec<Change>,
    #[serde(default)]
    pub created_above: Vec<ResourceId>,
    /// What to hide in its messages (only with `--allow-secrets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// The facts observed of one resource, and their sha256 (of the facts as compact JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub digest: String,
    pub facts: BTreeMap<String, String>,
}

// ----- serde for the types the desired state is made of ----------------------------------------

/// Text as it is, anything else as hex; a large file of the host by its size and digest.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ContentRepr {
    Text(String),
    Hex(String),
    Large { len: u64, sha256: String },
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let repr = match self {
            Content::Bytes(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => ContentRepr::Text(text.to_owned()),
                Err(_) => ContentRepr::Hex(crate::host::hex(bytes)),
            },
            Content::Large { len, sha256 } => ContentRepr::Large { len: *len, sha256: sha256.clone() },
        };
        repr.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Content, D::Error> {
        Ok(match ContentRepr::deserialize(d)? {
            ContentRepr::Text(text) => Content::Bytes(Arc::from(text.into_bytes())),
            ContentRepr::Hex(hex) => Content::Bytes(Arc::from(unhex(&hex).map_err(serde::de::Error::custom)?)),
            ContentRepr::Large { len, sha256 } => Content::Large { len, sha256 },
        })
    }
}

fn unhex(text: &str) -> std::result::Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("hex content has an odd number of digits".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| format!("`{}` is not hex", &text[i..i + 2])))
        .collect()
}

/// A mode as its four octal digits ("0644").
impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Mode, D::Error> {
        let text = String::deserialize(d)?;
        Mode::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A requirement as pip is given it; read back by parsing it again.
impl Serialize for Wanted {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Wanted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Wanted, D::Error> {
        let text = String::deserialize(d)?;
        Wanted::parse(&text).map_err(serde::de::Error::custom)
    }
}

// ----- the files a resolve read -------------------------------------------------------------------

/// Runs `f` and returns it with every input file it read (host::read_input), with its sha256.
pub fn record_inputs<T>(f: impl FnOnce() -> T) -> (T, Vec<FileDigest>) {
    let (value, read) = crate::host::record_inputs(f);
    (value, read.into_iter().map(|(path, sha256)| FileDigest { path, sha256 }).collect())
}

// ----- observation ------------------------------------------------------------------------------

/// What a resource's plan depends on: each of its paths (existence, type, mode, owner, group,
/// sha256 of a file, target of a link) and, but for plain files, directories and links, what
/// the kind itself observes (unit state, package versions, account entries, a command's need).
pub fn observe(resource: &AnyResource, host: &Host) -> Result<Observation> {
    let mut facts = BTreeMap::new();
    let id = resource.id();
    let io = |e| Error::resource_io(&id, "cannot observe it", e);
    for (i, path) in resource.paths().iter().enumerate() {
        let key = |attr: &str| if i == 0 { attr.to_owned() } else { format!("{} {attr}", path.display()) };
        let Some(stat) = host.stat(path).map_err(io)? else {
            facts.insert(key("exists"), "no".into());
            continue;
        };
        facts.insert(key("exists"), "yes".into());
        facts.insert(key("type"), stat.kind.name().into());
        facts.insert(key("mode"), stat.mode.to_string());
        facts.insert(key("owner"), host.user_name(stat.uid).map_err(io)?);
        facts.insert(key("group"), host.group_name(stat.gid).map_err(io)?);
        match stat.kind {
            FileKind::File => {
                facts.insert(key("sha256"), host.digest(path).map_err(io)?.1);
            }
            FileKind::Symlink => {
                facts.insert(key("target"), host.read_link(path).map_err(io)?.display().to_string());
            }
            _ => {}
        }
    }
    let observed = resource.observed(host)?;
    if let Some(observed) = observed {
        facts.insert("state".into(), observed);
    }
    let digest = crate::host::hex(&Sha256::digest(serde_json::to_vec(&facts).expect("strings serialize")));
    Ok(Observation { digest, facts })
}

// ----- making, writing, reading -------------------------------------------------------------------

impl SavedPlan {
    /// The plan of `resolved`, with what each resource was observed as (`observed`, in the
    /// order of `resolved.entries`, made before the plan so that a host changed in between
    /// makes the plan stale rather than wrong).
    pub fn new(
        resolved: &Resolved,
        plan: &Plan,
        observed: Vec<Observation>,
        playbook: &Path,
        files: Vec<FileDigest>,
        root: Option<&Path>,
    ) -> SavedPlan {
        let resources = resolved
            .entries
            .iter()
            .zip(observed)
            .enumerate()
            .map(|(index, (entry, observed))| {
                let planned = plan.resources.iter().find(|r| r.index == index);
                SavedResource {
                    id: entry.id.clone(),
                    sensitive: entry.sensitive,
                    notify: entry.notify.clone(),
                    desired: entry.resource.clone(),
                    observed,
                    changes: planned.map(|p| p.changes.clone()).unwrap_or_default(),
                    created_above: planned.map(|p| p.created_above.clone()).unwrap_or_default(),
                    secrets: if entry.sensitive { entry.secrets.clone() } else { Vec::new() },
                }
            })
            .collect();
        let variables = resolved
            .variables
            .iter()
            .map(|(name, value)| Variable {
                name: name.clone(),
                secret: value.is_none(),
                value: value.as_ref().map(|v| v.to_string()),
            })
            .collect();
        SavedPlan {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            converge_version: env!("CARGO_PKG_VERSION").into(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            playbook: PlaybookInfo { path: playbook.to_owned(), name: resolved.name.clone(), files },
            root: root.map(absolute),
            variables,
            contains_secrets: false,
            resources,
            triggers: plan.triggers.clone(),
            pending: plan.pending.clone(),
            units_unobserved: plan.units_unobserved,
            skipped: plan.skipped.clone(),
        }
    }

    /// Writes the plan to `path` (mode 0600, atomically). A plan that would hold a sensitive
    /// value or a secret variable's value is refused unless `allow_secrets`.
    pub fn write(mut self, path: &Path, allow_secrets: bool) -> Result<()> {
        let sensitive: Vec<String> = self.resources.iter().filter(|r| r.sensitive).map(|r| r.id.to_string()).collect();
        let text = serde_json::to_string_pretty(&self).expect("a plan serializes");
        let leaks = crate::playbook::redact::apply(&text) != text;
        if (leaks || !sensitive.is_empty()) && !allow_secrets {
            let what = if sensitive.is_empty() {
                "a secret variable's value".to_owned()
            } else {
                format!("sensitive resources ({})", sensitive.join(", "))
            };
            return Err(Error::PlanFile {
                message: format!(
                    "not saving the plan to {}: it would contain {what}, written in clear into the file",
                    path.display()
                ),
                help: "add --allow-secrets to write them anyway (the file is made mode 0600; keep it as safe as the \
                       secrets), or apply the playbook directly"
                    .into(),
            });
        }
        self.contains_secrets = leaks || !sensitive.is_empty();
        let text = serde_json::to_string_pretty(&self).expect("a plan serializes") + "\n";
        write_private(path, text.as_bytes()).map_err(|e| Error::PlanFile {
            message: format!("cannot write {}: {e}", path.display()),
            help: "choose a file in a directory you can write".into(),
        })
    }

    /// Reads a plan file, refusing one of another format or converge version.
    pub fn load(path: &Path) -> Result<SavedPlan> {
        let bytes = crate::host::read_input(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        SavedPlan::parse(&bytes, path)
    }

    /// Reads a plan from its file's bytes (`path` names it in errors), refusing one of another
    /// format or converge version.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<SavedPlan> {
        let bad = |why: String| Error::PlanFile {
            message: format!("{} is not a plan converge can apply: {why}", path.display()),
            help: "make it again with `converge plan PLAYBOOK --out FILE`".into(),
        };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON ({e})")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(bad(format!("it has no \"format\": \"{FORMAT}\"")));
        }
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(bad(format!(
                "its format_version is {}, this converge reads version {FORMAT_VERSION}",
                version.map(|v| v.to_string()).unwrap_or_else(|| "missing".into())
            )));
        }
        let saved: SavedPlan = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        for r in &saved.resources {
            for secret in &r.secrets {
                crate::playbook::redact::add(secret);
            }
        }
        Ok(saved)
    }

    /// The error when this converge is not the one that made the plan, or `root` is not the
    /// root it was made for.
    pub fn check_target(&self, root: Option<&Path>) -> Result<()> {
        let version = env!("CARGO_PKG_VERSION");
        if self.converge_version != version {
            return Err(Error::PlanFile {
                message: format!("the plan was made by converge {}, this is converge {version}", self.converge_version),
                help: "make the plan again with this converge, or apply it with the converge that made it".into(),
            });
        }
        let root = root.map(absolute);
        if root != self.root {
            let shown = |r: &Option<PathBuf>| match r {
                Some(r) => format!("--root {}", r.display()),
                None => "this host (no --root)".into(),
            };
            return Err(Error::PlanFile {
                message: format!("the plan was made for {}, not for {}", shown(&self.root), shown(&root)),
                help: "apply it with the same --root it was planned with".into(),
            });
        }
        Ok(())
    }

    /// The playbook as the plan holds it, ready to plan and apply again. It keeps no `after:`,
    /// so each resource is applied after all those before it, one at a time.
    pub fn resolved(&self) -> Resolved {
        let entries = self
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| Entry {
                id: r.id.clone(),
                span: Default::default(),
                resource: r.desired.clone(),
                notify: r.notify.clone(),
                sensitive: r.sensitive,
                secrets: r.secrets.clone(),
                after: self.resources[..i].iter().map(|earlier| earlier.id.clone()).collect(),
            })
            .collect();
        let name = self.playbook.path.display().to_string();
        Resolved {
            name: self.playbook.name.clone(),
            entries,
            source: crate::error::Source::new(name, String::new()),
            warnings: Vec::new(),
            skipped: self.skipped.clone(),
            variables: Vec::new(),
        }
    }

    /// The plan as `plan` printed it when it was saved.
    pub fn plan(&self) -> Plan {
        let mut plan = Plan {
            triggers: self.triggers.clone(),
            pending: self.pending.clone(),
            units_unobserved: self.units_unobserved,
            skipped: self.skipped.clone(),
            ..Plan::default()
        };
        for (index, r) in self.resources.iter().enumerate() {
            if r.changes.is_empty() {
                plan.unchanged.push(r.id.clone());
            } else {
                plan.resources.push(ResourcePlan {
                    index,
                    id: r.id.clone(),
                    changes: r.changes.clone(),
                    sensitive: r.sensitive,
                    created_above: r.created_above.clone(),
                });
            }
        }
        plan
    }

    /// Observes every resource again, before anything is changed: the error names each one
    /// that differs from what the plan was made against, and what differs.
    pub fn check_fresh(&self, resolved: &Resolved, host: &Host) -> Result<()> {
        let mut stale = Vec::new();
        for (saved, entry) in self.resources.iter().zip(&resolved.entries) {
            let now = observe(&entry.resource, host).map_err(|e| entry.own_error(e))?;
            if now.digest == saved.observed.digest {
                continue;
            }
            let mut keys: Vec<&String> = saved.observed.facts.keys().chain(now.facts.keys()).collect();
            keys.sort();
            keys.dedup();
            let differences: Vec<String> = keys
                .into_iter()
                .filter(|k| saved.observed.facts.get(*k) != now.facts.get(*k))
                // A thing that appeared or went: its existence says it, not each attribute.
                .filter(|k| {
                    let exists =
                        |facts: &BTreeMap<String, String>| facts.get(&k.replace(attr_of(k), "exists")).cloned();
                    k.ends_with("exists") || exists(&saved.observed.facts) == exists(&now.facts)
                })
                .map(|k| {
                    let shown = |v: Option<&String>| match v {
                        None => "none".to_owned(),
                        Some(_) if saved.sensitive && k.ends_with("state") => "(sensitive)".to_owned(),
                        Some(v) if k.ends_with("sha256") => v.chars().take(12).collect(),
                        Some(v) => short(v),
                    };
                    format!("{k} {} -> {}", shown(saved.observed.facts.get(k)), shown(now.facts.get(k)))
                })
                .collect();
            stale.push(format!("{} changed since the plan ({})", saved.id, differences.join(", ")));
        }
        if stale.is_empty() {
            return Ok(());
        }
        Err(stale_error(stale))
    }

    /// Compares the plan made now (from the same desired state, on a host observed the same)
    /// with the saved one: anything the observation did not cover that changes what would be
    /// done makes the plan stale too.
    pub fn check_same(&self, now: &Plan) -> Result<()> {
        let saved = self.plan();
        let mut stale = Vec::new();
        for r in &saved.resources {
            match now.resources.iter().find(|n| n.index == r.index) {
                Some(n) if n.changes == r.changes => {}
                Some(_) => stale.push(format!("{} would now be changed differently than the plan says", r.id)),
                None => stale.push(format!("{} needs no change any more", r.id)),
            }
        }
        for n in &now.resources {
            if !saved.resources.iter().any(|r| r.index == n.index) {
                stale.push(format!("{} would now be changed, and the plan leaves it alone", n.id));
            }
        }
        if now.triggers != saved.triggers {
            stale.push("the triggers differ from the plan's".into());
        }
        if stale.is_empty() { Ok(()) } else { Err(stale_error(stale)) }
    }
}

/// The attribute a fact's key names: its last word.
fn attr_of(key: &str) -> &str {
    key.rsplit(' ').next().unwrap_or(key)
}

fn stale_error(stale: Vec<String>) -> Error {
    Error::PlanFile {
        message: format!("the plan is stale: {}; nothing was changed", stale.join("; ")),
        help: "run `converge plan PLAYBOOK --out FILE` again, review it, and apply that".into(),
    }
}

fn short(text: &str) -> String {
    const MAX: usize = 160;
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head}…")
}

/// `path` made absolute (and canonical when it exists), so that `--root ./img` and
/// `--root /abs/img` are the same root.
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_owned()))
}

/// The plan file is the operator's, not the converged host's (std::fs is right here): written
/// beside its place, mode 0600, then renamed over it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("it names no file"))?;
    let temp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_text_or_hex_and_reads_back_byte_for_byte() {
        let text = Content::from("port = 80\n");
        assert_eq!(serde_json::to_value(&text).unwrap(), serde_json::json!({"text": "port = 80\n"}));
        let binary = Content::from(vec![0u8, 0xff, 0x10]);
        let json = serde_json::to_value(&binary).unwrap();
        assert_eq!(json, serde_json::json!({"hex": "00ff10"}));
        assert_eq!(serde_json::from_value::<Content>(json).unwrap(), binary);
        assert!(serde_json::from_value::<Content>(serde_json::json!({"hex": "0g"})).is_err());
    }

    #[test]
    fn a_desired_state_reads_back_equal() {
        let file = AnyResource::File(crate::kinds::File {
            path: "/etc/app.conf".into(),
            state: crate::kinds::resource::State::Present,
            content: Some(Content::from(vec![1u8, 2, 200])),
            ownership: crate::kinds::resource::Ownership { owner: Some("www-data".into()), group: None },
            mode: Some(Mode(0o2750)),
            validate: Some(crate::kinds::validate::Validate { argv: vec!["visudo".into(), "-cf".into(), "%s".into()] }),
        });
        let json = serde_json::to_value(&file).unwrap();
        assert_eq!(json["kind"], "file");
        assert_eq!(json["mode"], "2750");
        assert_eq!(serde_json::from_value::<AnyResource>(json).unwrap(), file);
    }
}
