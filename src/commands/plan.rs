//! `converge plan`: load -> resolve -> plan -> render. Exit 0 when converged, 2 when not.
//! With `--out FILE`, the plan is saved too (saved.rs).

use std::path::Path;

use crate::cli::Settings;
use crate::engine::plan::plan;
use crate::engine::saved::{self, SavedPlan};
use crate::error::Result;
use crate::output::Printer;

pub fn run(
    path: &Path,
    out: Option<&Path>,
    allow_secrets: bool,
    settings: &Settings,
    printer: &mut Printer,
) -> Result<u8> {
    let (resolved, files) = saved::record_inputs(|| super::load_and_resolve(path, settings, printer));
    let resolved = resolved?;
    let host = super::host(settings);
    // Observed before the plan is made: a host that changes in between makes the saved plan
    // stale (refused), never wrong.
    let observed = match out {
        Some(_) => resolved
            .entries
            .iter()
            .map(|e| saved::observe(&e.resource, &host).map_err(|err| e.own_error(err)))
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let plan = plan(&resolved, &host)?;
    printer.plan(&plan);
    if let Some(out) = out {
        // A secrets file's digest is not written either.
        let files = files.into_iter().filter(|f| !settings.vars.secret_files.contains(&f.path)).collect();
        let saved = SavedPlan::new(&resolved, &plan, observed, path, files, settings.root.as_deref());
        saved.write(out, allow_secrets)?;
        printer.saved_plan(out);
    }
    Ok(if plan.is_empty() { 0 } else { 2 })
}
