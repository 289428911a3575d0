//! Output of remote runs (remote/): each host's records, as the engine there sent them in JSON,
//! rendered the way a local run renders its own, every line prefixed by the host's name; then
//! one summary table. With `--output json` each record is passed on with a `host` field, and each
//! host ends with a `host` record.

use serde_json::json;

use super::{BOLD, Format, GREEN, Human, Printer, RED, YELLOW, plural};
use crate::engine::record::{Cached, HostOutput, HostRecord, HostStatus, Record, Upload};
use crate::remote::report::{HostReport, Outcome, RunKind, Status};

/// Up to this many hosts, each says how it ended (`No changes.`) and has its row in the summary
/// table; past it, without `-v`, only the hosts that change or fail do, and the summary line
/// counts the others.
pub const FEW_HOSTS: usize = 5;

impl Printer {
    /// Says how many hosts the run has: past [`FEW_HOSTS`], the output leaves out converged hosts
    /// (unless -v).
    pub fn hosts_start(&mut self, hosts: usize) {
        self.fleet = hosts > FEW_HOSTS && self.verbosity < 1;
    }

    /// A record of one host's engine: in JSON passed on with a `host` field; for people,
    /// rendered as a local run's (a plan once its closing record came), each line prefixed by
    /// `label`, the host's padded name. Warnings and errors are left to the host's end, which
    /// shows what the engine said on stderr.
    pub fn host_record(&mut self, label: &str, host: &str, record: Record) {
        if self.format == Format::Json {
            let mut value = serde_json::to_value(record).expect("records serialize");
            value["host"] = json!(host);
            self.json(value);
            return;
        }
        let (color, verbosity) = (self.color, self.verbosity);
        let fleet = self.fleet;
        let renderer = self.hosts.entry(host.to_owned()).or_insert_with(|| {
            let human = Human::new(color, verbosity);
            if fleet { human.silent_when_converged() } else { human }
        });
        let lines = renderer.feed(record);
        self.host_lines(label, &lines);
    }

    /// A line a host printed that is not a record.
    pub fn host_text(&mut self, label: &str, host: &str, line: &str) {
        match self.format {
            Format::Json => self.record(Record::Output(HostOutput { host: host.to_owned(), line: line.to_owned() })),
            Format::Human if self.verbosity >= 0 => self.host_lines(label, &[line.to_owned()]),
            Format::Human => {}
        }
    }

