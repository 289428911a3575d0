//! The printer: the only code that writes to the terminal. Human output speaks Terraform's
//! vocabulary (`+ create`, `~ update`, `- remove`, a unified diff under each content change, a
//! closing "Plan: ..." line); `--output json` prints one JSON record per line instead. Output is
//! deterministic: no timestamps, no PIDs, in playbook order.

use std::io::{IsTerminal, Write};
use std::path::Path;

use serde_json::json;
use similar::TextDiff;

use crate::engine::apply::Applied;
use crate::engine::plan::{Action, Counts, Plan, ResourcePlan};
use crate::engine::trigger::Trigger;
use crate::kinds::resource::{Change, Content, ResourceId};

// Remote runs: records that other hosts' engines sent back, prefixed by host.
pub mod progress;
mod remote;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

pub struct Printer {
    format: Format,
    color: bool,
    /// -1 quiet, 0 normal, 1+ verbose.
    verbosity: i8,
    out: Box<dyn Write>,
}

const RESET: &str = "\x1b[0m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";

impl Printer {
    pub fn new(format: Format, no_color: bool, verbosity: i8) -> Printer {
        let color =
            !no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal();
        Printer { format, color, verbosity, out: Box::new(std::io::stdout()) }
    }

    fn paint(&self, color: &str, text: &str) -> String {
        if self.color { format!("{color}{text}{RESET}") } else { text.to_owned() }
    }

    /// Every human line passes here: secrets are replaced, and control characters from the
    /// host or the playbook are escaped (the printer's own colors aside).
    fn line(&mut self, text: impl AsRef<str>) {
        let text = crate::playbook::redact::apply(text.as_ref());
        let text = terminal_safe(&text, self.color);
        let out = &mut self.out;
        crate::output::progress::suspend(|| writeln!(out, "{text}")).ok();
    }

    /// Every JSON record passes here; serde_json escapes control characters itself.
    fn json(&mut self, value: serde_json::Value) {
        let _ = writeln!(self.out, "{}", crate::playbook::redact::apply(&value.to_string()));
    }

    /// The plan: each differing resource with its changes, then the triggers, then a summary.
    pub fn plan(&mut self, plan: &Plan) {
        if self.format == Format::Json {
            if self.verbosity >= 1 {
                for (id, when) in &plan.skipped {
                    self.json(json!({"type": "skipped", "id": id, "when": when}));
                }
            }
            for r in &plan.resources {
                let record = resource_json(r);
                self.json(record);
            }
            for t in &plan.triggers {
                let mut record = trigger_json(t);
                if let Some(why) = plan.triggers_skipped {
                    record["skipped"] = json!(why);
                }
                self.json(record);
            }
            let c = plan.counts();
            self.json(json!({"type": "plan", "create": c.create, "update": c.update, "remove": c.remove, "run": c.run, "triggers": plan.triggers.len(), "units_unobserved": plan.units_unobserved}));
            return;
        }
        if plan.units_unobserved && self.format == Format::Human {
            self.line("Unit state could not be read: there is no system bus here. The plan shows file changes only.");
        }
        if self.verbosity >= 1 {
            for id in &plan.unchanged {
                self.line(format!("  = {id} (no change)"));
            }
            for (id, when) in &plan.skipped {
                self.line(format!("  ! {id} (skipped: when {when} is false)"));
            }
        }
        if plan.is_empty() {
            self.line("No changes. The host matches the playbook.");
            return;
        }
        if self.verbosity >= 0 {
            self.line("converge will make these changes:");
            self.line("");
            for r in &plan.resources {
                self.resource(r);
            }
            self.triggers(&plan.triggers, plan.triggers_skipped);
        }
        let skipped = if plan.triggers_skipped.is_some() && !plan.triggers.is_empty() { " (skipped)" } else { "" };
        let summary = format!("Plan: {}; {}{skipped}.", counts(plan.counts()), plural(plan.triggers.len(), "trigger"));
        self.line(self.paint(BOLD, &summary));
    }

