//! Output of remote runs (remote/): each host's records, as the engine there sent them in JSON,
//! rendered the way a local run renders its own, every line prefixed by the host's name; then
//! one summary table. With `--output json` each record is passed on with a `host` field, and each
//! host ends with a `host` record.

use serde_json::{Value, json};

use super::{BOLD, CYAN, Format, GREEN, Printer, RED, YELLOW, plural};
use crate::engine::plan::Counts;
use crate::remote::report::{HostReport, Outcome, RunKind, Status};

impl Printer {
    /// Records of one host: a plan (its resources and triggers, ending with the `plan` record),
    /// or one record of an apply as it happens. `label` is the host's padded name.
    pub fn host_records(&mut self, label: &str, host: &str, records: &[Value]) {
        if self.format == Format::Json {
            for record in records {
                let mut record = record.clone();
                record["host"] = json!(host);
                self.json(record);
            }
            return;
        }
        if self.verbosity < 0 {
            return;
        }
        let mut lines = Vec::new();
        let planned: Vec<&Value> =
            records.iter().filter(|r| matches!(r["type"].as_str(), Some("resource" | "trigger"))).collect();
        for record in records {
            match record["type"].as_str() {
                Some("plan") => self.remote_plan(&planned, record, &mut lines),
                Some("applied") => {
                    let id = record["id"].as_str().unwrap_or("?");
                    let done = match record["action"].as_str() {
                        Some("create") => "created",
                        Some("remove") => "removed",
                        Some("run") => "ran",
                        _ => "updated",
                    };
                    if record["as_planned"] == json!(false) {
                        lines.push(format!("{id}: {done} (it changed since the plan:)"));
                        self.remote_resource(record, &mut lines);
                    } else {
                        lines.push(format!("{id}: {done}"));
                    }
                }
                Some("trigger-ran") => lines.push(format!("{}: done", trigger_name(record))),
                Some("finished") => {
                    let finished = crate::kinds::nginx_site::Finished {
                        id: crate::kinds::resource::ResourceId(record["id"].as_str().unwrap_or("?").to_owned()),
                        accepted: record["accepted"] == json!(true),
                        message: record["message"].as_str().unwrap_or("").to_owned(),
                    };
                    lines.extend(super::finished_text(&finished).lines().map(str::to_owned));
                }
                Some("trigger-skipped") => {
                    lines.push(format!("{}: skipped ({})", trigger_name(record), record["why"].as_str().unwrap_or("")))
                }
                Some("apply") => {
                    let n = |key: &str| record[key].as_u64().unwrap_or(0) as usize;
                    let counts =
                        Counts { create: n("create"), update: n("update"), remove: n("remove"), run: n("run") };
                    let mut text = format!(
                        "Apply complete: {}; {} run",
                        super::done_counts(counts),
                        plural(n("triggers"), "trigger")
                    );
                    if n("triggers_skipped") > 0 {
                        text += &format!(", {} skipped", n("triggers_skipped"));
                    }
                    text.push('.');
                    lines.push(self.paint(BOLD, &text));
                }
                _ => {}
            }
        }
        self.host_lines(label, &lines);
    }

    /// A line a host printed that is not a record.
    pub fn host_text(&mut self, label: &str, host: &str, line: &str) {
        match self.format {
            Format::Json => self.json(json!({"type": "output", "host": host, "line": line})),
            Format::Human if self.verbosity >= 0 => self.host_lines(label, &[line.to_owned()]),
            Format::Human => {}
        }
    }

    /// converge was sent to the host, with the bytes sent and the cached copy it replaced
    /// because it was not trusted (None: it was there already).
    pub fn host_binary(&mut self, label: &str, host: &str, path: &str, uploaded: Option<(u64, Option<&str>)>) {
        match (self.format, uploaded) {
            (Format::Json, Some((bytes, untrusted))) => {
                self.json(json!({"type": "upload", "host": host, "path": path, "bytes": bytes, "untrusted": untrusted}))
            }
            (Format::Json, None) => self.json(json!({"type": "cached", "host": host, "path": path})),
            (Format::Human, Some((bytes, untrusted))) if self.verbosity >= 0 => {
                let mb = bytes as f64 / 1e6;
                let mut lines = Vec::new();
                if let Some(untrusted) = untrusted {
                    lines.push(format!(
                        "not trusting the cached converge: {untrusted} is a symlink, another user's, or writable by others"
                    ));
                }
                lines.push(format!("uploaded converge ({mb:.1} MB) to {path}"));
                self.host_lines(label, &lines);
            }
            (Format::Human, None) if self.verbosity >= 1 => {
                self.host_lines(label, &[format!("converge is there already: {path}")]);
            }
            (Format::Human, _) => {}
        }
    }

