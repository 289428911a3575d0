//! converge: declarative, idempotent provisioning.
//!
//! The pipeline, one stage per module:
//!
//! ```text
//! load     (playbook/mod.rs)      YAML -> tree with spans
//! resolve  (engine/resolve.rs)    vars, templates, typed resources, ids, order; every error at once
//! plan     (engine/plan.rs)       observe each resource (read-only) and diff it
//! render   (output/)              the engine's records (engine/record.rs): Terraform-style, or JSON
//! apply    (engine/apply.rs)      only what differs, in order (long work in parallel), re-observing first
//! triggers (engine/trigger.rs)    what the changes set off (daemon-reload, restarts): docs/triggers.md
//! ```
//!
//! The layers, each a folder; the arrows run one way, from the top down:
//!
//! ```text
//! cli.rs, commands/   the command line: parses arguments, runs a pipeline, hands records to output/
//! output/             the engine's sink: records as JSON lines or for people, progress lines
//! remote/             reaching other hosts over OpenSSH; their engines send records back
//! engine/             resolve, plan, apply, triggers, journal, saved plans, recorded runs, records
//! kinds/              the Resource trait (kinds/resource.rs) and one file per kind
//! playbook/           the YAML tree, attributes, templates, modules, secrets
//! host/               the only door to the machine: files, programs, accounts, systemd
//! ```
//!
//! The core contract is the [`kinds::resource::Resource`] trait (observe / diff / apply), and
//! `host/` is the only door to the machine. Every byte written to the terminal, stdout or the
//! journal passes `playbook/redact.rs` (secret values replaced) and, for a terminal,
//! `output::terminal_safe` (control characters escaped).

// A playbook error carries its source text for miette; it is built only on the error path and
// collected into a Vec, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod host;
pub mod kinds;
pub mod output;
pub mod playbook;
pub mod remote;

use cli::{Cli, Command};
use output::Printer;

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let settings = cli.global.settings();
    let mut printer = Printer::new(settings.format, settings.no_color, settings.verbosity);
    output::progress::configure(settings.format == output::Format::Human, settings.verbosity);
    let result = match &cli.command {
        Command::Plan { playbook, remote, out, allow_secrets } if remote.any() => {
            let input = match out {
                Some(dir) => commands::remote::Input::SavePlans { playbook, dir, allow_secrets: *allow_secrets },
                None => commands::remote::Input::Playbook(playbook),
            };
            commands::remote::run(input, commands::remote::RemoteCommand::Plan, remote, &settings, &mut printer)
        }
        Command::Apply { playbook, plan, check, detailed_exitcode, lock_wait, remote, .. } if remote.any() => {
            let command = commands::remote::RemoteCommand::Apply {
                check: *check,
                detailed_exitcode: *detailed_exitcode,
                lock_wait: *lock_wait,
            };
            match (plan, playbook) {
                (Some(dir), _) => Ok(commands::remote::Input::SavedPlans(dir)),
                (None, Some(playbook)) => Ok(commands::remote::Input::Playbook(playbook)),
                (None, None) => Err(error::Error::Usage { message: "give a playbook, or --plan DIR".into() }),
            }
            .and_then(|input| commands::remote::run(input, command, remote, &settings, &mut printer))
        }
        Command::Plan { playbook, out, allow_secrets, .. } => {
            commands::plan::run(playbook, out.as_deref(), *allow_secrets, &settings, &mut printer)
        }
        Command::Apply { playbook, plan, check, detailed_exitcode, lock_wait, keep_runs, jobs, .. } => {
            let options = commands::apply::Options {
                check: *check,
                detailed_exitcode: *detailed_exitcode,
                lock_wait: std::time::Duration::from_secs(*lock_wait),
                keep_runs: *keep_runs,
                jobs: usize::from(*jobs),
            };
            match (plan, playbook) {
                (Some(file), _) => commands::apply::run_saved(file, &options, &settings, &mut printer),
                (None, Some(playbook)) => commands::apply::run(playbook, &options, &settings, &mut printer),
                (None, None) => Err(error::Error::Usage { message: "give a playbook, or --plan FILE".into() }),
            }
        }
        Command::Rollback { to, check, keep_runs } => {
            commands::rollback::run(*to, *check, *keep_runs, &settings, &mut printer)
        }
        Command::History => commands::rollback::history(&settings, &mut printer),
        Command::Show { file } => commands::show::run(file, &settings, &mut printer),
        Command::Validate { playbook } => commands::validate::run(playbook, &settings, &mut printer),
        Command::Modules { name, playbook } => {
            commands::modules::run(name.as_deref(), playbook.as_deref(), &settings.vars, &mut printer)
        }
        Command::Completions { shell } => commands::docs::completions(*shell),
        Command::Man { command } => commands::docs::man(command.as_deref()),
        Command::Schema => commands::docs::schema(),
    };
    result.unwrap_or_else(|error| {
        printer.error(&error);
        error.exit_code()
    })
}
