use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ExitCode::from(converge::run(converge::cli::Cli::parse()))
}