    /// The end of a host: why it failed, with what the target said; a `host` record in JSON.
    pub fn host_done(&mut self, label: &str, report: &HostReport, mode: RunKind) {
        let status = report.status(mode);
        if self.format == Format::Json {
            let (name, reason) = match &status {
                Status::Converged => ("converged", None),
                Status::Changed => ("changed", None),
                Status::Pending => ("pending", None),
                Status::Failed(reason) => ("failed", Some(reason.clone())),
                Status::Interrupted => ("interrupted", None),
            };
            let stderr = match &report.outcome {
                Outcome::Ran { stderr, .. } if matches!(status, Status::Failed(_)) => Some(stderr.clone()),
                _ => None,
            };
            self.json(json!({
                "type": "host", "host": report.name, "status": name, "reason": reason, "stderr": stderr,
                "ok": report.ok(), "changed": report.changed(mode), "failed": report.failed(mode),
                "triggers": report.triggers(mode), "seconds": (report.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            }));
            return;
        }
        let Status::Failed(reason) = status else { return };
        // The engine's own report (miette's, with its source snippet), as the target printed it.
        let said: Vec<String> = match &report.outcome {
            Outcome::Ran { stderr, .. } => stderr
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("Warning: Permanently added"))
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let head = if said.is_empty() { format!("failed: {reason}") } else { "failed:".into() };
        let mut lines = vec![self.paint(RED, &head)];
        lines.extend(said);
        self.host_lines(label, &lines);
    }

    /// The closing table: one row per host, then one line.
    pub fn hosts_summary(&mut self, reports: &[HostReport], mode: RunKind) {
        if self.format == Format::Json {
            return;
        }
        let width = reports.iter().map(|r| r.name.chars().count()).max().unwrap_or(0).max(4);
        let changed = if mode == RunKind::Plan { "TO CHANGE" } else { "CHANGED" };
        if self.verbosity >= 0 {
            self.line("");
        }
        self.line(self.paint(
            BOLD,
            &format!("{:width$}  {:>4}  {changed:>9}  {:>6}  {:>8}  {:>6}", "HOST", "OK", "FAILED", "TRIGGERS", "TIME"),
        ));
        let dash = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        for r in reports {
            let status = r.status(mode);
            let ran = matches!(r.outcome, Outcome::Ran { .. });
            let (changes, triggers) = if ran { (Some(r.changed(mode)), Some(r.triggers(mode))) } else { (None, None) };
            let row = format!(
                "{:width$}  {:>4}  {:>9}  {:>6}  {:>8}  {:>5.2}s",
                r.name,
                dash(r.ok()),
                dash(changes),
                r.failed(mode),
                dash(triggers),
                r.elapsed.as_secs_f64()
            );
            let row = match &status {
                Status::Failed(reason) => self.paint(RED, &format!("{row}  {reason}")),
                Status::Interrupted => self.paint(RED, &format!("{row}  interrupted")),
                Status::Changed | Status::Pending => self.paint(YELLOW, &row),
                Status::Converged => self.paint(GREEN, &row),
            };
            self.line(row);
        }
        let count = |f: &dyn Fn(&Status) -> bool| reports.iter().filter(|r| f(&r.status(mode))).count();
        let parts: Vec<String> = [
            (count(&|s| *s == Status::Converged), "converged"),
            (count(&|s| *s == Status::Changed), "changed"),
            (count(&|s| *s == Status::Pending), "with changes pending"),
            (count(&|s| matches!(s, Status::Failed(_))), "failed"),
            (count(&|s| *s == Status::Interrupted), "interrupted"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        self.line(self.paint(BOLD, &format!("{}: {}.", plural(reports.len(), "host"), parts.join(", "))));
    }

    /// A playbook mistake, found while resolving it for `hosts` (all of them when `all`).
    pub fn hosts_error(&mut self, error: &(dyn miette::Diagnostic + 'static), hosts: &[String], all: bool) {
        self.error(error);
        if !all {
            eprintln!(
                "(with the variables of {}: {})",
                if hosts.len() == 1 { "host" } else { "hosts" },
                hosts.join(", ")
            );
        }
    }

    fn host_lines(&mut self, label: &str, lines: &[String]) {
        for l in lines {
            let line = format!("{label}{l}");
            self.line(line.trim_end());
        }
    }

    fn remote_plan(&self, planned: &[&Value], summary: &Value, lines: &mut Vec<String>) {
        if summary["units_unobserved"] == json!(true) {
            lines.push(
                "Unit state could not be read: there is no system bus here. The plan shows file changes only.".into(),
            );
        }
        if planned.is_empty() {
            lines.push("No changes. The host matches the playbook.".into());
            return;
        }
        lines.push("converge will make these changes:".into());
        lines.push(String::new());
        let triggers: Vec<&&Value> = planned.iter().filter(|r| r["type"] == "trigger").collect();
        for r in planned.iter().filter(|r| r["type"] == "resource") {
            self.remote_resource(r, lines);
        }
        if !triggers.is_empty() {
            lines.push("Triggers, in order:".into());
            let width = triggers.iter().map(|t| trigger_name(t).len()).max().unwrap_or(0);
            for t in &triggers {
                lines.push(format!("  {:width$}   ({})", trigger_name(t), t["reason"].as_str().unwrap_or("")));
            }
            lines.push(String::new());
        }
        let n = |key: &str| summary[key].as_u64().unwrap_or(0) as usize;
        let counts = Counts { create: n("create"), update: n("update"), remove: n("remove"), run: n("run") };
        let text = format!("Plan: {}; {}.", super::counts(counts), plural(n("triggers"), "trigger"));
        lines.push(self.paint(BOLD, &text));
    }

    /// One resource of a plan, from its JSON record (printer.rs `resource`, in JSON's terms).
    fn remote_resource(&self, r: &Value, lines: &mut Vec<String>) {
        let id = r["id"].as_str().unwrap_or("?");
        let action = r["action"].as_str().unwrap_or("update");
        let (symbol, color) = match action {
            "create" => ("+", GREEN),
            "remove" => ("-", RED),
            "run" => (">", CYAN),
            _ => ("~", YELLOW),
        };
        let changes = r["changes"].as_array().cloned().unwrap_or_default();
        let head = match changes.iter().find(|c| c["attr"] == "run") {
            Some(run) => format!("  {symbol} {id} (runs: {})", run["reason"].as_str().unwrap_or("")),
            None => format!("  {symbol} {id} ({action})"),
        };
        lines.push(self.paint(color, &head));
        let created_above: Vec<&str> =
            r["created_above"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let (content, attributes): (Vec<&Value>, Vec<&Value>) =
            changes.iter().filter(|c| c["attr"] != "run").partition(|c| c["attr"] == "content");
        for c in attributes {
            let attr = c["attr"].as_str().unwrap_or("?");
            if c["sensitive"] == json!(true) {
                lines.push(format!("      {attr}: {}", super::SENSITIVE_VALUE));
                continue;
            }
            let to = c["to"].as_str().unwrap_or("");
            let kind = if attr == "owner" { "user" } else { "group" };
            let above = matches!(attr, "owner" | "group") && created_above.contains(&format!("{kind}:{to}").as_str());
            let note = if above { " (created above)" } else { "" };
            match c["from"].as_str().filter(|f| !f.is_empty()) {
                Some(from) => lines.push(format!("      {attr}: {from} -> {to}{note}")),
                None => lines.push(format!("      {attr}: {to}{note}")),
            }
        }
        let own = id.split_once(':').map(|(_, p)| p).unwrap_or(id);
        for c in content {
            if c["sensitive"] == json!(true) {
                lines.push(format!("      content: {}", super::SENSITIVE_VALUE));
                continue;
            }
            let path = c["file"].as_str().unwrap_or(own);
            let from = c["from_sha256"].as_str();
            match c["diff"].as_str() {
                Some(diff) => {
                    lines.push(format!("      --- {}", if from.is_some() { path } else { "/dev/null" }));
                    lines.push(format!("      +++ {path}"));
                    for l in diff.lines() {
                        let color = match l.as_bytes().first() {
                            Some(b'+') => GREEN,
                            Some(b'-') => RED,
                            Some(b'@') => CYAN,
                            _ => {
                                lines.push(format!("      {l}"));
                                continue;
                            }
                        };
                        lines.push(self.paint(color, &format!("      {l}")));
                    }
                }
                None => {
                    let from = from.map(|f| format!("sha256:{f}")).unwrap_or_else(|| "nothing".into());
                    lines.push(format!("      content: {from} -> sha256:{}", c["to_sha256"].as_str().unwrap_or("?")));
                }
            }
        }
        lines.push(String::new());
    }
}

/// `restart app.service`, `daemon-reload`: a trigger record as `Trigger`'s Display writes it.
fn trigger_name(record: &Value) -> String {
    let step = record["step"].as_str().unwrap_or("?");
    match record["unit"].as_str() {
        Some(unit) => format!("{step} {unit}"),
        None => step.to_owned(),
    }
}
