//! `HostReport`: what happened on one host, counted from the records its engine sent back; the
//! summary table's row and the run's exit code are read from these.

use std::time::Duration;

use crate::engine::record::Record;

/// What a run asks of each host's engine (`apply --check` is a plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// A dry run: the host's plan, with diffs.
    Plan,
    /// Converge the host.
    Apply,
}

/// How a host's run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The engine ran on the target and exited with `code` (0 done, 2 changes pending, 1 failed);
    /// `stderr` is what it said there.
    Ran { code: i32, stderr: String },
    /// ssh could not connect or log in.
    Unreachable(String),
    /// The host was still running after `--timeout` (this long): its ssh was stopped.
    TimedOut(Duration),
    /// Something before the engine failed: sudo, the architecture, the upload.
    Failed(String),
    /// Ctrl-C: stopped, or never started.
    Interrupted,
}

/// The records of one host's engine, counted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    /// Resources with changes in the plan.
    pub planned: usize,
    /// Triggers in the plan.
    pub triggers_planned: usize,
    /// Resources applied.
    pub applied: usize,
    pub triggers_ran: usize,
    pub triggers_skipped: usize,
    /// The engine got as far as its plan.
    pub plan_seen: bool,
}

impl Tally {
    /// Counts one record.
    pub fn record(&mut self, record: &Record) {
        match record {
            Record::Resource(_) => self.planned += 1,
            Record::Trigger(_) => self.triggers_planned += 1,
            Record::Applied(_) => self.applied += 1,
            Record::TriggerRan(_) => self.triggers_ran += 1,
            Record::TriggerSkipped(_) => self.triggers_skipped += 1,
            Record::Plan(_) => self.plan_seen = true,
            _ => {}
        }
    }
}

/// Where a host stands at the end.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// It matches the playbook, and nothing was changed.
    Converged,
    /// apply changed it.
    Changed,
    /// plan: changes are pending.
    Pending,
    Failed(String),
    Interrupted,
}

#[derive(Debug, Clone)]
pub struct HostReport {
    pub name: String,
    /// How many resources the playbook has for this host (resolved here).
    pub resources: usize,
    pub tally: Tally,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

impl HostReport {
    pub fn status(&self, mode: RunKind) -> Status {
        match &self.outcome {
            Outcome::Unreachable(reason) => Status::Failed(format!("unreachable: {reason}")),
            Outcome::Failed(reason) => Status::Failed(reason.clone()),
            Outcome::TimedOut(limit) => Status::Failed(format!("timed out after {} (--timeout)", seconds(*limit))),
            Outcome::Interrupted => Status::Interrupted,
            Outcome::Ran { code, stderr } => match (mode, code) {
                (RunKind::Plan, 0) | (RunKind::Apply, 0) if self.tally.applied == 0 && self.tally.triggers_ran == 0 => {
                    if mode == RunKind::Plan && self.tally.planned > 0 {
                        Status::Pending
                    } else {
                        Status::Converged
                    }
                }
                (RunKind::Apply, 0) => Status::Changed,
                (RunKind::Plan, 2) => Status::Pending,
                (_, code) => Status::Failed(reason(stderr).unwrap_or_else(|| format!("converge exited with {code}"))),
            },
        }
    }

    /// Resources that already matched the playbook; None when the engine did not get as far
    /// as its plan.
    pub fn ok(&self) -> Option<usize> {
        let differed = self.tally.planned.max(self.tally.applied);
        self.tally.plan_seen.then(|| self.resources.saturating_sub(differed))
    }

    /// Resources changed (apply) or to change (plan).
    pub fn changed(&self, mode: RunKind) -> usize {
        match mode {
            RunKind::Plan => self.tally.planned,
            RunKind::Apply => self.tally.applied,
        }
    }

    /// 1 when the host failed: a resource, a trigger, or the host itself.
    pub fn failed(&self, mode: RunKind) -> usize {
        usize::from(matches!(self.status(mode), Status::Failed(_)))
    }

