//! `converge completions SHELL`, `converge man`, `converge schema`: what shells, `man` and editors
//! read, printed on stdout from the same definitions the program runs on (clap's command line,
//! the attribute table).

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Result};

pub fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "converge", &mut out);
    print(&out)
}

/// converge(1), or converge-COMMAND(1), which converge(1) refers to.
pub fn man(command: Option<&str>) -> Result<u8> {
    let mut cli = Cli::command();
    cli.build();
    let page = match command {
        None => cli,
        Some(name) => {
            let names: Vec<String> = cli.get_subcommands().map(|c| c.get_name().to_owned()).collect();
            let Some(sub) = cli.find_subcommand(name) else {
                return Err(Error::Usage { message: format!("no command `{name}`; commands: {}", names.join(", ")) });
            };
            let page = format!("converge-{}", sub.get_name());
            sub.clone()
                .name(page.clone())
                .bin_name(format!("converge {}", sub.get_name()))
                .display_name(page)
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out).map_err(|e| Error::Usage { message: e.to_string() })?;
    print(&out)
}

pub fn schema() -> Result<u8> {
    print(crate::kinds::schema::text().as_bytes())
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print(bytes: &[u8]) -> Result<u8> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::Usage { message: format!("cannot write: {e}") })
        }
        _ => Ok(0),
    }
}
