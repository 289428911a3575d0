use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match converge::cli::Cli::try_parse() {
        Ok(cli) => ExitCode::from(converge::run(cli)),
        Err(e) => {
            // `--output json` asked for records: a usage mistake is one too (help and --version
            // are not mistakes).
            let args: Vec<String> = std::env::args().collect();
            let json = args.windows(2).any(|w| w[0] == "--output" && w[1] == "json")
                || args.iter().any(|a| a == "--output=json");
            if json && e.use_stderr() {
                let text = e.to_string();
                let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
                let message = first.join(" ");
                let message = message.trim_start_matches("error: ");
                let tip = text.lines().find_map(|l| l.trim().strip_prefix("tip: ")).unwrap_or("see `converge --help`");
                use converge::engine::record::{Diagnostic, DiagnosticKind, Located, Record};
                let at = Located {
                    kind: DiagnosticKind::Usage,
                    file: None,
                    line: None,
                    column: None,
                    help: Some(tip.into()),
                };
                let error = Diagnostic { message: message.into(), at: Some(at), id: None, label: None };
                converge::output::Printer::new(converge::output::Format::Json, true, 0).record(Record::Error(error));
            }
            e.exit()
        }
    }
}
