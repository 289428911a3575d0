//! Runs: every apply that changes something is recorded under the state directory
//! (`/var/lib/converge/runs/N/run.json`, inside the root for `--root`), with the previous state
//! of every path it changed: existence, type, mode, owner, and a file's content, stored once by
//! sha256 under `/var/lib/converge/objects/`. `converge rollback` puts those back;
//! `converge history` lists the runs. All through `Host`: these are paths of the converged host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::plan::{Counts, ResourcePlan};
use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};
use crate::kinds::AnyResource;
use crate::kinds::notify::Notify;
use crate::kinds::resource::ResourceId;

pub const RUNS: &str = "/var/lib/converge/runs";
pub const OBJECTS: &str = "/var/lib/converge/objects";
/// How many runs are kept by default (`--keep-runs`, CONVERGE_KEEP_RUNS).
pub const KEEP: usize = 10;
/// Beyond this many bytes of stored content, the oldest runs are dropped (the newest is kept).
pub const MAX_BYTES: u64 = 1 << 30;

/// What a path was before a run changed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Before {
    Absent,
    File { mode: Mode, uid: u32, gid: u32, sha256: String, len: u64 },
    Directory { mode: Mode, uid: u32, gid: u32 },
    Symlink { target: PathBuf, uid: u32, gid: u32 },
}

/// A path a run changed: what it was before, and what its change asked of units.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathBefore {
    pub path: PathBuf,
    pub before: Before,
    /// The jobs the change of the resource owning it asked for ([`crate::engine::plan::asks`]):
    /// putting it back asks them again (a record of an older converge has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Notify>,
}

/// One recorded run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub number: u64,
    /// Seconds since the epoch.
    pub time: u64,
    /// `apply` or `rollback`.
    pub kind: String,
    pub playbook: String,
    pub host: String,
    pub create: usize,
    pub update: usize,
    pub remove: usize,
    pub run: usize,
    /// The resources it changed, and how (a sensitive one's changes are not written). Read
    /// leniently: a record of an older converge (untyped changes) reads as none.
    #[serde(default, deserialize_with = "or_default")]
    pub applied: Vec<AppliedResource>,
    /// The state before the run of every path it changed, first capture per path.
    pub before: Vec<PathBefore>,
    /// What a rollback cannot put back, with why (read leniently, as `applied`).
    #[serde(default, deserialize_with = "or_default")]
    pub not_restored: Vec<(ResourceId, String)>,
    /// The runs this one rolled back.
    #[serde(default)]
    pub rollback_of: Vec<u64>,
    /// The run that rolled this one back.
    #[serde(default)]
    pub rolled_back_by: Option<u64>,
}

/// `T` as the record has it, or its default when it is in an older layout.
fn or_default<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned + Default>(
    deserializer: D,
) -> std::result::Result<T, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).unwrap_or_default())
}

/// A resource a run changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedResource {
    pub id: ResourceId,
    pub changes: Vec<crate::kinds::resource::Change>,
}

/// Collects the previous state of what an apply changes, as it goes.
#[derive(Debug, Default)]
pub struct Recorder {
    pub before: Vec<PathBefore>,
    pub not_restored: Vec<(ResourceId, String)>,
}

impl Recorder {
    /// Records what `resource`'s paths are now, before it is applied.
    pub fn capture(&mut self, host: &Host, id: &ResourceId, resource: &AnyResource, sensitive: bool) -> Result<()> {
        if let Some(reason) = resource.not_restored() {
            self.not_restored.push((id.clone(), reason.into()));
            return Ok(());
        }
        if sensitive {
            self.not_restored
                .push((id.clone(), "it is sensitive: its previous content is not kept in the run record".into()));
            return Ok(());
        }
        for path in resource.paths() {
            self.capture_missing_parents(host, id, &path)
                .and_then(|()| self.capture_path(host, id, &path))
                .map_err(|e| Error::resource_io(id, "cannot record its previous state", e))?;
        }
        Ok(())
    }

