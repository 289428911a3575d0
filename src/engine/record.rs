//! Records: what the engine reports, as typed values. `--output json` prints each as one JSON
//! line (the stream is documented in docs/output.md), and the remote controller reads them back
//! from a target's engine into the same human renderer that prints local runs
//! (output/human.rs), so local and remote output cannot drift.
//!
//! The engine hands records to a [`Sink`] and knows no printer; output/ implements the sink.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use similar::TextDiff;

use crate::engine::plan::{Action, Counts, Plan, ResourcePlan};
use crate::engine::trigger::Trigger;
use crate::kinds::nginx_site::Finished;
use crate::kinds::resource::{Attr, Change, Content, ResourceId, Shown};

/// The version of the stream's format, in its first record. It changes when a record changes
/// in a way a reader of the previous format would misread (a field removed, renamed or given
/// another meaning); new records and new fields do not change it.
pub const FORMAT: u32 = 1;

/// Where the engine reports what it does: the printer, locally or for a remote host.
pub trait Sink {
    /// One record, as it happens.
    fn record(&mut self, record: Record);

    /// A step that may take seconds (apt-get, a systemd job) begins; it ends when the returned
    /// guard is dropped. Nothing by default.
    fn busy(&mut self, what: String) -> Box<dyn std::any::Any> {
        let _ = what;
        Box::new(())
    }
}

/// One record of the stream, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The first record: who wrote the stream, in which format.
    Stream(Stream),
    /// A resource that already matches the playbook (`-v` only).
    Unchanged(Unchanged),
    /// A resource a `when:` left out (`-v` only).
    Skipped(Skipped),
    /// A resource of the plan that differs from the playbook.
    Resource(ResourceRecord),
    /// A trigger of the plan.
    Trigger(PlannedTrigger),
    /// The plan's closing record, after its resources and triggers.
    Plan(PlanSummary),
    /// A site an interrupted run had left untested, now tested: kept or put back.
    Finished(Finished),
    /// A resource applied, as it happens.
    Applied(AppliedRecord),
    /// A trigger that ran.
    #[serde(rename = "trigger-ran")]
    TriggerRan(Trigger),
    /// A trigger that was not run, and why.
    #[serde(rename = "trigger-skipped")]
    TriggerSkipped(SkippedTrigger),
    /// The apply's closing record.
    Apply(ApplySummary),
    /// A warning: about the run (only `message`), or about the playbook (like an error).
    Warning(Diagnostic),
    /// An error: one record per mistake of a playbook.
    Error(Diagnostic),
    /// `validate`: the playbook is valid.
    Valid(Valid),
    /// `modules`: one per module.
    Module(ModuleRecord),
    /// `modules NAME`: the resources the module makes with the parameters given.
    ModuleResources(ModuleResourcesRecord),
    /// `plan --out FILE`: where the plan went; `show FILE`: what the saved plan was made from.
    SavedPlan(SavedPlanRecord),
    /// `rollback`: a path it puts back.
    Restore(Restore),
    /// `rollback`: what it cannot put back.
    NotRestored(NotRestored),
    /// `rollback`: its plan's closing record.
    RollbackPlan(RollbackPlan),
    /// `rollback`: done.
    Rollback(RollbackDone),
    /// `history`: one recorded run.
    Run(HistoryEntry),
    /// A remote host's line of stdout that is not a record.
    Output(HostOutput),
    /// converge was sent to a remote host.
    Upload(Upload),
    /// converge was on the remote host already.
    Cached(Cached),
    /// A remote host's end.
    Host(HostRecord),
}

/// `{"type":"stream","converge":"0.1.0","format":1}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// The version of converge that wrote the stream.
    pub converge: String,
    /// [`FORMAT`] of that converge.
    pub format: u32,
}

impl Stream {
    /// This converge's.
    pub fn this() -> Stream {
        Stream { converge: env!("CARGO_PKG_VERSION").to_owned(), format: FORMAT }
    }

    /// Whether a reader of this converge can read the stream; else why not, naming both.
    pub fn check(&self) -> Result<(), String> {
        let here = Stream::this();
        if self.format == here.format {
            return Ok(());
        }
        Err(format!(
            "the target's converge {} writes records in format {}, and this converge {} reads format {}: run the \
             same converge on both ends",
            self.converge, self.format, here.converge, here.format
        ))
    }
}

/// A resource that matches the playbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unchanged {
    /// The resource.
    pub id: ResourceId,
}

