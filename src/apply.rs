//! `apply`: make the changes, resource by resource, in order.
//!
//! Each resource is observed again right before it is written, and what differs then is what is
//! applied: an earlier resource of the same run may have changed what a later one sees (apt
//! installing nginx creates its default site, which a later `nginx_site` removes), so once
//! anything was applied, the resources planned as unchanged are observed again too. When the fresh
//! diff differs from the plan, the output says so. A failure stops the run; what was applied
//! before it stays applied, and the error says so.

use crate::error::{Error, Result};
use crate::host::Host;
use crate::plan::{Plan, ResourcePlan};
use crate::printer::Printer;
use crate::resolve::Resolved;
use crate::systemd::{JobAction, Systemd};
use crate::trigger::{Step, Trigger};

/// What an apply did.
#[derive(Debug, Default)]
pub struct Applied {
    pub resources: Vec<ResourcePlan>,
    /// The previous state of what was changed, for the run record (runs.rs).
    pub recorder: crate::runs::Recorder,
}

/// Fills `applied` as it goes, so that what a failed run did is still known (and recorded).
pub fn apply(
    resolved: &Resolved,
    plan: &Plan,
    host: &Host,
    printer: &mut Printer,
    applied: &mut Applied,
) -> Result<()> {
    for (index, entry) in resolved.entries.iter().enumerate() {
        let planned = plan.resources.iter().find(|r| r.index == index);
        if planned.is_none() && applied.resources.is_empty() {
            continue;
        }
        // A signal stops the run between two resources, never inside one.
        if let Err(stopped) = Error::check_stop() {
            printer.failed_after(applied, plan);
            return Err(stopped);
        }
        let result = (|| {
            let now = entry.resource.plan(host)?;
            if !now.is_empty() {
                applied.recorder.capture(host, &entry.id, &entry.resource, entry.sensitive)?;
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
                printer.applied(&done, as_planned);
                applied.resources.push(done);
            }
            Err(e) => {
                printer.failed_after(applied, plan);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Runs the triggers through systemd, phase by phase (stop, daemon-reload, reload, restart,
/// start); the jobs of one phase are enqueued together and each is awaited. Returns how many ran.
pub fn run_triggers(triggers: &[Trigger], systemd: &Systemd, printer: &mut Printer) -> Result<usize> {
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
                systemd.daemon_reload().map_err(|e| Error::Systemd(e.to_string()))?;
                printer.trigger_ran(group[0]);
                ran += 1;
                continue;
            }
            Step::Stop => JobAction::Stop,
            Step::Reload => JobAction::Reload,
            Step::Restart => JobAction::Restart,
            Step::Start => JobAction::Start,
        };
        let jobs: Vec<(JobAction, String)> = group.iter().filter_map(|t| Some((action, t.unit.clone()?))).collect();
        systemd.run_jobs(&jobs).map_err(|e| Error::Systemd(e.to_string()))?;
        for trigger in group {
            printer.trigger_ran(trigger);
            ran += 1;
        }
    }
    Ok(ran)
}