    fn resource(&mut self, r: &ResourcePlan) {
        let action = r.action();
        let (symbol, color) = match action {
            Action::Create => ("+", GREEN),
            Action::Update => ("~", YELLOW),
            Action::Remove => ("-", RED),
            Action::Run => (">", CYAN),
        };
        let head = match r.changes.iter().find_map(|c| match c {
            Change::Run { reason } => Some(reason),
            _ => None,
        }) {
            Some(_) if r.sensitive => format!("  {symbol} {} (runs: {SENSITIVE_GUARD})", r.id),
            Some(reason) => format!("  {symbol} {} (runs: {reason})", r.id),
            None => format!("  {symbol} {} ({})", r.id, action.verb()),
        };
        self.line(self.paint(color, &head));
        // Attributes first, then the content's diff.
        let (content, attributes): (Vec<&Change>, Vec<&Change>) =
            r.changes.iter().partition(|c| matches!(c, Change::Content { .. }));
        for change in attributes.into_iter().chain(content) {
            match change {
                Change::Set { attr, to, .. } if r.sensitive && !shown_when_sensitive(attr, to) => {
                    self.line(format!("      {attr}: {SENSITIVE_VALUE}"))
                }
                Change::Set { attr, from, to } => {
                    let kind = if *attr == "owner" { "user" } else { "group" };
                    let above = r.created_above.contains(&ResourceId::new(kind, to));
                    let note = if above && matches!(*attr, "owner" | "group") { " (created above)" } else { "" };
                    // A user's groups: which are added and which removed, not only both lists.
                    let note = match (*attr, from.as_deref()) {
                        ("groups", Some(from)) => groups_note(from, to),
                        _ => note.to_owned(),
                    };
                    match from.as_deref().filter(|f| !f.is_empty()) {
                        Some(from) => self.line(format!("      {attr}: {from} -> {to}{note}")),
                        None => self.line(format!("      {attr}: {to}{note}")),
                    }
                }
                Change::Content { file, from, to } => {
                    let text = if r.sensitive {
                        vec![format!("      content: {SENSITIVE_VALUE}")]
                    } else {
                        self.content(r, file.as_deref(), from.as_ref(), to)
                    };
                    for l in text {
                        self.line(l);
                    }
                }
                Change::Create | Change::Remove | Change::Run { .. } => {}
            }
        }
        self.line("");
    }

    /// A unified diff for text, digests for binary or big content.
    fn content(&self, r: &ResourcePlan, file: Option<&Path>, from: Option<&Content>, to: &Content) -> Vec<String> {
        let own = r.id.0.split_once(':').map(|(_, p)| p).unwrap_or(&r.id.0);
        let file = file.map(|f| f.display().to_string());
        let path = file.as_deref().unwrap_or(own);
        let old = match from {
            None => Some(""),
            Some(content) => content.as_text(),
        };
        let (Some(old), Some(new)) = (old, to.as_text()) else {
            let from =
                from.map(|c| format!("sha256:{} ({} bytes)", c.sha256(), c.len())).unwrap_or_else(|| "nothing".into());
            return vec![format!("      content: {from} -> sha256:{} ({} bytes)", to.sha256(), to.len())];
        };
        let from_name = if from.is_some() { path } else { "/dev/null" };
        let unified =
            TextDiff::from_lines(old, new).unified_diff().context_radius(3).header(from_name, path).to_string();
        unified
            .lines()
            .map(|l| {
                let color = match l.as_bytes().first() {
                    Some(b'+') if !l.starts_with("+++") => GREEN,
                    Some(b'-') if !l.starts_with("---") => RED,
                    Some(b'@') => CYAN,
                    _ => return format!("      {l}"),
                };
                self.paint(color, &format!("      {l}"))
            })
            .collect()
    }

    /// The planned triggers; with `skipped`, each marked as apply will report it.
    fn triggers(&mut self, triggers: &[Trigger], skipped: Option<&str>) {
        if triggers.is_empty() {
            return;
        }
        self.line("Triggers, in order:");
        let width = triggers.iter().map(|t| t.to_string().len()).max().unwrap_or(0);
        for t in triggers {
            let skipped = skipped.map(|why| format!(": skipped ({why})")).unwrap_or_default();
            self.line(format!("  {:width$}   ({}){skipped}", t.to_string(), t.reason));
        }
        self.line("");
    }

