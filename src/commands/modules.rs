//! `converge modules`: the modules a playbook can `use:`, with their parameters.

use std::path::Path;

use crate::error::{PlaybookErrors, Result};
use crate::output::Printer;
use crate::playbook::module;

pub fn run(playbook: Option<&Path>, printer: &mut Printer) -> Result<u8> {
    let dir = match playbook {
        Some(path) => path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")),
        None => Path::new("."),
    };
    let mut modules = Vec::new();
    for found in module::all(dir) {
        match found {
            Ok(m) => modules.push(m),
            Err(errors) => {
                let path = errors.first().map(|e| e.src.name().to_owned()).unwrap_or_default();
                return Err(PlaybookErrors { path, errors }.into());
            }
        }
    }
    printer.modules(&modules);
    Ok(0)
}
