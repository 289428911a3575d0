//! `converge apply`: lock -> load -> resolve -> plan -> render -> apply -> triggers.

use std::path::Path;

use crate::apply::{apply, run_triggers};
use crate::cli::Settings;
use crate::error::Error;
use crate::error::Result;
use crate::journal;
use crate::lock::lock;
use crate::plan::plan;
use crate::printer::Printer;

pub struct Options {
    pub check: bool,
    pub detailed_exitcode: bool,
    /// How long to wait for another run's lock.
    pub lock_wait: std::time::Duration,
}

pub fn run(path: &Path, options: &Options, settings: &Settings, printer: &mut Printer) -> Result<u8> {
    let resolved = super::load_and_resolve(path, settings, printer)?;
    let host = super::host(settings);
    let _lock = if options.check { None } else { Some(lock(&host, options.lock_wait)?) };
    if !options.check {
        crate::stop::catch();
    }
    if !options.check
        && let Some(finished) = crate::resources::nginx_site::finish_interrupted(&host)?
    {
        printer.finished_interrupted(&finished);
    }
    let plan = plan(&resolved, &host)?;
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
        return Err(Error::Systemd(
            "the system bus is not reachable, so unit state cannot be read and units cannot be reloaded or \
             restarted; run converge on a host booted with systemd, or converge an offline image with --root DIR"
                .into(),
        ));
    }
    // Rule 6: what the changes trigger is recorded before anything is applied, and cleared only
    // once the triggers ran, so that a run that stops half way hands them to the next one.
    let mut journaled = systemd.is_some() && !plan.pending.is_empty();
    if journaled {
        journal::save(&host, &plan.pending)?;
    }
    let applied = apply(&resolved, &plan, &host, printer)?;
    // Decided again from what was really applied (usually what was planned), and journaled
    // again when that differs.
    let (pending, triggers) = crate::plan::triggers(&resolved, &applied.resources, &host)?;
    if systemd.is_some() && !pending.is_empty() && pending != plan.pending {
        journal::save(&host, &pending)?;
        journaled = true;
    }
    let ran = match systemd {
        Some(systemd) => {
            let settle = |unit: &str| crate::resources::systemd_unit::settle_time(&resolved, unit);
            run_triggers(&triggers, systemd, &settle, &host, printer)?
        }
        None => {
            printer.triggers_skipped(&triggers, crate::plan::OFFLINE_ROOT);
            0
        }
    };
    if journaled {
        journal::clear(&host)?;
    }
    printer.apply_done(&applied, ran, triggers.len() - ran);
    Ok(if options.detailed_exitcode && !applied.resources.is_empty() { 2 } else { 0 })
}