    /// One resource applied, as it happens.
    pub fn applied(&mut self, r: &ResourcePlan, as_planned: bool) {
        match self.format {
            Format::Json => {
                let mut record = resource_json(r);
                record["type"] = json!("applied");
                record["as_planned"] = json!(as_planned);
                self.json(record);
            }
            Format::Human if self.verbosity >= 0 => {
                let done = match r.action() {
                    Action::Create => "created",
                    Action::Update => "updated",
                    Action::Remove => "removed",
                    Action::Run => "ran",
                };
                if as_planned {
                    self.line(format!("{}: {done}", r.id));
                } else {
                    // An earlier resource of this run (or someone else) changed it since the plan.
                    self.line(format!("{}: {done} (it changed since the plan:)", r.id));
                    self.resource(r);
                }
            }
            Format::Human => {}
        }
    }

    /// A site that an interrupted run had left untested, now tested: kept or rolled back.
    pub fn finished_interrupted(&mut self, f: &crate::kinds::nginx_site::Finished) {
        match self.format {
            Format::Json => self.json(json!({
                "type": "finished", "id": f.id.to_string(), "accepted": f.accepted, "message": f.message,
            })),
            Format::Human => self.line(finished_text(f)),
        }
    }

    /// A trigger that ran.
    pub fn trigger_ran(&mut self, trigger: &Trigger) {
        match self.format {
            Format::Json => {
                let mut record = trigger_json(trigger);
                record["type"] = json!("trigger-ran");
                self.json(record);
            }
            Format::Human if self.verbosity >= 0 => self.line(format!("{trigger}: done")),
            Format::Human => {}
        }
    }

    /// Triggers that were not run, and why.
    pub fn triggers_skipped(&mut self, triggers: &[Trigger], why: &str) {
        for t in triggers {
            match self.format {
                Format::Json => {
                    let mut record = trigger_json(t);
                    record["type"] = json!("trigger-skipped");
                    record["why"] = json!(why);
                    self.json(record);
                }
                Format::Human if self.verbosity >= 0 => self.line(format!("{t}: skipped ({why})")),
                Format::Human => {}
            }
        }
    }

    /// The closing line of an apply.
    pub fn apply_done(&mut self, applied: &Applied, triggers_run: usize, triggers_skipped: usize) {
        let counts = Counts::of(&applied.resources);
        match self.format {
            Format::Json => self.json(json!({"type": "apply", "create": counts.create, "update": counts.update, "remove": counts.remove, "run": counts.run, "triggers": triggers_run, "triggers_skipped": triggers_skipped})),
            Format::Human => {
                let mut text = format!("Apply complete: {}; {} run", done_counts(counts), plural(triggers_run, "trigger"));
                if triggers_skipped > 0 {
                    text += &format!(", {triggers_skipped} skipped");
                }
                text.push('.');
                self.line(self.paint(BOLD, &text));
            }
        }
    }

    /// After a failure: what had been applied before it.
    pub fn failed_after(&mut self, applied: &Applied, plan: &Plan) {
        if self.format == Format::Human {
            let ids: Vec<String> = applied.resources.iter().map(|r| r.id.to_string()).collect();
            let done = if ids.is_empty() { "nothing".to_owned() } else { ids.join(", ") };
            self.line(format!(
                "Applied {} of {} before the failure: {done}.",
                applied.resources.len(),
                plan.resources.len()
            ));
        }
    }

    pub fn validated(&mut self, name: &str, resources: usize) {
        match self.format {
            Format::Json => self.json(json!({"type": "valid", "name": name, "resources": resources})),
            Format::Human => self.line(format!("The playbook is valid: {}.", plural(resources, "resource"))),
        }
    }