/// A resource left out by its `when:` expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The resource.
    pub id: String,
    /// The expression, as the playbook gives it.
    pub when: String,
}

/// A resource that differs, with its changes as people read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    /// The resource.
    pub id: ResourceId,
    /// What its changes amount to.
    pub action: Action,
    /// Its changes, as people read them (create and remove are the action's).
    pub changes: Vec<ChangeView>,
    /// The users and groups it needs that an earlier resource of the run creates.
    pub created_above: Vec<ResourceId>,
    /// Its values are hidden (the changes say which).
    pub sensitive: bool,
    /// In a plan: what it finds that a package installed above brings, or that it depends on
    /// what apt installs and why (docs/first-run.md); absent when nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreseen: Vec<String>,
}

/// The attribute name of a content change: `"content"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentAttr {
    /// `"content"`.
    Content,
}

/// The attribute name of a command's run: `"run"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunAttr {
    /// `"run"`.
    Run,
}

/// One change of a resource, rendered for people (by [`ChangeView::of`]); its JSON form is told
/// apart by its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChangeView {
    /// A sensitive command's guard: `{"attr":"run","reason":"(sensitive guard)","sensitive":true}`.
    HiddenRun {
        /// `"run"`.
        attr: RunAttr,
        /// [`SENSITIVE_GUARD`].
        reason: String,
        /// Always true.
        sensitive: bool,
    },
    /// A sensitive value: `{"attr":...,"sensitive":true}`.
    Hidden {
        /// The attribute (`content` for content).
        attr: String,
        /// Always true.
        sensitive: bool,
    },
    /// New content: digests, sizes, and a unified diff (without its `---`/`+++` header) when
    /// both sides are text.
    Content {
        /// `"content"`.
        attr: ContentAttr,
        /// The file, when the resource has several (a unit's drop-ins).
        file: Option<PathBuf>,
        /// The digest of the content there (None: there is none yet).
        from_sha256: Option<String>,
        /// The digest of the new content.
        to_sha256: String,
        /// A unified diff, when both sides are text.
        diff: Option<String>,
        /// The size in bytes of the content there.
        from_bytes: Option<u64>,
        /// The size in bytes of the new content.
        to_bytes: u64,
    },
    /// An entry inside a tree the resource copies (a `directory` with `source:`), made, removed
    /// or with an attribute changed: `{"file":"/srv/site/img","entry":"create"}`, or
    /// `{"file":"/srv/site/run.sh","entry":"update","attr":"mode","from":"0644","to":"0755"}`.
    Entry {
        /// Its path.
        file: PathBuf,
        /// What becomes of it.
        entry: Action,
        /// The attribute that changes (an update).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attr: Option<String>,
        /// Its value there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// The playbook's value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// An attribute: `{"attr":"mode","from":"0644","to":"0600"}` (`from` null when unset).
    Set {
        /// The attribute.
        attr: String,
        /// Its value there, if any.
        from: Option<String>,
        /// The playbook's value.
        to: String,
    },
    /// A command will run: `{"attr":"run","reason":...}`.
    Run {
        /// `"run"`.
        attr: RunAttr,
        /// Why (its guard's answer).
        reason: String,
    },
}

/// What a sensitive resource shows instead of a value.
pub const SENSITIVE_VALUE: &str = "(sensitive value changed)";
/// What a sensitive command shows instead of its guard's answer.
pub const SENSITIVE_GUARD: &str = "(sensitive guard)";