    pub fn triggers(&self, mode: RunKind) -> usize {
        match mode {
            RunKind::Plan => self.tally.triggers_planned,
            RunKind::Apply => self.tally.triggers_ran,
        }
    }
}

/// A duration as `--timeout` takes it: `90s`, `10m`, `1h`.
pub fn seconds(duration: Duration) -> String {
    match duration.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The line that says why, out of what ssh or the engine wrote on stderr: the engine's error
/// (miette's `×` line), else the last line that is not ssh's known-hosts chatter.
pub fn reason(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .collect();
    let line = lines.iter().find(|l| l.starts_with('×')).or(lines.last())?;
    Some(line.trim_start_matches('×').trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::{Action, Counts};
    use crate::engine::record::{AppliedRecord, PlanSummary, PlannedTrigger, ResourceRecord};
    use crate::engine::trigger::{Step, Trigger};
    use crate::kinds::resource::ResourceId;

    fn resource() -> ResourceRecord {
        let id = ResourceId::new(crate::kinds::Kind::File, "/x");
        ResourceRecord {
            id,
            action: Action::Create,
            changes: vec![],
            created_above: vec![],
            sensitive: false,
            foreseen: vec![],
        }
    }

    fn trigger() -> Trigger {
        Trigger { step: Step::Restart, unit: Some("a.service".into()), reason: "r".into() }
    }

    fn summary() -> Record {
        Record::Plan(PlanSummary { counts: Counts::default(), triggers: 0, units_unobserved: false })
    }

    fn report(outcome: Outcome, records: &[Record]) -> HostReport {
        let mut tally = Tally::default();
        records.iter().for_each(|r| tally.record(r));
        HostReport { name: "web1".into(), resources: 5, tally, outcome, elapsed: Duration::ZERO }
    }

    #[test]
    fn statuses_and_counts() {
        let ran = |code| Outcome::Ran { code, stderr: String::new() };
        let plan = [
            Record::Resource(resource()),
            Record::Trigger(PlannedTrigger { trigger: trigger(), skipped: None }),
            summary(),
        ];
        let r = report(ran(2), &plan);
        assert_eq!(r.status(RunKind::Plan), Status::Pending);
        assert_eq!(
            (r.ok(), r.changed(RunKind::Plan), r.failed(RunKind::Plan), r.triggers(RunKind::Plan)),
            (Some(4), 1, 0, 1)
        );

        let done = [
            Record::Applied(AppliedRecord { resource: resource(), as_planned: true, started_ms: 0, duration_ms: 1 }),
            Record::TriggerRan(trigger()),
        ];
        let applied = [plan.as_slice(), &done].concat();
        let r = report(ran(0), &applied);
        assert_eq!(r.status(RunKind::Apply), Status::Changed);
        assert_eq!((r.ok(), r.changed(RunKind::Apply), r.triggers(RunKind::Apply)), (Some(4), 1, 1));

        assert_eq!(report(ran(0), &[summary()]).status(RunKind::Apply), Status::Converged);
        assert_eq!(report(ran(0), &[summary()]).status(RunKind::Plan), Status::Converged);

        let failed =
            report(Outcome::Ran { code: 1, stderr: "  × file:/x: cannot write\n  ╰─▶ denied\n".into() }, &plan);
        assert_eq!(failed.status(RunKind::Apply), Status::Failed("file:/x: cannot write".into()));
        assert_eq!((failed.ok(), failed.failed(RunKind::Apply)), (Some(4), 1));
        let early = report(Outcome::Ran { code: 1, stderr: "  × another converge run holds the lock\n".into() }, &[]);
        assert_eq!((early.ok(), early.failed(RunKind::Apply)), (None, 1));

        let down = report(Outcome::Unreachable("ssh: connect to host h port 22: Connection refused".into()), &[]);
        assert_eq!(
            down.status(RunKind::Apply),
            Status::Failed("unreachable: ssh: connect to host h port 22: Connection refused".into())
        );
        assert_eq!(down.ok(), None);
    }

    #[test]
    fn reasons() {
        let ssh = "Warning: Permanently added '10.0.0.1' (ED25519) to the list of known hosts.\r\nsudo: a password is required\n";
        assert_eq!(reason(ssh).as_deref(), Some("sudo: a password is required"));
        assert_eq!(reason("\n  \n"), None);
    }
}
