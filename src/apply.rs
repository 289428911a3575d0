//! `apply`: make the planned changes, resource by resource, in order.
//!
//! Each resource is observed again right before it is written: if the host no longer matches
//! what was planned, the run stops instead of writing over someone else's change. A failure
//! stops the run; what was applied before it stays applied, and the error says so.

use crate::error::{Error, Result};
use crate::host::Host;
use crate::plan::{Plan, ResourcePlan};
use crate::printer::Printer;
use crate::resolve::Resolved;

/// What an apply did.
#[derive(Debug, Default)]
pub struct Applied {
    pub resources: Vec<ResourcePlan>,
}

pub fn apply(resolved: &Resolved, plan: &Plan, host: &Host, printer: &mut Printer) -> Result<Applied> {
    let mut applied = Applied::default();
    for planned in &plan.resources {
        let entry = &resolved.entries[planned.index];
        let result = (|| {
            let now = entry.resource.plan(host)?;
            if now.is_empty() {
                return Ok(false);
            }
            if now != planned.changes {
                return Err(Error::Drift { id: planned.id.to_string() });
            }
            entry.resource.apply(&planned.changes, host)?;
            Ok(true)
        })();
        match result {
            Ok(true) => {
                printer.applied(planned);
                applied.resources.push(planned.clone());
            }
            Ok(false) => {}
            Err(e) => {
                printer.failed_after(&applied, plan);
                return Err(e);
            }
        }
    }
    Ok(applied)
}
