//! `converge plan`: load -> resolve -> plan -> render. Exit 0 when converged, 2 when not.

use std::path::Path;

use crate::cli::Settings;
use crate::error::Result;
use crate::plan::plan;
use crate::printer::Printer;

pub fn run(path: &Path, settings: &Settings, printer: &mut Printer) -> Result<u8> {
    let resolved = super::load_and_resolve(path, settings, printer)?;
    let host = super::host(settings);
    let plan = plan(&resolved, &host)?;
    printer.plan(&plan);
    Ok(if plan.is_empty() { 0 } else { 2 })
}