impl ChangeView {
    /// The one rendering of a change for people (None for create and remove, which the
    /// action says). A sensitive resource's values are hidden, except the attributes that name
    /// things (mode, owner, ...) when they hold no secret.
    pub fn of(change: &Change, sensitive: bool) -> Option<ChangeView> {
        let view = match change {
            Change::Create | Change::Remove => return None,
            Change::Set { .. } => {
                let Shown { attr, from, to } = change.shown()?;
                match sensitive && !shown_when_sensitive(attr, &to) {
                    true => ChangeView::Hidden { attr: attr.name().to_owned(), sensitive: true },
                    false => ChangeView::Set { attr: attr.name().to_owned(), from, to },
                }
            }
            Change::Run { .. } if sensitive => {
                ChangeView::HiddenRun { attr: RunAttr::Run, reason: SENSITIVE_GUARD.into(), sensitive: true }
            }
            Change::Run { reason } => ChangeView::Run { attr: RunAttr::Run, reason: reason.clone() },
            Change::Entry { file, of } => entry_view(file, of, sensitive)?,
            Change::Content { .. } if sensitive => ChangeView::Hidden { attr: "content".into(), sensitive: true },
            Change::Content { file, from, to } => {
                let old = match from {
                    None => Some(""),
                    Some(content) => content.as_text(),
                };
                let diff = match (old, to.as_text()) {
                    (Some(old), Some(new)) => {
                        Some(TextDiff::from_lines(old, new).unified_diff().context_radius(3).to_string())
                    }
                    _ => None,
                };
                ChangeView::Content {
                    attr: ContentAttr::Content,
                    file: file.clone(),
                    from_sha256: from.as_ref().map(Content::sha256),
                    to_sha256: to.sha256(),
                    diff,
                    from_bytes: from.as_ref().map(Content::len),
                    to_bytes: to.len(),
                }
            }
        };
        Some(view)
    }
}

/// The view of a change of the entry `file` of a tree: its attributes are shown as a resource's
/// are.
fn entry_view(file: &std::path::Path, of: &Change, sensitive: bool) -> Option<ChangeView> {
    let file = file.to_path_buf();
    let view = |entry, attr, from, to| ChangeView::Entry { file: file.clone(), entry, attr, from, to };
    match ChangeView::of(of, sensitive) {
        _ if *of == Change::Create => Some(view(Action::Create, None, None, None)),
        _ if *of == Change::Remove => Some(view(Action::Remove, None, None, None)),
        Some(ChangeView::Set { attr, from, to }) => Some(view(Action::Update, Some(attr), from, Some(to))),
        Some(ChangeView::Hidden { attr, .. }) => Some(view(Action::Update, Some(attr), None, None)),
        _ => None,
    }
}

/// A sensitive resource still shows the attributes that name things (mode, owner, ...) when
/// they hold no secret.
fn shown_when_sensitive(attr: Attr, to: &str) -> bool {
    crate::engine::resolve::NOT_SECRET.contains(&attr.name()) && crate::playbook::redact::apply(to) == to
}

impl ResourceRecord {
    /// A resource of the plan, or as applied.
    pub fn of(r: &ResourcePlan) -> ResourceRecord {
        ResourceRecord {
            id: r.id.clone(),
            action: r.action(),
            changes: r.changes.iter().filter_map(|c| ChangeView::of(c, r.sensitive)).collect(),
            created_above: r.created_above.clone(),
            sensitive: r.sensitive,
            foreseen: Vec::new(),
        }
    }
}

/// A trigger of the plan; `skipped` says why it will not run (an offline root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTrigger {
    /// The trigger.
    #[serde(flatten)]
    pub trigger: Trigger,
    /// Why it will not run, if it will not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The plan's closing record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Resources per action.
    #[serde(flatten)]
    pub counts: Counts,
    /// How many triggers.
    pub triggers: usize,
    /// Unit state could not be read (no system bus): the plan shows file changes only.
    pub units_unobserved: bool,
}

/// A resource applied: what was done, and whether that is what the plan said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedRecord {
    /// What was done.
    #[serde(flatten)]
    pub resource: ResourceRecord,
    /// False when it changed since the plan (an earlier resource, or someone else).
    pub as_planned: bool,
    /// When its apply started, in milliseconds since the apply began (0 from an older converge).
    #[serde(default)]
    pub started_ms: u64,
    /// How long it took (observed again, then applied), in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
}

/// A trigger that was not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedTrigger {
    /// The trigger.
    #[serde(flatten)]
    pub trigger: Trigger,
    /// Why it did not run.
    pub why: String,
}

/// The apply's closing record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplySummary {
    /// Resources applied, per action.
    #[serde(flatten)]
    pub counts: Counts,
    /// How many triggers ran.
    pub triggers: usize,
    /// How many triggers were not run.
    pub triggers_skipped: usize,
    /// The slowest resources applied (three at most), slowest first.
    #[serde(default)]
    pub slowest: Vec<Timing>,
}

/// How long a resource took to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    pub id: ResourceId,
    pub duration_ms: u64,
}