    /// converge was sent to the host, with the bytes sent and the cached copy it replaced
    /// because it was not trusted (None: it was there already).
    pub fn host_binary(&mut self, label: &str, host: &str, path: &str, uploaded: Option<(u64, Option<&str>)>) {
        match (self.format, uploaded) {
            (Format::Json, Some((bytes, untrusted))) => {
                let (host, path, untrusted) = (host.to_owned(), path.to_owned(), untrusted.map(str::to_owned));
                self.record(Record::Upload(Upload { host, path, bytes, untrusted }))
            }
            (Format::Json, None) => {
                self.record(Record::Cached(Cached { host: host.to_owned(), path: path.to_owned() }))
            }
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
        // A plan cut short (the engine failed half way) has no closing record: nothing of it.
        self.hosts.remove(&report.name);
        let status = report.status(mode);
        if self.format == Format::Json {
            let (name, reason) = match &status {
                Status::Converged => (HostStatus::Converged, None),
                Status::Changed => (HostStatus::Changed, None),
                Status::Pending => (HostStatus::Pending, None),
                Status::Failed(reason) => (HostStatus::Failed, Some(reason.clone())),
                Status::Interrupted => (HostStatus::Interrupted, None),
            };
            let stderr = match &report.outcome {
                Outcome::Ran { stderr, .. } if matches!(status, Status::Failed(_)) => Some(stderr.clone()),
                _ => None,
            };
            self.record(Record::Host(HostRecord {
                host: report.name.clone(),
                status: name,
                reason,
                stderr,
                ok: report.ok(),
                changed: report.changed(mode),
                failed: report.failed(mode),
                triggers: report.triggers(mode),
                seconds: (report.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
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
        let mut rows: Vec<(Status, &HostReport)> = reports.iter().map(|r| (r.status(mode), r)).collect();
        rows.sort_by_key(|(status, _)| rank(status));
        if self.fleet {
            rows.retain(|(status, _)| *status != Status::Converged);
        }
        let left_out = reports.len() - rows.len();
        if self.verbosity >= 0 {
            self.line("");
        }
        if !rows.is_empty() {
            self.table(&rows, mode);
        }
        self.line(self.paint(BOLD, &summary_line(reports, mode, left_out)));
    }

    /// The summary table: a row per host of `rows`.
    fn table(&mut self, rows: &[(Status, &HostReport)], mode: RunKind) {
        let width = rows.iter().map(|(_, r)| r.name.chars().count()).max().unwrap_or(0).max(4);
        let changed = if mode == RunKind::Plan { "TO CHANGE" } else { "CHANGED" };
        self.line(self.paint(
            BOLD,
            &format!("{:width$}  {:>4}  {changed:>9}  {:>6}  {:>8}  {:>6}", "HOST", "OK", "FAILED", "TRIGGERS", "TIME"),
        ));
        let dash = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        for (status, r) in rows {
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
            let row = match status {
                Status::Failed(reason) => self.paint(RED, &format!("{row}  {reason}")),
                Status::Interrupted => self.paint(RED, &format!("{row}  interrupted")),
                Status::Changed | Status::Pending => self.paint(YELLOW, &row),
                Status::Converged => self.paint(GREEN, &row),
            };
            self.line(row);
        }
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
}

/// Where a host's row goes in the summary table: failures first, then the hosts that changed.
fn rank(status: &Status) -> u8 {
    match status {
        Status::Failed(_) => 0,
        Status::Interrupted => 1,
        Status::Changed | Status::Pending => 2,
        Status::Converged => 3,
    }
}

/// `3 hosts: 2 changed, 1 failed.`; with `left_out` rows not in the table, says how to see them.
fn summary_line(reports: &[HostReport], mode: RunKind, left_out: usize) -> String {
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
    let hint = if left_out > 0 { " (-v lists the converged hosts too)" } else { "" };
    format!("{}: {}.{hint}", plural(reports.len(), "host"), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::Captured;
    use super::*;
    use crate::remote::report::Tally;

    fn report(name: &str, outcome: Outcome, applied: usize) -> HostReport {
        let tally = Tally { applied, plan_seen: true, ..Tally::default() };
        HostReport { name: name.into(), resources: 3, tally, outcome, elapsed: Duration::from_millis(200) }
    }

    /// The summary of `reports` as printed with `verbosity`.
    fn summary(reports: &[HostReport], verbosity: i8) -> Vec<String> {
        let out = Captured::default();
        let mut printer = Printer::to(Box::new(out.clone()), Format::Human, false, verbosity);
        printer.hosts_start(reports.len());
        printer.hosts_summary(reports, RunKind::Apply);
        out.text().lines().map(|l| l.split_whitespace().next().unwrap_or_default().to_owned()).collect()
    }

    #[test]
    fn a_fleet_lists_failures_first_and_leaves_out_converged_hosts_unless_verbose() {
        let ran = Outcome::Ran { code: 0, stderr: String::new() };
        let mut reports: Vec<HostReport> = (1..=5).map(|i| report(&format!("web{i}"), ran.clone(), 0)).collect();
        reports.insert(2, report("app1", ran.clone(), 2));
        reports.push(report("db1", Outcome::TimedOut(Duration::from_secs(600)), 0));
        assert_eq!(summary(&reports, 0), ["", "HOST", "db1", "app1", "7"]);
        let verbose = summary(&reports, 1);
        assert_eq!(verbose[..4], ["", "HOST", "db1", "app1"]);
        assert_eq!(verbose[4..9], ["web1", "web2", "web3", "web4", "web5"]);

        // A few hosts: every row, failures first all the same.
        let few = [report("a", ran.clone(), 0), report("b", Outcome::Unreachable("refused".into()), 0)];
        assert_eq!(summary(&few, 0), ["", "HOST", "b", "a", "2"]);
    }
}
