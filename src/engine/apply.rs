//! `apply`: make the changes, resource by resource, in order.
//!
//! Each resource is observed again right before it is written, and what differs then is what is
//! applied: an earlier resource of the same run may have changed what a later one sees (apt
//! installing nginx creates its default site, which a later `nginx_site` removes), so once
//! anything was applied, the resources planned as unchanged are observed again too. When the fresh
//! diff differs from the plan, the output says so. A failure stops the run; what was applied
//! before it stays applied, and the error says so.

use crate::engine::plan::{Plan, ResourcePlan};
use crate::engine::record::{AppliedRecord, Diagnostic, Record, ResourceRecord, Sink};
use crate::engine::resolve::Resolved;
use crate::engine::trigger::{Step, Trigger};
use crate::error::{Error, JournalTail, Result};
use crate::host::Host;
use crate::host::systemd::{DEFAULT_SETTLE, Job, JobAction, Systemd, SystemdError};
use crate::kinds::AnyResource;
use std::time::Duration;

/// What an apply did.
#[derive(Debug, Default)]
pub struct Applied {
    pub resources: Vec<ResourcePlan>,
    /// The previous state of what was changed, for the run record (runs.rs).
    pub recorder: crate::engine::runs::Recorder,
}

/// Fills `applied` as it goes, so that what a failed run did is still known (and recorded); each
/// resource applied is a record to `sink`.
pub fn apply(resolved: &Resolved, plan: &Plan, host: &Host, sink: &mut dyn Sink, applied: &mut Applied) -> Result<()> {
    for (index, entry) in resolved.entries.iter().enumerate() {
        let planned = plan.resources.iter().find(|r| r.index == index);
        if planned.is_none() && applied.resources.is_empty() {
            continue;
        }
        // A signal stops the run between two resources, never inside one.
        Error::check_stop()?;
        let result = (|| {
            let now = entry.resource.plan(host)?;
            if !now.is_empty() {
                applied.recorder.capture(host, &entry.id, &entry.resource, entry.sensitive)?;
                let _busy = entry.resource.slow_step().map(|what| sink.busy(format!("{} ({what})", entry.id)));
                entry.resource.apply(&now, host)?;
            }
            Ok(now)
        })()
        .map_err(|e| entry.own_error(e));
        match result {
            Ok(now) if now.is_empty() => {}
            Ok(now) => {
                let done = ResourcePlan {
                    index,
                    id: entry.id.clone(),
                    changes: now,
                    sensitive: entry.sensitive,
                    created_above: planned.map(|p| p.created_above.clone()).unwrap_or_default(),
                };
                let as_planned = planned.is_some_and(|p| p.changes == done.changes);
                sink.record(Record::Applied(AppliedRecord { resource: ResourceRecord::of(&done), as_planned }));
                applied.resources.push(done);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs the triggers through systemd, phase by phase (stop, daemon-reload, reload, restart,
/// start); the jobs of one phase are enqueued together and each is awaited, and a service
/// started or restarted is watched for `settle(unit)` (see `Systemd::run_jobs`). A job or start
/// that fails ends the run with the unit's last journal lines (docs/triggers.md, rule 2; nginx's
/// old workers: rule 7). Returns how many ran.
pub fn run_triggers(
    triggers: &[Trigger],
    systemd: &Systemd,
    settle: &dyn Fn(&str) -> Duration,
    host: &Host,
    sink: &mut dyn Sink,
) -> Result<usize> {
    let mut ran = 0;
    let mut phases: Vec<(Step, Vec<&Trigger>)> = Vec::new();
    for trigger in triggers {
        match phases.last_mut() {
            Some((step, group)) if *step == trigger.step => group.push(trigger),
            _ => phases.push((trigger.step, vec![trigger])),
        }
    }
    for (step, group) in phases {
        Error::check_stop()?;
        let action = match step {
            Step::DaemonReload => {
                let busy = sink.busy("systemctl daemon-reload".into());
                systemd.daemon_reload()?;
                drop(busy);
                sink.record(Record::TriggerRan(group[0].clone()));
                ran += 1;
                continue;
            }
            Step::Stop => JobAction::Stop,
            Step::Reload => JobAction::Reload,
            Step::Restart => JobAction::Restart,
            Step::Start => JobAction::Start,
        };
        let jobs: Vec<Job> = group
            .iter()
            .filter_map(|t| {
                let unit = t.unit.clone()?;
                Some(Job { action, settle: settle(&unit), unit })
            })
            .collect();
        // nginx's reload is graceful: its old workers keep answering until they leave. Their
        // exits are watched from before the reload, and awaited after it (bounded), so that the
        // next request after apply gets the new configuration.
        let mut old_workers = Vec::new();
        if step == Step::Reload {
            for job in jobs.iter().filter(|job| job.unit == NGINX) {
                let pids = systemd.helper_processes(&job.unit)?;
                old_workers.push(host.watch_exits(&pids));
            }
        }
        let units: Vec<&str> = jobs.iter().map(|job| job.unit.as_str()).collect();
        let busy = sink.busy(format!("systemctl {action} {}", units.join(" ")));
        systemd.run_jobs(&jobs).map_err(|e| failed(e, host))?;
        drop(busy);
        for exits in old_workers {
            let left = exits.wait(OLD_WORKERS_TIMEOUT);
            if !left.is_empty() {
                sink.record(Record::Warning(Diagnostic::message(format!(
                    "{NGINX}: {} old worker process(es) still running {} s after the reload (pids {}): they finish \
                     their open connections and may answer with the old configuration until then",
                    left.len(),
                    OLD_WORKERS_TIMEOUT.as_secs(),
                    left.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                ))));
            }
        }
        for trigger in group {
            sink.record(Record::TriggerRan((*trigger).clone()));
            ran += 1;
        }
    }
    Ok(ran)
}

/// How long to watch `unit` after starting or restarting it: its `settle:`, or the default.
pub fn settle_time(resolved: &Resolved, unit: &str) -> Duration {
    let managed = resolved.entries.iter().find_map(|entry| match &entry.resource {
        AnyResource::Unit(u) if u.name == unit => Some(u.settle),
        _ => None,
    });
    managed.flatten().unwrap_or(DEFAULT_SETTLE)
}

/// The error of a failed job or start, with the unit's last lines in the journal, which usually
/// say why it died.
fn failed(error: SystemdError, host: &Host) -> Error {
    let journal = error.failed_unit().map(|unit| JournalTail {
        unit: unit.to_owned(),
        asked: JOURNAL_LINES,
        lines: journal_lines(host, unit),
    });
    Error::Systemd { journal: journal.filter(|tail| !tail.lines.is_empty()), error }
}

/// The unit whose reload waits for its old workers.
const NGINX: &str = "nginx.service";

/// How long a reload waits for nginx's old workers to leave.
const OLD_WORKERS_TIMEOUT: Duration = Duration::from_secs(5);

/// How many journal lines a failure shows.
const JOURNAL_LINES: usize = 10;

/// `journalctl --unit UNIT -n 10`, after `journalctl --sync` so that what systemd logged about
/// the failure is in. Nothing when the journal cannot be read: the error stands without it.
fn journal_lines(host: &Host, unit: &str) -> Vec<String> {
    let _ = host.program(&["journalctl", "--sync"]).command().output();
    let n = JOURNAL_LINES.to_string();
    let argv =
        ["journalctl", "--unit", unit, "-n", &n, "--no-pager", "--no-hostname", "--quiet", "--output", "short-iso"];
    match host.program(&argv).env("LC_ALL", "C").command().output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}