/// An error or warning. A run's warning has only `message`; a mistake (of the playbook, or
/// one that ends the run) has `kind` and where it points too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// What went wrong, with its causes.
    pub message: String,
    /// What kind of mistake, and where (None: a warning about the run).
    #[serde(flatten)]
    pub at: Option<Located>,
    /// The resource it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the source span's label says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Diagnostic {
    /// A warning about the run: only a message.
    pub fn message(message: impl Into<String>) -> Diagnostic {
        Diagnostic { message: message.into(), at: None, id: None, label: None }
    }
}

/// What a mistake is, and where it points (`line` and `column` 1-based); null where unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Located {
    /// What kind of mistake.
    pub kind: DiagnosticKind,
    /// The file it points into.
    pub file: Option<String>,
    /// The line there, 1-based.
    pub line: Option<usize>,
    /// The column there, 1-based.
    pub column: Option<usize>,
    /// What to do about it.
    pub help: Option<String>,
}

/// What kind of mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticKind {
    /// In the playbook, a vars file or a template.
    Playbook,
    /// A file that could not be read.
    Read,
    /// A file converge writes for itself that could not be written.
    Write,
    /// The run lock could not be opened or taken.
    Lock,
    /// A resource failed.
    Resource,
    /// A saved plan's resource changed since the plan.
    Drift,
    /// Another run holds the lock.
    Locked,
    /// systemd refused or failed.
    Systemd,
    /// The command line.
    Usage,
    /// A saved plan's file.
    PlanFile,
    /// A signal stopped the run.
    Stopped,
}

/// `validate`'s record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Valid {
    /// The playbook's name.
    pub name: String,
    /// How many resources it has.
    pub resources: usize,
}

/// A module a playbook can use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// Its name.
    pub name: String,
    /// `shipped`, or its file.
    pub origin: String,
    /// What it does.
    pub description: String,
    /// Its parameters.
    pub params: Vec<ModuleParam>,
}

/// A module expanded: its parameters' values and the resources it makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleResourcesRecord {
    /// Its name.
    pub name: String,
    /// `shipped`, or its file.
    pub origin: String,
    /// Each parameter's value, and whether it is the module's default.
    pub params: Vec<ParamValue>,
    /// Its resources, each with its id, as a playbook writes it (every template rendered).
    pub resources: Vec<ModuleResource>,
    /// The kinds of the resources their `when:` left out, with the expression.
    pub left_out: Vec<LeftOut>,
}

/// A parameter's value in an expanded module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamValue {
    /// Its name.
    pub name: String,
    /// Its value, with its JSON type.
    pub value: serde_json::Value,
    /// The module's default (not given).
    pub default: bool,
}

/// A resource of an expanded module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleResource {
    /// Its id (`unit:app.service`).
    pub id: String,
    /// Its entry, every template rendered.
    pub resource: serde_json::Value,
}

/// A resource of a module that its `when:` left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftOut {
    /// Its kind's name.
    pub kind: String,
    /// The `when:` expression, as written.
    pub when: String,
}

/// A parameter of a module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleParam {
    /// Its name.
    pub name: String,
    /// Its type's name (`string`, `int`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its default, with its JSON type; None: required.
    pub default: Option<serde_json::Value>,
    /// What it is for.
    pub description: String,
}

/// A saved plan: where `plan --out` wrote it, or (for `show`) what it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SavedPlanRecord {
    /// `show FILE`: the plan's origin.
    Header {
        /// The playbook it was made from.
        playbook: String,
        /// The playbook's name.
        name: String,
        /// When, in seconds since the epoch.
        created: u64,
        /// The converge that made it.
        converge_version: String,
        /// `--root` when it was made.
        root: Option<String>,
        /// The files it read, with their digests.
        files: Vec<crate::engine::saved::FileDigest>,
    },
    /// `plan --out FILE`: the file.
    Written {
        /// Where the plan went.
        file: PathBuf,
    },
}

/// A path `rollback` puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    /// The path.
    pub path: PathBuf,
    /// What it is now.
    pub from: String,
    /// What it becomes.
    pub to: String,
}

/// What `rollback` cannot put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotRestored {
    /// The resource.
    pub id: ResourceId,
    /// Why.
    pub reason: String,
}

/// The closing record of `rollback`'s plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackPlan {
    /// The runs it undoes, newest first.
    pub runs: Vec<u64>,
    /// How many paths it puts back.
    pub restore: usize,
    /// How many resources it cannot put back.
    pub not_restored: usize,
}

/// `rollback` done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackDone {
    /// How many paths were put back.
    pub restored: usize,
}

