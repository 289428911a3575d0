//! `apply`: make the changes, resource by resource.
//!
//! Each resource is observed again right before it is written, and what differs then is what is
//! applied: an earlier resource of the same run may have changed what a later one sees (apt
//! installing nginx creates its default site, which a later `nginx_site` removes), so once a
//! resource before it was planned, the resources planned as unchanged are observed again too.
//! When the fresh diff differs from the plan, the output says so.
//!
//! Long work runs in parallel (docs/output.md, "Parallel apply"): a resource whose apply is long
//! ([`Overlap::Long`]: a venv built; [`Overlap::LongExclusive`]: apt-get, one at a time) starts,
//! on a thread of its own, as soon as what its ordering edges name (`after:`, and what its kind
//! needs now: [`AnyResource::needs_now`]) has been applied, up to [`PARALLEL`] at once. Files and
//! accounts ([`Overlap::Beside`]) go on in the playbook's order meanwhile, waiting only for what
//! their edges name; every other resource ([`Overlap::Alone`]: a command, a unit, a site) waits
//! for everything before it. Resources start in the playbook's order, and their records are
//! reported in that order whatever order they finish in. A failure (or a signal) starts nothing
//! more; what runs is let finish and reported, and the first failure in the playbook's order is
//! the run's error (the others are warnings). What was applied before it stays applied.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::engine::graph;
use crate::engine::journal::Kept;
use crate::engine::on_change::{self, Gate};
use crate::engine::plan::{Plan, ResourcePlan};
use crate::engine::record::{AppliedRecord, Diagnostic, Record, ResourceRecord, Sink};
use crate::engine::resolve::{Entry, Resolved};
use crate::engine::runs::Recorder;
use crate::engine::trigger::{Step, Trigger};
use crate::error::{Error, JournalTail, Result};
use crate::host::Host;
use crate::host::systemd::{DEFAULT_SETTLE, Job, JobAction, Systemd, SystemdError};
use crate::kinds::AnyResource;
use crate::kinds::resource::{Change, Overlap, ResourceId};

/// At most this many long resources apply at once, unless `apply --jobs N` says otherwise.
pub const PARALLEL: usize = 4;

/// What an apply did.
#[derive(Debug, Default)]
pub struct Applied {
    pub resources: Vec<ResourcePlan>,
    /// How long each took, in the order of `resources`.
    pub durations: Vec<(ResourceId, Duration)>,
    /// The previous state of what was changed, for the run record (runs.rs).
    pub recorder: crate::engine::runs::Recorder,
}

impl Applied {
    /// The `n` slowest resources, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<(ResourceId, Duration)> {
        let mut all = self.durations.clone();
        all.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
        all.truncate(n);
        all
    }
}

/// One resource done: what it changed, the previous state of its paths, and when.
struct Done {
    changes: Vec<Change>,
    recorder: Recorder,
    /// When it started, since the apply began.
    started: Duration,
    took: Duration,
}

/// One resource failed: why, and the previous state of what it may have changed before it
/// failed (kept in the run record, so that a rollback puts it back or lists it as not restored).
struct Failed {
    error: Error,
    recorder: Recorder,
}

/// What applying one resource came to.
type Outcome = std::result::Result<Done, Failed>;

/// Observes `entry` again and applies what differs now (an `on_change:` command: for `reason`).
fn apply_one(entry: &Entry, host: &Host, begun: Instant, reason: Option<&str>) -> Outcome {
    let started = begun.elapsed();
    let mut recorder = Recorder::default();
    let changes = match (entry.resource.plan(host), reason) {
        (Ok(changes), None) => changes,
        (Ok(changes), Some(reason)) => on_change::run_because(changes, reason),
        (Err(e), _) => return Err(Failed { error: entry.own_error(e), recorder }),
    };
    if !changes.is_empty() {
        if let Err(error) = recorder.capture(host, &entry.id, &entry.resource, entry.sensitive) {
            return Err(Failed { error, recorder });
        }
        if let Err(e) = entry.resource.apply(&changes, host) {
            return Err(Failed { error: entry.own_error(e), recorder });
        }
    }
    Ok(Done { changes, recorder, started, took: begun.elapsed() - started })
}

/// An entry applied in turn (not long work): an `on_change:` command only when what it names
/// changed in this run or the interrupted one owes it; either way it is owed no more.
fn apply_in_turn(entry: &Entry, plan: &Plan, applied: &Applied, journal: &mut Kept, begun: Instant) -> Outcome {
    let host = journal.host();
    let changed = |id: &ResourceId| applied.resources.iter().any(|r| r.id == *id).then_some(true);
    let done = match on_change::gate(entry, changed, &plan.interrupted) {
        Gate::Free => return apply_one(entry, host, begun, None),
        // What it names did not change after all (apply found it as the playbook says).
        Gate::Quiet => Done::reported(),
        Gate::Fires(cause) => apply_one(entry, host, begun, Some(&cause.reason()))?,
    };
    match journal.ran(&entry.id) {
        Ok(()) => Ok(done),
        Err(error) => Err(Failed { error, recorder: done.recorder }),
    }
}