    /// The modules a playbook can use, with their parameters.
    pub fn modules(&mut self, modules: &[crate::playbook::module::Module]) {
        if self.format == Format::Json {
            for m in modules {
                let params: Vec<serde_json::Value> = m
                    .params
                    .iter()
                    .map(|p| {
                        let default = p.default.as_ref().map(crate::playbook::yaml_node::Node::to_json);
                        json!({"name": p.name, "type": p.kind.name(), "default": default, "description": p.description})
                    })
                    .collect();
                self.json(json!({"type": "module", "name": m.name, "origin": m.origin, "description": m.description, "params": params}));
            }
            return;
        }
        // Columns: name, type, default, description; the description wraps so that a line stays
        // within MODULES_WIDTH, and a default wider than its column gets a line of its own.
        const DEFAULT_COLUMN: usize = 24;
        for m in modules {
            self.line(format!("{} ({})", self.paint(BOLD, &m.name), m.origin));
            for line in wrap(&m.description, MODULES_WIDTH - 2) {
                self.line(format!("  {line}"));
            }
            let width = m.params.iter().map(|p| p.name.len()).max().unwrap_or(0);
            let indent = " ".repeat(2 + width + 2 + 6 + 2 + DEFAULT_COLUMN + 2);
            let description_width = MODULES_WIDTH.saturating_sub(indent.len()).max(30);
            for p in &m.params {
                let default = match &p.default {
                    Some(d) => format!("default {}", d.source(&m.source.text).trim()),
                    None => "required".into(),
                };
                let head = format!("  {:width$}  {:6}  ", p.name, p.kind.name());
                let mut lines = wrap(&p.description, description_width).into_iter();
                if default.chars().count() > DEFAULT_COLUMN {
                    self.line(format!("{head}{default}"));
                } else {
                    let first = lines.next().unwrap_or_default();
                    self.line(format!("{head}{default:DEFAULT_COLUMN$}  {first}").trim_end());
                }
                for line in lines {
                    self.line(format!("{indent}{line}"));
                }
            }
            self.line("");
        }
    }

    /// Warnings about the playbook, on stderr.
    /// A warning about the run (not the playbook), on stderr; a record in JSON.
    pub fn warning(&mut self, text: &str) {
        match self.format {
            Format::Json => self.json(json!({"type": "warning", "message": text})),
            _ => {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("warning: {text}\n").as_bytes());
            }
        }
    }

    /// Whether records are JSON.
    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// A human line of a command that formats its own output (rollback, history); none with -q.
    pub fn say(&mut self, text: impl AsRef<str>) {
        if self.format == Format::Human && self.verbosity >= 0 {
            self.line(text);
        }
    }

    /// A JSON record of a command that formats its own output.
    pub fn record(&mut self, value: serde_json::Value) {
        if self.format == Format::Json {
            self.json(value);
        }
    }

    /// After `plan --out FILE`: where the plan went, and how to apply it.
    pub fn saved_plan(&mut self, file: &std::path::Path) {
        if self.format == Format::Json {
            self.json(json!({"type": "saved_plan", "file": file.display().to_string()}));
        } else if self.verbosity >= 0 {
            self.line(format!(
                "Saved the plan to {0}; apply exactly it with: converge apply --plan {0}",
                file.display()
            ));
        }
    }

    /// Before `show FILE` prints a saved plan: what it was made from, when and for what.
    pub fn saved_plan_header(&mut self, saved: &crate::engine::saved::SavedPlan) {
        let root = saved.root.as_ref().map(|r| r.display().to_string());
        if self.format == Format::Json {
            let files: Vec<_> = saved
                .playbook
                .files
                .iter()
                .map(|f| json!({"path": f.path.display().to_string(), "sha256": f.sha256}))
                .collect();
            self.json(json!({"type": "saved_plan", "playbook": saved.playbook.path.display().to_string(), "name": saved.playbook.name, "created": saved.created, "converge_version": saved.converge_version, "root": root, "files": files}));
            return;
        }
        if self.verbosity < 0 {
            return;
        }
        let target = root.map(|r| format!("--root {r}")).unwrap_or_else(|| "this host".into());
        self.line(format!(
            "Saved plan of {} for {target}, made by converge {} at {} (seconds since the epoch)",
            saved.playbook.path.display(),
            saved.converge_version,
            saved.created
        ));
        for file in &saved.playbook.files {
            self.line(format!("  {}  sha256 {}", file.path.display(), file.sha256));
        }
        self.line("");
    }

    pub fn warnings(&self, warnings: &[crate::error::PlaybookError]) {
        for warning in warnings {
            self.error(warning);
        }
    }

    /// An error, rendered by miette with its source snippet, on stderr; with `--output json`,
    /// also one record per mistake on stdout, so that a program never has to parse text.
    pub fn error(&self, error: &(dyn miette::Diagnostic + 'static)) {
        if self.format == Format::Json {
            let mut out = std::io::stdout().lock();
            for record in error_records(error) {
                let _ = writeln!(out, "{}", crate::playbook::redact::apply(&record.to_string()));
            }
        }
        let theme =
            if self.color { miette::GraphicalTheme::unicode() } else { miette::GraphicalTheme::unicode_nocolor() };
        let mut text = String::new();
        // Wrapping could cut a secret in two, where the search for it would miss it.
        let width = if crate::playbook::redact::any() { usize::MAX / 4 } else { 100 };
        let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(width);
        let _ = handler.render_report(&mut text, error);
        let text = crate::playbook::redact::apply(&text);
        // Not eprint!, which panics when stderr is gone (a remote run whose connection dropped).
        let _ = std::io::Write::write_all(&mut std::io::stderr(), terminal_safe(&text, self.color).as_bytes());
    }
}