    /// Adds what `other` captured (of a resource applied later in the playbook's order); a path
    /// captured already keeps its first state.
    pub fn merge(&mut self, other: Recorder) {
        for before in other.before {
            if !self.before.iter().any(|b| b.path == before.path) {
                self.before.push(before);
            }
        }
        self.not_restored.extend(other.not_restored);
    }

    /// The missing directories above `path`, which a resource creating it makes too (a
    /// `directory:` makes its parents): recorded as absent, so that a rollback removes them.
    fn capture_missing_parents(&mut self, host: &Host, id: &ResourceId, path: &Path) -> std::io::Result<()> {
        let mut parent = path.parent();
        while let Some(dir) = parent
            && host.stat(dir)?.is_none()
        {
            self.capture_path(host, id, dir)?;
            parent = dir.parent();
        }
        Ok(())
    }

    /// Notes on each path captured what the change of its resource asked of units, so that a
    /// rollback asks it again: for every resource of `applied`, its paths and what lies inside.
    pub fn note_asks(&mut self, resolved: &crate::engine::resolve::Resolved, applied: &[ResourcePlan]) {
        for r in applied {
            let asks = crate::engine::plan::asks(resolved, r.index);
            let paths = resolved.entries[r.index].resource.paths();
            for b in self.before.iter_mut().filter(|b| paths.iter().any(|p| b.path.starts_with(p))) {
                b.notify.extend(asks.iter().filter(|n| !b.notify.contains(n)).cloned().collect::<Vec<_>>());
            }
        }
    }

    /// Records what the paths a rollback puts back are now (content stored), each with what
    /// its change asks of units, so that the rollback can itself be rolled back.
    pub fn capture_restored(&mut self, host: &Host, steps: &[Restore]) -> Result<()> {
        for step in steps {
            let id = ResourceId::path(crate::kinds::Kind::File, &step.path);
            self.capture_path(host, &id, &step.path)
                .map_err(|e| Error::resource_io(&id, "cannot record its state before the rollback", e))?;
            for b in self.before.iter_mut().filter(|b| b.path.starts_with(&step.path)) {
                b.notify.extend(step.notify.iter().filter(|n| !b.notify.contains(n)).cloned().collect::<Vec<_>>());
            }
        }
        Ok(())
    }

    fn capture_path(&mut self, host: &Host, id: &ResourceId, path: &Path) -> std::io::Result<()> {
        if self.before.iter().any(|b| b.path == path) {
            return Ok(());
        }
        // A file too big to read into memory is not kept: the rollback leaves it as it is.
        if let Some(stat) = host.stat(path)?
            && stat.kind == FileKind::File
            && stat.size > crate::host::MAX_READ
        {
            let reason = format!("{} was {} bytes, too big to keep a copy of", path.display(), stat.size);
            self.not_restored.push((id.clone(), reason));
            return Ok(());
        }
        let before = state_of(host, path, true)?;
        self.before.push(PathBefore { path: path.to_owned(), before: before.clone(), notify: Vec::new() });
        // A directory that is replaced or removed takes what is inside with it.
        if matches!(before, Before::Directory { .. }) {
            for (name, _) in host.read_dir(path)? {
                self.capture_path(host, id, &path.join(name))?;
            }
        }
        Ok(())
    }
}

/// What `path` is now; with `store`, a file's content is stored by sha256.
fn state_of(host: &Host, path: &Path, store: bool) -> std::io::Result<Before> {
    let Some(stat) = host.stat(path)? else { return Ok(Before::Absent) };
    Ok(match stat.kind {
        FileKind::File => {
            let (len, sha256) = if store {
                let bytes = host.read(path)?;
                let sha256 = crate::host::hex(&Sha256::digest(&bytes));
                store_object(host, &sha256, &bytes)?;
                (bytes.len() as u64, sha256)
            } else {
                host.digest(path)?
            };
            Before::File { mode: stat.mode, uid: stat.uid, gid: stat.gid, sha256, len }
        }
        FileKind::Directory => Before::Directory { mode: stat.mode, uid: stat.uid, gid: stat.gid },
        FileKind::Symlink => Before::Symlink { target: host.read_link(path)?, uid: stat.uid, gid: stat.gid },
        FileKind::Other => {
            return Err(std::io::Error::other(format!(
                "{} is a special file, which a run cannot record",
                path.display()
            )));
        }
    })
}

