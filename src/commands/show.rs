//! `converge show FILE`: a saved plan, printed as `plan` printed it. Reads nothing else.

use std::path::Path;

use crate::cli::Settings;
use crate::engine::saved::SavedPlan;
use crate::error::Result;
use crate::output::Printer;

pub fn run(file: &Path, _settings: &Settings, printer: &mut Printer) -> Result<u8> {
    let saved = SavedPlan::load(file)?;
    printer.saved_plan_header(&saved);
    let plan = saved.plan();
    printer.plan(&plan);
    Ok(if plan.is_empty() { 0 } else { 2 })
}