/// What `finished_interrupted` says, here and (from its record) for a remote host.
pub fn finished_text(f: &crate::kinds::nginx_site::Finished) -> String {
    let head = format!("{}: a run was stopped before nginx -t answered;", f.id);
    if f.accepted {
        format!("{head} nginx -t accepts it now: kept")
    } else {
        format!("{head} nginx -t rejects it: the previous site was put back\n  {}", f.message.replace('\n', "\n  "))
    }
}

/// The JSON records of an error (one per mistake of a playbook) or a warning: `type` (error or
/// warning), `kind` (playbook, resource, read, write, lock, drift, locked, systemd, usage), `message`, and
/// where it points (`file`, `line`, `column`, 1-based) and `help` when it has them.
pub fn error_records(error: &(dyn miette::Diagnostic + 'static)) -> Vec<serde_json::Value> {
    records(error, (error as &dyn std::error::Error).downcast_ref::<crate::error::Error>())
}

fn records(error: &dyn miette::Diagnostic, typed: Option<&crate::error::Error>) -> Vec<serde_json::Value> {
    if let Some(related) = error.related() {
        let records: Vec<serde_json::Value> = related.flat_map(|e| records(e, None)).collect();
        if !records.is_empty() {
            return records;
        }
    }
    let warning = error.severity() == Some(miette::Severity::Warning);
    let kind = match typed {
        Some(crate::error::Error::Playbook(_)) | None => "playbook",
        Some(crate::error::Error::Read { .. }) => "read",
        Some(crate::error::Error::Write { .. }) => "write",
        Some(crate::error::Error::Lock { .. }) => "lock",
        Some(crate::error::Error::Resource { .. }) => "resource",
        Some(crate::error::Error::Drift { .. }) => "drift",
        Some(crate::error::Error::Locked { .. }) => "locked",
        Some(crate::error::Error::Systemd { .. } | crate::error::Error::NoBus) => "systemd",
        Some(crate::error::Error::Usage { .. }) => "usage",
        Some(crate::error::Error::PlanFile { .. }) => "plan_file",
        Some(crate::error::Error::Stopped { .. }) => "stopped",
    };
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        message = format!("{message}: {c}");
        cause = c.source();
    }
    let mut record = json!({
        "type": if warning { "warning" } else { "error" },
        "kind": kind,
        "message": message,
        "file": null, "line": null, "column": null,
        "help": error.help().map(|h| h.to_string()),
    });
    match typed {
        Some(crate::error::Error::Resource { id, .. } | crate::error::Error::Drift { id }) => record["id"] = json!(id),
        Some(
            crate::error::Error::Read { path, .. }
            | crate::error::Error::Write { path, .. }
            | crate::error::Error::Lock { path, .. }
            | crate::error::Error::Locked { path },
        ) => record["file"] = json!(path),
        _ => {}
    }
    let label = error.labels().and_then(|mut labels| labels.next());
    if let (Some(label), Some(source)) = (label, error.source_code()) {
        if let Ok(contents) = source.read_span(label.inner(), 0, 0) {
            record["file"] = json!(contents.name());
            record["line"] = json!(contents.line() + 1);
            record["column"] = json!(contents.column() + 1);
        }
        record["label"] = json!(label.label());
    }
    vec![record]
}