fn store_object(host: &Host, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new(OBJECTS);
    // Owned by whoever runs converge (root; under --root, possibly a user in their own tree).
    let (uid, gid) = host.system_owner();
    if host.stat(dir)?.is_none() {
        host.create_dirs(dir.parent().expect("a parent"))?;
        host.create_dir(dir, Mode(0o700), uid, gid)?;
    }
    let object = dir.join(sha256);
    if host.stat(&object)?.is_none() {
        host.write_atomic(&object, bytes, Mode(0o600), uid, gid)?;
    }
    Ok(())
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Usage { message: format!("{what}: {e}") }
}

/// The recorded runs, oldest first, and the records this converge cannot read (written by
/// another version of it, or damaged). Those are left as they are: never restored, never
/// dropped, and the content they refer to is kept.
#[derive(Debug, Default)]
pub struct Recorded {
    pub runs: Vec<Run>,
    pub unreadable: Vec<Unreadable>,
}

/// A run record that cannot be read, and why.
#[derive(Debug)]
pub struct Unreadable {
    pub number: u64,
    pub reason: String,
    /// Every `sha256` string in it, when it is JSON at all: the stored content it may refer to.
    pub objects: BTreeSet<String>,
}

impl Recorded {
    /// The number the next run gets: after every record, readable or not.
    pub fn next_number(&self) -> u64 {
        let readable = self.runs.iter().map(|r| r.number);
        readable.chain(self.unreadable.iter().map(|u| u.number)).max().map_or(1, |n| n + 1)
    }
}

/// Every recorded run, oldest first (see [`Recorded`]).
pub fn load_all(host: &Host) -> Result<Recorded> {
    let dir = Path::new(RUNS);
    let mut recorded = Recorded::default();
    if host.stat(dir).map_err(io("cannot read the runs"))?.is_none() {
        return Ok(recorded);
    }
    for (name, kind) in host.read_dir(dir).map_err(io("cannot read the runs"))? {
        let Some(number) = name.to_str().and_then(|n| n.parse::<u64>().ok()).filter(|_| kind == FileKind::Directory)
        else {
            continue;
        };
        let path = dir.join(&name).join("run.json");
        let bytes = match host.read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                let reason = format!("cannot read {}: {e}", host.shown(&path));
                recorded.unreadable.push(Unreadable { number, reason, objects: BTreeSet::new() });
                continue;
            }
        };
        match serde_json::from_slice::<Run>(&bytes) {
            Ok(run) => recorded.runs.push(run),
            Err(e) => {
                let mut objects = BTreeSet::new();
                if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    digests_in(&value, &mut objects);
                }
                let reason = format!("{} is not a run record this converge can read: {e}", host.shown(&path));
                recorded.unreadable.push(Unreadable { number, reason, objects });
            }
        }
    }
    recorded.runs.sort_by_key(|r| r.number);
    recorded.unreadable.sort_by_key(|u| u.number);
    Ok(recorded)
}

/// Collects every string under a `sha256` key, at any depth.
fn digests_in(value: &serde_json::Value, into: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match v {
                    serde_json::Value::String(text) if key == "sha256" => {
                        into.insert(text.clone());
                    }
                    _ => digests_in(v, into),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| digests_in(v, into)),
        _ => {}
    }
}

fn save(host: &Host, run: &Run) -> Result<()> {
    let dir = Path::new(RUNS).join(run.number.to_string());
    host.create_dirs(&dir).map_err(io("cannot record the run"))?;
    let text = serde_json::to_string_pretty(run).expect("a run serializes") + "\n";
    host.write_system_file(&dir.join("run.json"), text.as_bytes(), Mode(0o600)).map_err(io("cannot record the run"))
}

