//! `converge validate`: load -> resolve, reporting every mistake; the host is not read.

use std::path::Path;

use crate::cli::Settings;
use crate::error::Result;
use crate::output::Printer;

pub fn run(path: &Path, settings: &Settings, printer: &mut Printer) -> Result<u8> {
    let resolved = super::load_and_resolve(path, settings, printer)?;
    printer.validated(&resolved.name, resolved.entries.len());
    Ok(0)
}
