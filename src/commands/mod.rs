//! One file per subcommand; each sequences the pipeline's stages and returns the exit code.
//! The top layer: it may import every other; nothing imports it but `lib.rs`.

pub mod apply;
pub mod docs;
pub mod modules;
pub mod plan;
pub mod remote;
pub mod rollback;
pub mod show;
pub mod validate;

use std::path::Path;

use crate::cli::Settings;
use crate::engine::resolve::{Resolved, resolve};
use crate::error::Result;
use crate::host::Host;
use crate::output::Printer;
use crate::playbook::Playbook;

/// load -> resolve: the stages every command starts with.
fn load_and_resolve(path: &Path, settings: &Settings, printer: &Printer) -> Result<Resolved> {
    let playbook = Playbook::load(path)?;
    let resolved = resolve(&playbook, &settings.vars)?;
    printer.warnings(&resolved.warnings);
    Ok(resolved)
}

fn host(settings: &Settings) -> Host {
    Host::new(settings.root.clone()).with_tool_output(crate::output::progress::stream_tool_output())
}