/// [`apply_one`] on a thread of its own: a panic is its failure, not a wait that never ends.
fn apply_caught(entry: &Entry, host: &Host, begun: Instant) -> Outcome {
    let run = std::panic::AssertUnwindSafe(|| apply_one(entry, host, begun, None));
    std::panic::catch_unwind(run).unwrap_or_else(|_| {
        Err(Failed { error: Error::resource(&entry.id, "its apply panicked"), recorder: Recorder::default() })
    })
}

/// When each resource of the apply may start.
struct Schedule {
    /// Whether it is applied at all: planned, or after one that is.
    active: Vec<bool>,
    overlap: Vec<Overlap>,
    /// The resources its ordering edges name, by index.
    before: Vec<BTreeSet<usize>>,
    /// How many long resources may run at once.
    jobs: usize,
}

impl Schedule {
    fn new(resolved: &Resolved, plan: &Plan, host: &Host, jobs: usize) -> Result<Schedule> {
        let entries = &resolved.entries;
        let first = plan.resources.iter().map(|r| r.index).min().unwrap_or(entries.len());
        let index = |id: &ResourceId| entries.iter().position(|e| e.id == *id);
        let mut nodes = Vec::with_capacity(entries.len());
        for entry in entries {
            let needs = entry.resource.needs_now(host).map_err(|e| entry.own_error(e))?;
            let after = entry.after.iter().filter_map(index).collect();
            nodes.push(graph::Node { id: &entry.id, resource: &entry.resource, after, needs });
        }
        Ok(Schedule {
            active: (0..entries.len()).map(|i| i >= first).collect(),
            // One at a time: each after everything before it, as before parallel apply.
            overlap: entries.iter().map(|e| if jobs > 1 { e.resource.overlap() } else { Overlap::Alone }).collect(),
            before: graph::edges(&nodes),
            jobs: jobs.max(1),
        })
    }

    /// Whether resource `i` may start, with `done` those finished and `running` those running.
    fn may_start(&self, i: usize, done: &[bool], running: &[usize]) -> bool {
        let edges_done = self.before[i].iter().all(|&j| done[j]);
        match self.overlap[i] {
            Overlap::Alone => running.is_empty() && done[..i].iter().all(|&d| d),
            Overlap::Beside => edges_done,
            Overlap::Long => edges_done && running.len() < self.jobs,
            Overlap::LongExclusive => {
                edges_done
                    && running.len() < self.jobs
                    && !running.iter().any(|&j| self.overlap[j] == Overlap::LongExclusive)
            }
        }
    }

    fn is_long(&self, i: usize) -> bool {
        matches!(self.overlap[i], Overlap::Long | Overlap::LongExclusive)
    }
}

/// The results so far, reported in the playbook's order as they come in.
struct Results<'a> {
    resolved: &'a Resolved,
    plan: &'a Plan,
    done: Vec<Option<Outcome>>,
    reported: usize,
    /// The first failure in the playbook's order; the others are reported as warnings.
    failure: Option<Error>,
}

impl Results<'_> {
    fn finished(&self) -> Vec<bool> {
        self.done.iter().map(|d| matches!(d, Some(Ok(_)))).collect()
    }

    /// Reports, in order, every result not reported yet that has nothing unfinished before it.
    fn report(&mut self, sink: &mut dyn Sink, applied: &mut Applied) {
        while let Some(Some(result)) = self.done.get_mut(self.reported).map(Option::take) {
            let index = self.reported;
            self.reported += 1;
            match result {
                Ok(done) => self.report_done(index, done, sink, applied),
                Err(Failed { error, recorder }) => {
                    applied.recorder.merge(recorder);
                    match self.failure {
                        None => self.failure = Some(error),
                        Some(_) => sink.record(Record::Warning(Diagnostic::message(format!("it failed too: {error}")))),
                    }
                }
            }
            // Taken to report it; what it was is kept for may_start.
            self.done[index] = Some(Ok(Done::reported()));
        }
    }

    fn report_done(&self, index: usize, done: Done, sink: &mut dyn Sink, applied: &mut Applied) {
        if done.changes.is_empty() {
            return;
        }
        let entry = &self.resolved.entries[index];
        let planned = self.plan.resources.iter().find(|r| r.index == index);
        let resource = ResourcePlan {
            index,
            id: entry.id.clone(),
            changes: done.changes,
            sensitive: entry.sensitive,
            created_above: planned.map(|p| p.created_above.clone()).unwrap_or_default(),
        };
        let as_planned = planned.is_some_and(|p| p.changes == resource.changes);
        sink.record(Record::Applied(AppliedRecord {
            resource: ResourceRecord::of(&resource),
            as_planned,
            started_ms: millis(done.started),
            duration_ms: millis(done.took),
        }));
        applied.recorder.merge(done.recorder);
        applied.durations.push((entry.id.clone(), done.took));
        applied.resources.push(resource);
    }
}

impl Done {
    /// A result already reported (or a resource not applied): finished, nothing to report.
    fn reported() -> Done {
        Done { changes: Vec::new(), recorder: Recorder::default(), started: Duration::ZERO, took: Duration::ZERO }
    }
}

