//! `converge apply`: lock -> load -> resolve -> plan -> render -> apply -> triggers.

use std::path::Path;

use crate::cli::Settings;
use crate::engine::apply::{Applied, apply, run_triggers};
use crate::engine::journal::{Kept, Pending};
use crate::engine::lock::lock;
use crate::engine::plan::plan;
use crate::engine::resolve::Resolved;
use crate::engine::saved::SavedPlan;
use crate::error::Error;
use crate::error::Result;
use crate::output::Printer;

pub struct Options {
    pub check: bool,
    pub detailed_exitcode: bool,
    /// How long to wait for another run's lock.
    pub lock_wait: std::time::Duration,
    /// How many runs to keep recorded (runs.rs).
    pub keep_runs: usize,
    /// How many long resources may apply at once.
    pub jobs: usize,
}

pub fn run(path: &Path, options: &Options, settings: &Settings, printer: &mut Printer) -> Result<u8> {
    let resolved = super::load_and_resolve(path, settings, printer)?;
    run_resolved(&resolved, None, options, settings, printer)
}

/// `apply --plan FILE`: the saved desired state, applied only when every resource is observed
/// as it was when the plan was made (checked for all before any is changed).
pub fn run_saved(file: &Path, options: &Options, settings: &Settings, printer: &mut Printer) -> Result<u8> {
    let saved = SavedPlan::load(file)?;
    saved.check_target(settings.root.as_deref())?;
    let resolved = saved.resolved();
    run_resolved(&resolved, Some(&saved), options, settings, printer)
}

fn run_resolved(
    resolved: &Resolved,
    saved: Option<&SavedPlan>,
    options: &Options,
    settings: &Settings,
    printer: &mut Printer,
) -> Result<u8> {
    let host = super::host(settings);
    let _lock = if options.check { None } else { Some(lock(&host, options.lock_wait)?) };
    if !options.check {
        crate::engine::stop::catch();
    }
    if !options.check
        && let Some(finished) = crate::kinds::nginx_site::finish_interrupted(&host)?
    {
        printer.record(crate::engine::record::Record::Finished(finished));
    }
    if let Some(saved) = saved {
        saved.check_fresh(resolved, &host)?;
    }
    let plan = plan(resolved, &host)?;
    if let Some(saved) = saved {
        saved.check_same(&plan)?;
    }
    printer.plan(&plan);
    // `--check` is `plan`: 2 while changes are pending, whatever --detailed-exitcode says.
    if options.check {
        return Ok(if plan.is_empty() { 0 } else { 2 });
    }
    if plan.is_empty() {
        return Ok(0);
    }
    let systemd = host.systemd()?;
    if systemd.is_none() && host.root().is_none() && plan.units_unobserved {
        return Err(Error::NoBus);
    }
    // What the changes trigger (and the `on_change:` commands they make run) is recorded before
    // anything is applied, and cleared only once the triggers ran, so that a run that stops half
    // way hands them to the next one (docs/triggers.md, rule 8).
    let mut journal = Kept::new(&host, systemd.is_some());
    journal.save(&plan.pending)?;
    let mut applied = Applied::default();
    let result = apply(resolved, &plan, &mut journal, options.jobs, printer, &mut applied);
    if result.is_err() {
        printer.failed_after(&applied, &plan);
    }
    // Recorded even when the run failed half way: what it did can be rolled back.
    let mut recorder = std::mem::take(&mut applied.recorder);
    recorder.note_asks(resolved, &applied.resources);
    let playbook = saved.map(|s| s.playbook.path.display().to_string()).unwrap_or_else(|| resolved.source.name.clone());
    crate::engine::runs::record(
        &host,
        "apply",
        &playbook,
        &applied.resources,
        recorder,
        Vec::new(),
        options.keep_runs,
    )?;
    result?;
    // Decided again from what was really applied (usually what was planned), and journaled
    // again when that differs.
    let (mut pending, triggers) =
        crate::engine::plan::triggers_after(resolved, &applied.resources, &plan.interrupted, &host)?;
    // The commands ran; what an interrupted run owes to another playbook's stays owed.
    let elsewhere = crate::engine::on_change::owed_elsewhere(resolved, &plan.interrupted);
    pending.commands.clone_from(&elsewhere);
    journal.save(&pending)?;
    let ran = match systemd {
        Some(systemd) => {
            let settle = |unit: &str| crate::engine::apply::settle_time(resolved, unit);
            run_triggers(&triggers, systemd, &settle, &host, printer)?
        }
        None => {
            printer.triggers_skipped(&triggers, crate::engine::plan::OFFLINE_ROOT);
            0
        }
    };
    journal.save(&Pending { commands: elsewhere, ..Pending::default() })?;
    printer.apply_done(&applied, ran, triggers.len() - ran);
    Ok(if options.detailed_exitcode && !applied.resources.is_empty() { 2 } else { 0 })
}
