//! The human renderer: records (engine/record.rs) to lines, Terraform's vocabulary. Local runs
//! and remote hosts' records both pass here, so they read the same.

use crate::engine::plan::{Action, Counts};
use crate::engine::record::{
    AppliedRecord, ApplySummary, ChangeView, PlanSummary, PlannedTrigger, Record, ResourceRecord, SENSITIVE_VALUE,
};
use crate::kinds::Kind;
use crate::kinds::resource::{Attr, ResourceId};

use super::{BOLD, CYAN, GREEN, RED, YELLOW, plural};

/// Renders records as they come; a plan's records wait for its closing record, which the
/// whole plan is rendered from.
#[derive(Debug, Default)]
pub struct Human {
    /// ANSI colors.
    pub color: bool,
    /// -1 quiet, 0 normal, 1+ verbose.
    pub verbosity: i8,
    /// The plan's records so far.
    block: Vec<Record>,
}

impl Human {
    /// A renderer with these settings.
    pub fn new(color: bool, verbosity: i8) -> Human {
        Human { color, verbosity, block: Vec::new() }
    }

    /// The lines `record` prints now (none for a record that only the printer or the stream
    /// reader handles: stream, warning, error).
    pub fn feed(&mut self, record: Record) -> Vec<String> {
        let mut lines = Vec::new();
        match record {
            Record::Unchanged(_) | Record::Skipped(_) | Record::Resource(_) | Record::Trigger(_) => {
                self.block.push(record)
            }
            Record::Plan(summary) => {
                let block = std::mem::take(&mut self.block);
                self.plan(&block, &summary, &mut lines);
            }
            Record::Applied(applied) if self.verbosity >= 0 => self.applied(&applied, &mut lines),
            Record::TriggerRan(trigger) if self.verbosity >= 0 => lines.push(format!("{trigger}: done")),
            Record::TriggerSkipped(t) if self.verbosity >= 0 => {
                lines.push(format!("{}: skipped ({})", t.trigger, t.why))
            }
            Record::Apply(summary) => lines.extend(self.apply_done(&summary)),
            Record::Finished(f) => lines.extend(super::finished_text(&f).lines().map(str::to_owned)),
            Record::Applied(_)
            | Record::TriggerRan(_)
            | Record::TriggerSkipped(_)
            | Record::Stream(_)
            | Record::Warning(_)
            | Record::Error(_) => {}
            // The commands that print these format their own human lines.
            Record::Valid(_)
            | Record::Module(_)
            | Record::ModuleResources(_)
            | Record::SavedPlan(_)
            | Record::Restore(_)
            | Record::NotRestored(_)
            | Record::RollbackPlan(_)
            | Record::Rollback(_)
            | Record::Run(_)
            | Record::Output(_)
            | Record::Upload(_)
            | Record::Cached(_)
            | Record::Host(_) => {}
        }
        lines
    }

    fn paint(&self, color: &str, text: &str) -> String {
        super::paint(self.color, color, text)
    }

    /// The plan: each differing resource with its changes, then the triggers, then a summary.
    fn plan(&self, block: &[Record], summary: &PlanSummary, lines: &mut Vec<String>) {
        if summary.units_unobserved {
            lines.push(
                "Unit state could not be read: there is no system bus here. The plan shows file changes only.".into(),
            );
        }
        let mut resources = Vec::new();
        let mut triggers = Vec::new();
        for record in block {
            match record {
                Record::Unchanged(u) if self.verbosity >= 1 => lines.push(format!("  = {} (no change)", u.id)),
                Record::Skipped(s) if self.verbosity >= 1 => {
                    lines.push(format!("  ! {} (skipped: when {} is false)", s.id, s.when))
                }
                Record::Resource(r) => resources.push(r),
                Record::Trigger(t) => triggers.push(t),
                _ => {}
            }
        }
        if resources.is_empty() && triggers.is_empty() {
            lines.push("No changes. The host matches the playbook.".into());
            return;
        }
        if self.verbosity >= 0 {
            lines.push("converge will make these changes:".into());
            lines.push(String::new());
            for r in resources {
                self.resource(r, lines);
            }
            self.triggers(&triggers, lines);
        }
        let skipped = if triggers.iter().any(|t| t.skipped.is_some()) { " (skipped)" } else { "" };
        let text = format!("Plan: {}; {}{skipped}.", counts(summary.counts), plural(summary.triggers, "trigger"));
        lines.push(self.paint(BOLD, &text));
    }

