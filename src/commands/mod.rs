//! One file per subcommand; each sequences the pipeline's stages and returns the exit code.

pub mod apply;
pub mod plan;
pub mod validate;

use std::path::Path;

use crate::cli::Settings;
use crate::error::Result;
use crate::host::Host;
use crate::playbook::Playbook;
use crate::resolve::{Resolved, resolve};

/// load -> resolve: the stages every command starts with.
fn load_and_resolve(path: &Path, settings: &Settings) -> Result<Resolved> {
    let playbook = Playbook::load(path)?;
    resolve(&playbook, &settings.vars)
}

fn host(settings: &Settings) -> Host {
    Host::new(settings.root.clone())
}