/// A sensitive resource still shows the attributes that name things (mode, owner, ...) when
/// they hold no secret.
fn shown_when_sensitive(attr: &str, to: &str) -> bool {
    crate::engine::resolve::NOT_SECRET.contains(&attr) && crate::playbook::redact::apply(to) == to
}

/// What a sensitive resource shows instead of a value, and instead of its guard.
pub const SENSITIVE_VALUE: &str = "(sensitive value changed)";
pub const SENSITIVE_GUARD: &str = "(sensitive guard)";

/// `text` with control characters escaped (`\x1b`) except newline and tab; with `colors`, the
/// SGR sequences (`ESC [ ... m`) the printer paints with are kept, which can only color text:
/// never move the cursor, retitle the window or clear the screen.
pub fn terminal_safe(text: &str, colors: bool) -> std::borrow::Cow<'_, str> {
    if !colors {
        return crate::error::escape(text);
    }
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\x1b') {
        out.push_str(&crate::error::escape(&rest[..at]));
        let after = &rest[at + 1..];
        let sgr = after.strip_prefix('[').and_then(|p| {
            let end = p.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
            (p.as_bytes()[end] == b'm').then_some(end + 2)
        });
        match sgr {
            Some(len) => {
                out.push_str(&rest[at..at + 1 + len]);
                rest = &after[len..];
            }
            None => {
                out.push_str("\\x1b");
                rest = after;
            }
        }
    }
    out.push_str(&crate::error::escape(rest));
    std::borrow::Cow::Owned(out)
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

/// The width `converge modules` keeps its lines within.
const MODULES_WIDTH: usize = 100;

/// Splits `text` into lines of at most `width` characters, at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
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

fn resource_json(r: &ResourcePlan) -> serde_json::Value {
    let changes: Vec<serde_json::Value> = r
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Set { attr, to, .. } if r.sensitive && !shown_when_sensitive(attr, to) => {
                Some(json!({"attr": attr, "sensitive": true}))
            }
            Change::Run { .. } if r.sensitive => {
                Some(json!({"attr": "run", "reason": SENSITIVE_GUARD, "sensitive": true}))
            }
            Change::Set { attr, from, to } => Some(json!({"attr": attr, "from": from, "to": to})),
            Change::Content { .. } if r.sensitive => Some(json!({"attr": "content", "sensitive": true})),
            Change::Content { file, from, to } => {
                let diff = match (from.as_ref().map(|f| f.as_text()), to.as_text()) {
                    (Some(Some(old)), Some(new)) => Some(TextDiff::from_lines(old, new).unified_diff().context_radius(3).to_string()),
                    (None, Some(new)) => Some(TextDiff::from_lines("", new).unified_diff().context_radius(3).to_string()),
                    _ => None,
                };
                Some(json!({"attr": "content", "file": file, "from_sha256": from.as_ref().map(Content::sha256), "to_sha256": to.sha256(), "diff": diff}))
            }
            Change::Run { reason } => Some(json!({"attr": "run", "reason": reason})),
            Change::Create | Change::Remove => None,
        })
        .collect();
    json!({"type": "resource", "id": r.id, "action": r.action().verb(), "changes": changes, "created_above": r.created_above, "sensitive": r.sensitive})
}

fn trigger_json(t: &Trigger) -> serde_json::Value {
    json!({"type": "trigger", "step": t.step, "unit": t.unit, "reason": t.reason})
}
