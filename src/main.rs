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
                let record = serde_json::json!({"type": "error", "kind": "usage", "message": message, "file": null, "line": null, "column": null, "help": tip});
                println!("{record}");
            }
            e.exit()
        }
    }
}
