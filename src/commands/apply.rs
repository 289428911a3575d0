//! `converge apply`: lock -> load -> resolve -> plan -> render -> apply -> triggers.

use std::path::Path;

use crate::apply::apply;
use crate::cli::Settings;
use crate::error::Result;
use crate::lock::lock;
use crate::plan::plan;
use crate::printer::Printer;

pub struct Options {
    pub check: bool,
    pub detailed_exitcode: bool,
}

pub fn run(path: &Path, options: &Options, settings: &Settings, printer: &mut Printer) -> Result<u8> {
    let resolved = super::load_and_resolve(path, settings)?;
    let host = super::host(settings);
    let _lock = if options.check { None } else { Some(lock(&host)?) };
    let plan = plan(&resolved, &host)?;
    printer.plan(&plan);
    if options.check || plan.is_empty() {
        let pending = options.detailed_exitcode && !plan.is_empty();
        return Ok(if pending { 2 } else { 0 });
    }
    let applied = apply(&resolved, &plan, &host, printer)?;
    let why = if host.root().is_some() {
        "offline root: no service manager to run it"
    } else {
        "systemd triggers are not supported yet"
    };
    printer.triggers_skipped(&plan.triggers, why);
    printer.apply_done(&applied, 0, plan.triggers.len());
    Ok(if options.detailed_exitcode && !applied.resources.is_empty() { 2 } else { 0 })
}