/// Records a run that applied `applied` (nothing is recorded for a run that changed nothing),
/// then drops the runs beyond `keep` and the content no run refers to any more. Returns its number.
pub fn record(
    host: &Host,
    kind: &str,
    playbook: &str,
    applied: &[ResourcePlan],
    recorder: Recorder,
    rollback_of: Vec<u64>,
    keep: usize,
) -> Result<Option<u64>> {
    if applied.is_empty() && recorder.before.is_empty() {
        return Ok(None);
    }
    let recorded = load_all(host)?;
    let number = recorded.next_number();
    let runs = recorded.runs;
    let counts = Counts::of(applied);
    let run = Run {
        number,
        time: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        kind: kind.into(),
        playbook: playbook.into(),
        host: host_name(host),
        create: counts.create,
        update: counts.update,
        remove: counts.remove,
        run: counts.run,
        applied: applied
            .iter()
            .map(|r| AppliedResource {
                id: r.id.clone(),
                changes: if r.sensitive { Vec::new() } else { r.changes.iter().map(digest_only).collect() },
            })
            .collect(),
        before: recorder.before,
        not_restored: recorder.not_restored,
        rollback_of: rollback_of.clone(),
        rolled_back_by: None,
    };
    save(host, &run)?;
    for mut old in runs.into_iter().filter(|r| rollback_of.contains(&r.number)) {
        old.rolled_back_by = Some(number);
        save(host, &old)?;
    }
    prune(host, keep)?;
    Ok(Some(number))
}

/// A change as the run record keeps it: content by size and sha256 only (the previous content
/// is in the objects; the new one is on the host).
fn digest_only(change: &crate::kinds::resource::Change) -> crate::kinds::resource::Change {
    use crate::kinds::resource::{Change, Content};
    let digest = |c: &Content| Content::Large { len: c.len(), sha256: c.sha256() };
    match change {
        Change::Content { file, from, to } => {
            Change::Content { file: file.clone(), from: from.as_ref().map(digest), to: digest(to) }
        }
        other => other.clone(),
    }
}

fn host_name(host: &Host) -> String {
    match host.root() {
        Some(root) => format!("--root {}", root.display()),
        // The kernel's name for the live host (no managed path: /proc is not part of what converge converges).
        None => std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default(),
    }
}

/// Keeps the newest `keep` runs (and fewer while their content is over [`MAX_BYTES`], never
/// fewer than one), then removes the stored content no kept run refers to.
pub fn prune(host: &Host, keep: usize) -> Result<()> {
    let Recorded { mut runs, unreadable } = load_all(host)?;
    let keep = keep.max(1);
    let sizes = |runs: &[Run]| -> u64 {
        let mut seen = BTreeMap::new();
        for b in runs.iter().flat_map(|r| &r.before) {
            if let Before::File { sha256, len, .. } = &b.before {
                seen.insert(sha256.clone(), *len);
            }
        }
        seen.values().sum()
    };
    while runs.len() > keep || (runs.len() > 1 && sizes(&runs) > MAX_BYTES) {
        let old = runs.remove(0);
        host.remove(&Path::new(RUNS).join(old.number.to_string())).map_err(io("cannot drop an old run"))?;
    }
    let used: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| &r.before)
        .filter_map(|b| match &b.before {
            Before::File { sha256, .. } => Some(sha256.as_str()),
            _ => None,
        })
        .chain(unreadable.iter().flat_map(|u| u.objects.iter().map(String::as_str)))
        .collect();
    if host.stat(Path::new(OBJECTS)).map_err(io("cannot read the stored content"))?.is_some() {
        for (name, _) in host.read_dir(Path::new(OBJECTS)).map_err(io("cannot read the stored content"))? {
            if !name.to_str().is_some_and(|n| used.contains(n)) {
                host.remove(&Path::new(OBJECTS).join(&name)).map_err(io("cannot drop stored content"))?;
            }
        }
    }
    Ok(())
}