/// A run `history` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HistoryEntry {
    /// A run record this converge cannot read (another version's, or damaged).
    Unreadable {
        /// Its number.
        number: u64,
        /// Why it cannot be read.
        unreadable: String,
    },
    /// A run.
    Recorded(RunRecord),
}

/// A recorded run, for `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Its number.
    pub number: u64,
    /// When, in seconds since the epoch.
    pub time: u64,
    /// `apply` or `rollback`.
    pub kind: String,
    /// The playbook, or what a rollback undid.
    pub playbook: String,
    /// The machine's name.
    pub host: String,
    /// Resources created.
    pub create: usize,
    /// Resources updated.
    pub update: usize,
    /// Resources removed.
    pub remove: usize,
    /// Commands run.
    pub run: usize,
    /// How many paths it recorded the state of.
    pub paths: usize,
    /// The run that rolled it back.
    pub rolled_back_by: Option<u64>,
    /// The runs it rolled back.
    pub rollback_of: Vec<u64>,
}

/// A remote host's line that is not a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostOutput {
    /// The host.
    pub host: String,
    /// The line.
    pub line: String,
}

/// converge sent to a remote host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The host.
    pub host: String,
    /// Where it went.
    pub path: String,
    /// How many bytes.
    pub bytes: u64,
    /// The cached copy that was there and not trusted.
    pub untrusted: Option<String>,
}

/// converge found on a remote host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    /// The host.
    pub host: String,
    /// Where.
    pub path: String,
}

/// How a remote host ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host.
    pub host: String,
    /// Where it stands.
    pub status: HostStatus,
    /// Why it failed.
    pub reason: Option<String>,
    /// What its engine said on stderr, when it failed.
    pub stderr: Option<String>,
    /// Resources that matched; None when its engine did not get as far as its plan.
    pub ok: Option<usize>,
    /// Resources changed (apply) or to change (plan).
    pub changed: usize,
    /// 1 when it failed.
    pub failed: usize,
    /// Triggers run (apply) or planned (plan).
    pub triggers: usize,
    /// How long it took.
    pub seconds: f64,
}

/// Where a remote host stands at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// It matches the playbook, and nothing was changed.
    Converged,
    /// apply changed it.
    Changed,
    /// plan: changes are pending.
    Pending,
    /// It failed.
    Failed,
    /// Ctrl-C.
    Interrupted,
}