/// Whole milliseconds.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Fills `applied` as it goes, so that what a failed run did is still known (and recorded); each
/// resource applied is a record to `sink`, in the playbook's order. At most `jobs` long
/// resources run at once. An `on_change:` command that ran is taken out of the `journal`.
pub fn apply(
    resolved: &Resolved,
    plan: &Plan,
    journal: &mut Kept,
    jobs: usize,
    sink: &mut dyn Sink,
    applied: &mut Applied,
) -> Result<()> {
    let host = journal.host();
    let schedule = Schedule::new(resolved, plan, host, jobs)?;
    let entries = &resolved.entries;
    let begun = Instant::now();
    let mut results =
        Results { resolved, plan, done: entries.iter().map(|_| None).collect(), reported: 0, failure: None };
    std::thread::scope(|scope| {
        let (finished, arrivals) = mpsc::channel::<(usize, Outcome)>();
        let mut running: Vec<(usize, Box<dyn std::any::Any>)> = Vec::new();
        let mut next = 0;
        loop {
            while next < entries.len() && results.failure.is_none() && !any_failed(&results) {
                // A signal stops the run between two resources, never inside one.
                if let Err(stop) = Error::check_stop() {
                    results.failure = Some(stop);
                    break;
                }
                let ids: Vec<usize> = running.iter().map(|(i, _)| *i).collect();
                // With nothing running, there is nothing to wait for.
                if schedule.active[next] && !ids.is_empty() && !schedule.may_start(next, &results.finished(), &ids) {
                    break;
                }
                let entry = &entries[next];
                if !schedule.active[next] {
                    results.done[next] = Some(Ok(Done::reported()));
                } else if schedule.is_long(next) {
                    let what = entry.resource.slow_step().unwrap_or("long");
                    running.push((next, sink.busy(format!("{} ({what})", entry.id))));
                    let (finished, i) = (finished.clone(), next);
                    scope.spawn(move || finished.send((i, apply_caught(entry, host, begun))));
                } else {
                    let busy = entry.resource.slow_step().map(|what| sink.busy(format!("{} ({what})", entry.id)));
                    results.done[next] = Some(apply_in_turn(entry, plan, applied, journal, begun));
                    drop(busy);
                }
                next += 1;
                results.report(sink, applied);
            }
            if running.is_empty() {
                break;
            }
            let (i, result) = arrivals.recv().expect("a running resource reports");
            running.retain(|(j, _)| *j != i);
            results.done[i] = Some(result);
            results.report(sink, applied);
        }
    });
    results.report(sink, applied);
    results.failure.map_or(Ok(()), Err)
}

/// Whether a resource failed, reported or not: nothing more starts.
fn any_failed(results: &Results) -> bool {
    results.done.iter().any(|d| matches!(d, Some(Err(_))))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(overlap: &[Overlap], before: &[&[usize]], jobs: usize) -> Schedule {
        Schedule {
            active: vec![true; overlap.len()],
            overlap: overlap.to_vec(),
            before: before.iter().map(|b| b.iter().copied().collect()).collect(),
            jobs,
        }
    }

    #[test]
    fn long_work_overlaps_what_no_edge_joins_it_to() {
        use Overlap::*;
        // apt; a user; a venv owned by the user; a unit.
        let s = schedule(&[LongExclusive, Beside, Long, Alone], &[&[], &[], &[1], &[]], 4);
        let none = [false; 4];
        assert!(s.may_start(1, &none, &[0]), "the user beside apt");
        assert!(!s.may_start(2, &none, &[0]), "the venv waits for its owner");
        assert!(s.may_start(2, &[false, true, false, false], &[0]), "then goes beside apt");
        assert!(!s.may_start(3, &[false, true, false, false], &[0, 2]), "the unit waits for all before it");
        assert!(s.may_start(3, &[true, true, true, false], &[]));
    }

    #[test]
    fn one_apt_at_a_time_and_no_more_than_jobs() {
        use Overlap::*;
        let s = schedule(&[LongExclusive, LongExclusive, Long, Long], &[&[], &[], &[], &[]], 3);
        assert!(!s.may_start(1, &[false; 4], &[0]), "dpkg's lock");
        assert!(s.may_start(2, &[false; 4], &[0]));
        assert!(s.may_start(3, &[false; 4], &[0, 2]));
        assert!(!s.may_start(3, &[false; 4], &[0, 1, 2]), "three at once at most");
    }

    #[test]
    fn the_slowest_come_first() {
        let id = |n: &str| ResourceId::new(crate::kinds::Kind::File, n);
        let applied = Applied {
            durations: vec![
                (id("/a"), Duration::from_millis(5)),
                (id("/b"), Duration::from_millis(50)),
                (id("/c"), Duration::from_millis(20)),
                (id("/d"), Duration::from_millis(1)),
            ],
            ..Applied::default()
        };
        let slowest: Vec<String> = applied.slowest(3).into_iter().map(|(id, _)| id.name).collect();
        assert_eq!(slowest, ["/b", "/c", "/a"]);
    }
}