/// One step of a rollback: a path put back as it was.
#[derive(Debug, Clone)]
pub struct Restore {
    pub path: PathBuf,
    pub now: Before,
    pub to: Before,
    /// What the change being undone asked of units, which putting it back asks again.
    pub notify: Vec<Notify>,
}

/// What rolling back `runs` (newest first) does: each path to its state before the oldest of
/// them, where it differs from now; creations and updates parents first, removals deepest first.
pub fn restore_plan(host: &Host, runs: &[&Run]) -> Result<Vec<Restore>> {
    let mut target: BTreeMap<PathBuf, (Before, Vec<Notify>)> = BTreeMap::new();
    for run in runs {
        for b in &run.before {
            let (to, notify) = target.entry(b.path.clone()).or_insert_with(|| (Before::Absent, Vec::new()));
            *to = b.before.clone();
            notify.extend(b.notify.iter().filter(|n| !notify.contains(n)).cloned().collect::<Vec<_>>());
        }
    }
    let mut steps = Vec::new();
    for (path, (to, notify)) in target {
        let now = state_of(host, &path, false).map_err(io(&format!("cannot read {}", path.display())))?;
        if !same(&now, &to) {
            steps.push(Restore { path, now, to, notify });
        }
    }
    let (mut removals, mut others): (Vec<Restore>, Vec<Restore>) =
        steps.into_iter().partition(|s| s.to == Before::Absent);
    removals.reverse();
    others.extend(removals);
    Ok(others)
}

fn same(now: &Before, to: &Before) -> bool {
    match (now, to) {
        (
            Before::File { sha256: a, mode: m, uid: u, gid: g, .. },
            Before::File { sha256: b, mode: n, uid: v, gid: h, .. },
        ) => a == b && m == n && u == v && g == h,
        _ => now == to,
    }
}

/// Puts one path back; what is there of another type is removed first.
pub fn restore(host: &Host, step: &Restore) -> Result<()> {
    let path = &step.path;
    let fail = io("cannot restore");
    let wrong_type = !matches!(
        (&step.now, &step.to),
        (Before::File { .. }, Before::File { .. }) | (Before::Directory { .. }, Before::Directory { .. })
    );
    if wrong_type && step.now != Before::Absent {
        host.remove(path).map_err(&fail)?;
    }
    match &step.to {
        Before::Absent => {}
        Before::File { mode, uid, gid, sha256, .. } => {
            let object = Path::new(OBJECTS).join(sha256);
            let bytes = host.read(&object).map_err(|e| Error::Usage {
                message: format!("cannot restore {}: its stored content {sha256} is missing ({e})", path.display()),
            })?;
            if crate::host::hex(&Sha256::digest(&bytes)) != *sha256 {
                return Err(Error::Usage {
                    message: format!("cannot restore {}: its stored content {sha256} is damaged", path.display()),
                });
            }
            host.write_atomic(path, &bytes, *mode, *uid, *gid).map_err(&fail)?;
        }
        Before::Directory { mode, uid, gid } => match step.now {
            Before::Directory { .. } => {
                host.set_attributes(path, Some(*uid), Some(*gid), Some(*mode)).map_err(&fail)?
            }
            _ => host.create_dir(path, *mode, *uid, *gid).map_err(&fail)?,
        },
        Before::Symlink { target, uid, gid } => host.symlink(target, path, *uid, *gid).map_err(&fail)?,
    }
    Ok(())
}

/// How a state reads in a rollback plan.
pub fn describe(state: &Before) -> String {
    match state {
        Before::Absent => "absent".into(),
        Before::File { mode, sha256, len, .. } => {
            format!("file {mode} sha256 {} ({len} bytes)", &sha256[..12.min(sha256.len())])
        }
        Before::Directory { mode, .. } => format!("directory {mode}"),
        Before::Symlink { target, .. } => format!("symlink -> {}", target.display()),
    }
}