    fn resource(&self, r: &ResourceRecord, lines: &mut Vec<String>) {
        let (symbol, color) = match r.action {
            Action::Create => ("+", GREEN),
            Action::Update => ("~", YELLOW),
            Action::Remove => ("-", RED),
            Action::Run => (">", CYAN),
        };
        let head = match r.changes.iter().find_map(|c| match c {
            ChangeView::Run { reason, .. } | ChangeView::HiddenRun { reason, .. } => Some(reason),
            _ => None,
        }) {
            Some(reason) => format!("  {symbol} {} (runs: {reason})", r.id),
            None => format!("  {symbol} {} ({})", r.id, r.action.verb()),
        };
        lines.push(self.paint(color, &head));
        // What a package installed above brings that it finds, or why that is not known.
        lines.extend(r.foreseen.iter().map(|note| format!("      ({note})")));
        // Attributes first, then the content's diff.
        let (content, attributes): (Vec<&ChangeView>, Vec<&ChangeView>) = r.changes.iter().partition(|c| is_content(c));
        for change in attributes.into_iter().chain(content) {
            match change {
                ChangeView::Hidden { attr, .. } => lines.push(format!("      {attr}: {SENSITIVE_VALUE}")),
                ChangeView::Set { attr, from, to } => {
                    let kind = if attr == Attr::Owner.name() { Kind::User } else { Kind::Group };
                    let above = r.created_above.contains(&ResourceId::new(kind, to.as_str()));
                    let note =
                        if above && matches!(attr.as_str(), "owner" | "group") { " (created above)" } else { "" };
                    // A user's groups: which are added and which removed, not only both lists.
                    let note = match (attr.as_str(), from.as_deref()) {
                        ("groups", Some(from)) => groups_note(from, to),
                        _ => note.to_owned(),
                    };
                    match from.as_deref().filter(|f| !f.is_empty()) {
                        Some(from) => lines.push(format!("      {attr}: {from} -> {to}{note}")),
                        None => lines.push(format!("      {attr}: {to}{note}")),
                    }
                }
                ChangeView::Content { file, from_sha256, to_sha256, diff, from_bytes, to_bytes, .. } => {
                    let own = r.id.name.as_str();
                    let file = file.as_ref().map(|f| f.display().to_string());
                    let path = file.as_deref().unwrap_or(own);
                    match diff {
                        Some(diff) => self.diff(path, from_sha256.is_some(), diff, lines),
                        None => {
                            let from = match (from_sha256, from_bytes) {
                                (Some(sha), Some(len)) => format!("sha256:{sha} ({len} bytes)"),
                                (Some(sha), None) => format!("sha256:{sha}"),
                                (None, _) => "nothing".into(),
                            };
                            let of = file.as_deref().map(|f| format!(" of {f}")).unwrap_or_default();
                            lines.push(format!("      content{of}: {from} -> sha256:{to_sha256} ({to_bytes} bytes)"));
                        }
                    }
                }
                ChangeView::Entry { file, entry, attr, from, to } => {
                    lines.push(self.entry(file, *entry, attr, from, to))
                }
                ChangeView::Run { .. } | ChangeView::HiddenRun { .. } => {}
            }
        }
        lines.push(String::new());
    }

    /// An entry of a copied tree: `+ path` made, `- path` removed, `~ path: mode: 0644 -> 0755`.
    fn entry(
        &self,
        file: &std::path::Path,
        entry: Action,
        attr: &Option<String>,
        from: &Option<String>,
        to: &Option<String>,
    ) -> String {
        let file = file.display();
        match (entry, attr) {
            (Action::Create, _) => self.paint(GREEN, &format!("      + {file}")),
            (Action::Remove, _) => self.paint(RED, &format!("      - {file}")),
            (_, attr) => {
                let attr = attr.as_deref().unwrap_or_default();
                let value = match (from, to) {
                    (Some(from), Some(to)) => format!("{from} -> {to}"),
                    (None, Some(to)) => to.clone(),
                    (_, None) => SENSITIVE_VALUE.to_owned(),
                };
                self.paint(YELLOW, &format!("      ~ {file}: {attr}: {value}"))
            }
        }
    }