/// The records of a plan, in order: (with `verbose`) the unchanged and skipped resources, the
/// resources that differ, the triggers, and the closing `plan` record.
pub fn plan_records(plan: &Plan, verbose: bool) -> Vec<Record> {
    let mut records = Vec::new();
    if verbose {
        records.extend(plan.unchanged.iter().map(|id| Record::Unchanged(Unchanged { id: id.clone() })));
        records.extend(
            plan.skipped.iter().map(|(id, when)| Record::Skipped(Skipped { id: id.clone(), when: when.clone() })),
        );
    }
    records.extend(plan.resources.iter().map(|r| {
        let foreseen = plan.foresight.get(&r.id).map(|f| f.iter().map(ToString::to_string).collect());
        Record::Resource(ResourceRecord { foreseen: foreseen.unwrap_or_default(), ..ResourceRecord::of(r) })
    }));
    records.extend(plan.triggers.iter().map(|t| {
        Record::Trigger(PlannedTrigger { trigger: t.clone(), skipped: plan.triggers_skipped.map(str::to_owned) })
    }));
    records.push(Record::Plan(PlanSummary {
        counts: plan.counts(),
        triggers: plan.triggers.len(),
        units_unobserved: plan.units_unobserved,
    }));
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::trigger::{Observed, Request, UnitFacts, decide};
    use crate::host::systemd::JobAction;
    use crate::kinds::unit::OnChange;

    #[test]
    fn tree_entries_read_back_as_they_were_written() {
        use crate::host::mode::Mode;
        let changes = [
            Change::entry("/srv/site/img", Change::Create),
            Change::entry("/srv/site/old", Change::Remove),
            Change::entry("/srv/site/a", Change::set(Attr::Mode, Some(Mode(0o600)), Mode(0o644))),
            Change::set(Attr::Mode, Some(Mode(0o600)), Mode(0o644)),
        ];
        let views: Vec<ChangeView> = changes.iter().filter_map(|c| ChangeView::of(c, false)).collect();
        let json = serde_json::to_string(&views).unwrap();
        assert!(json.starts_with(r#"[{"file":"/srv/site/img","entry":"create"}"#), "{json}");
        assert_eq!(serde_json::from_str::<Vec<ChangeView>>(&json).unwrap(), views, "{json}");
        let sensitive = ChangeView::of(&changes[2], true).unwrap();
        assert!(matches!(sensitive, ChangeView::Entry { entry: Action::Update, .. }), "{sensitive:?}");
    }

    fn unit(name: &str, files_changed: bool) -> UnitFacts {
        UnitFacts {
            name: name.into(),
            managed: true,
            files_changed,
            observed: Some(Observed { active: true, can_reload: true, ..Observed::default() }),
            ..UnitFacts::default()
        }
    }

    /// The JSON lines of a plan with `triggers` (one changed file set them off), then of the
    /// apply that runs them: what a program reads.
    fn stream(units: &[UnitFacts], requests: &[Request]) -> String {
        let triggers = decide(units, requests);
        let changed = ResourcePlan {
            index: 0,
            id: ResourceId::new(crate::kinds::Kind::File, "/etc/app.conf"),
            changes: vec![Change::Content { file: None, from: Some("a\n".into()), to: "b\n".into() }],
            sensitive: false,
            created_above: Vec::new(),
        };
        let plan = Plan { resources: vec![changed.clone()], triggers: triggers.clone(), ..Plan::default() };
        let mut records = plan_records(&plan, false);
        records.push(Record::Applied(AppliedRecord {
            resource: ResourceRecord::of(&changed),
            as_planned: true,
            started_ms: 0,
            duration_ms: 3,
        }));
        records.extend(triggers.into_iter().map(Record::TriggerRan));
        let json: Vec<String> = records.iter().map(|r| serde_json::to_value(r).unwrap().to_string()).collect();
        // What is written is what is read back.
        for (line, record) in json.iter().zip(&records) {
            assert_eq!(&serde_json::from_str::<Record>(line).unwrap(), record, "{line}");
        }
        json.join("\n")
    }

    fn request(action: JobAction, unit: &str) -> Request {
        Request { action, unit: unit.into(), reason: "file:/etc/app.conf changed".into() }
    }

    #[test]
    fn daemon_reload_and_restart() {
        insta::assert_snapshot!(stream(&[unit("app.service", true)], &[]));
    }

    #[test]
    fn reload() {
        let nginx = UnitFacts { on_change: OnChange::Reload, ..unit("nginx.service", false) };
        insta::assert_snapshot!(stream(&[nginx], &[request(JobAction::Reload, "nginx.service")]));
    }

    #[test]
    fn start_and_stop() {
        let mut started = UnitFacts { want_active: Some(true), ..unit("worker.service", true) };
        started.observed.as_mut().unwrap().active = false;
        let stopped = UnitFacts { want_active: Some(false), ..unit("old.service", false) };
        insta::assert_snapshot!(stream(&[started, stopped], &[request(JobAction::Stop, "old.service")]));
    }

    #[test]
    fn socket_rules() {
        // Rule 4: the service of a socket pair changed: stop it, restart the socket; and a
        // restart of a socket-activated service whose socket lies in its RuntimeDirectory
        // restarts the socket too.
        let mut socket = unit("gunicorn.socket", false);
        socket.observed.as_mut().unwrap().triggers = vec!["gunicorn.service".into()];
        socket.listen_paths = vec!["/run/gunicorn/socket".into()];
        let mut service = unit("gunicorn.service", true);
        service.runtime_dirs = vec!["/run/gunicorn".into()];
        let pair = stream(&[socket.clone(), service.clone()], &[]);
        service.files_changed = false;
        let runtime_dir = stream(&[socket, service], &[request(JobAction::Restart, "gunicorn.service")]);
        insta::assert_snapshot!(format!(
            "# the service changed\n{pair}\n# restarted, its socket in its RuntimeDirectory\n{runtime_dir}"
        ));
    }

    #[test]
    fn a_different_format_is_refused_naming_both_versions() {
        assert_eq!(Stream::this().check(), Ok(()));
        let other = Stream { converge: "9.0.0".into(), format: FORMAT + 1 };
        let why = other.check().unwrap_err();
        assert!(why.contains("9.0.0") && why.contains(env!("CARGO_PKG_VERSION")), "{why}");
        assert!(why.contains(&format!("format {}", FORMAT + 1)) && why.contains(&format!("format {FORMAT}")), "{why}");
    }
}