    /// A unified diff, headed by the file's name (`/dev/null` for a file that is not there yet);
    /// nothing when it has no hunk.
    fn diff(&self, path: &str, existed: bool, diff: &str, lines: &mut Vec<String>) {
        if diff.is_empty() {
            return;
        }
        let from_name = if existed { path } else { "/dev/null" };
        let header = [format!("--- {from_name}"), format!("+++ {path}")];
        for l in header.iter().map(String::as_str).chain(diff.lines()) {
            let color = match l.as_bytes().first() {
                Some(b'+') if !l.starts_with("+++") => GREEN,
                Some(b'-') if !l.starts_with("---") => RED,
                Some(b'@') => CYAN,
                _ => {
                    lines.push(format!("      {l}"));
                    continue;
                }
            };
            lines.push(self.paint(color, &format!("      {l}")));
        }
    }

    /// The planned triggers; a skipped one marked as apply will report it.
    fn triggers(&self, triggers: &[&PlannedTrigger], lines: &mut Vec<String>) {
        if triggers.is_empty() {
            return;
        }
        lines.push("Triggers, in order:".into());
        let width = triggers.iter().map(|t| t.trigger.to_string().len()).max().unwrap_or(0);
        for t in triggers {
            let skipped = t.skipped.as_ref().map(|why| format!(": skipped ({why})")).unwrap_or_default();
            lines.push(format!("  {:width$}   ({}){skipped}", t.trigger.to_string(), t.trigger.reason));
        }
        lines.push(String::new());
    }

    /// One resource applied, as it happens.
    fn applied(&self, applied: &AppliedRecord, lines: &mut Vec<String>) {
        let r = &applied.resource;
        let done = match r.action {
            Action::Create => "created",
            Action::Update => "updated",
            Action::Remove => "removed",
            Action::Run => "ran",
        };
        let took = match self.verbosity {
            1.. => format!(" in {}", duration(applied.duration_ms)),
            _ => String::new(),
        };
        if applied.as_planned {
            lines.push(format!("{}: {done}{took}", r.id));
        } else {
            // An earlier resource of this run (or someone else) changed it since the plan.
            lines.push(format!("{}: {done}{took} (it changed since the plan:)", r.id));
            self.resource(r, lines);
        }
    }

    /// The closing lines of an apply: its counts, and its slowest resources.
    fn apply_done(&self, summary: &ApplySummary) -> Vec<String> {
        let mut text =
            format!("Apply complete: {}; {} run", done_counts(summary.counts), plural(summary.triggers, "trigger"));
        if summary.triggers_skipped > 0 {
            text += &format!(", {} skipped", summary.triggers_skipped);
        }
        text.push('.');
        let mut lines = vec![self.paint(BOLD, &text)];
        if !summary.slowest.is_empty() && self.verbosity >= 0 {
            let slowest: Vec<String> =
                summary.slowest.iter().map(|t| format!("{} {}", t.id, duration(t.duration_ms))).collect();
            lines.push(format!("Slowest: {}.", slowest.join(", ")));
        }
        lines
    }
}

/// A duration for people: `120 ms`, `3.2 s`.
fn duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        _ => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// Whether a change shows as content (after the attributes).
fn is_content(change: &ChangeView) -> bool {
    match change {
        ChangeView::Content { .. } => true,
        ChangeView::Hidden { attr, .. } => attr == "content",
        _ => false,
    }
}

/// " (+added, -removed)" between two comma-separated lists of groups.
fn groups_note(from: &str, to: &str) -> String {
    let list = |s: &str| s.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    let (from, to) = (list(from), list(to));
    let added = to.iter().filter(|g| !from.contains(g)).map(|g| format!("+{g}"));
    let removed = from.iter().filter(|g| !to.contains(g)).map(|g| format!("-{g}"));
    let words: Vec<String> = added.chain(removed).collect();
    if words.is_empty() { String::new() } else { format!(" ({})", words.join(", ")) }
}

fn counts(c: Counts) -> String {
    let mut text = format!("{} to create, {} to update, {} to remove", c.create, c.update, c.remove);
    if c.run > 0 {
        text += &format!(", {} to run", c.run);
    }
    text
}

fn done_counts(c: Counts) -> String {
    let mut text = format!("{} created, {} updated, {} removed", c.create, c.update, c.remove);
    if c.run > 0 {
        text += &format!(", {} ran", c.run);
    }
    text
}
