//! The command line, as clap sees it. Raw flags live here; `Settings` is what the rest of the
//! program uses.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::resolve::VarsInput;
use crate::output::Format;

/// Declarative, idempotent provisioning for Debian and Ubuntu hosts.
///
/// converge reads a YAML playbook, observes the host, shows what differs (with unified diffs),
/// applies only those differences, and a second run changes nothing.
#[derive(Debug, Parser)]
#[command(name = "converge", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: Global,
}

/// The help's examples; a test (tests/integration/cli.rs) runs each of them, in this order, from
/// the repository's folder, and expects the exit code each comment gives (0 when it gives none).
pub const EXAMPLES: &str = "Examples (from the repository's folder; a --root folder needs no systemd):
  converge validate playbooks/mysite.yml                         # every mistake at once; touches nothing
  converge plan playbooks/mysite.yml --root /tmp/converge-demo   # what would change (exit 2: pending)
  converge apply playbooks/mysite.yml --root /tmp/converge-demo  # make it so; prints what changed
  converge plan playbooks/mysite.yml --root /tmp/converge-demo   # converged: nothing to do (exit 0)
  converge plan playbooks/mysite.yml --root /tmp/converge-demo --var workers=5   # a diff (exit 2)
  converge modules                                               # the modules a playbook can `use:`

Exit codes: plan and apply --check 0 = converged, 2 = changes pending, 1 = error; apply 0 =
success (2 with --detailed-exitcode when something changed), 1 = error.";

/// `converge modules --help`'s examples.
const MODULES_EXAMPLES: &str = "Examples:
  converge modules                                   # every module, with its parameters
  converge modules nginx-proxy --var name=mysite --var upstream=unix:/run/mysite.sock
  converge modules gunicorn --var user=app --var app_dir=/srv/app --var venv=/srv/venv \\
      --var wsgi=app:application --var workers=5     # the units it writes, with 5 workers
  converge modules mine --playbook site.yml          # a module of site.yml's own modules/";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change, with unified diffs; changes nothing (exit 2 when changes are pending).
    Plan {
        /// The playbook (YAML).
        playbook: PathBuf,
        /// Also save the plan to FILE (JSON), for `converge show FILE` and `converge apply --plan FILE`;
        /// with --host/--inventory, FILE is a directory of one plan per host (HOST.json).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Save the plan even when it holds sensitive values (written in clear into FILE, mode 0600).
        #[arg(long, requires = "out")]
        allow_secrets: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Make the host match the playbook, then run the triggers its changes set off.
    Apply {
        /// The playbook (YAML); or give --plan FILE instead.
        #[arg(required_unless_present = "plan")]
        playbook: Option<PathBuf>,
        /// Apply the plan saved by `converge plan --out FILE`, exactly, or refuse (changing nothing)
        /// when the host changed since it was made; with --host/--inventory, FILE is the
        /// directory of their plans, each host applying its HOST.json.
        #[arg(long, value_name = "FILE", conflicts_with = "playbook")]
        plan: Option<PathBuf>,
        /// Only show what would change, like `plan` (and exit like it: 2 when changes are pending).
        #[arg(long)]
        check: bool,
        /// Exit 2 when something changed (0 when nothing did).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Wait up to SECONDS for another run's lock instead of exiting at once.
        #[arg(long, value_name = "SECONDS", env = "CONVERGE_LOCK_WAIT", default_value_t = 0)]
        lock_wait: u64,
        /// How many runs to keep recorded for `rollback` (under /var/lib/converge/runs, or inside --root).
        #[arg(long, value_name = "N", env = "CONVERGE_KEEP_RUNS", default_value_t = 10)]
        keep_runs: usize,
        /// How many long resources (apt, virtualenv) may apply at once; 1 applies one at a time.
        #[arg(long, value_name = "N", env = "CONVERGE_JOBS", default_value_t = 4,
              value_parser = clap::value_parser!(u8).range(1..=16))]
        jobs: u8,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Put back what the last run changed (or every run from N on): files, directories, symlinks and unit files, byte for byte.
    Rollback {
        /// Undo run N and every run after it (default: only the last run).
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        /// Only show what would be restored, like `plan`.
        #[arg(long)]
        check: bool,
        /// How many runs to keep recorded.
        #[arg(long, value_name = "N", env = "CONVERGE_KEEP_RUNS", default_value_t = 10)]
        keep_runs: usize,
    },
    /// List the recorded runs: number, time, playbook, host, counts, and whether it was rolled back.
    History,
    /// Print a plan saved by `converge plan --out FILE`, as `plan` printed it.
    Show {
        /// The saved plan (JSON).
        file: PathBuf,
    },
    /// List the modules a playbook can `use:` (shipped ones and the playbook's own modules/), with
    /// their parameters; or show the resources one makes.
    #[command(after_help = MODULES_EXAMPLES)]
    Modules {
        /// A module to show: the resources it makes, as a playbook's `resources:`, with its
        /// parameters (each given with --var NAME=VALUE, else its default) filled in.
        name: Option<String>,
        /// A playbook whose modules/ folder to include (default: the current directory's).
        #[arg(long, value_name = "FILE")]
        playbook: Option<PathBuf>,
    },
    /// Check the playbook (YAML, attributes, variables, templates, ids, order) and report every mistake; touches nothing.
    Validate {
        /// The playbook (YAML).
        playbook: PathBuf,
    },
    /// Print a shell completion script (bash: `converge completions bash > /etc/bash_completion.d/converge`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, in roff (`converge man | man -l -`, or save it as converge.1).
    Man {
        /// A command's own page instead (`converge man apply` is converge-apply(1)).
        command: Option<String>,
    },
    /// Print the JSON Schema (draft 2020-12) of playbooks and modules, for editors.
    Schema,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Converge an offline root directory instead of this host (paths, users and groups inside DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Set a variable (overrides the playbook's `vars:` and --vars-file); `true` and `false` are booleans, anything else a string.
    #[arg(long = "var", global = true, value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,

    /// Read variables from a YAML file (overrides the playbook's `vars:`).
    #[arg(long = "vars-file", global = true, value_name = "FILE")]
    pub vars_files: Vec<PathBuf>,

    /// Set a secret variable: its value is hidden from every output, and each resource using it is sensitive. Other users can see a command line (ps): prefer --secrets-file.
    #[arg(long = "secret-var", global = true, value_name = "NAME=VALUE", value_parser = parse_var)]
    pub secret_vars: Vec<(String, String)>,

    /// Read secret variables from a YAML file (like --vars-file, every value secret).
    #[arg(long = "secrets-file", global = true, value_name = "FILE")]
    pub secrets_files: Vec<PathBuf>,

    /// Output format; with json, errors and warnings are JSON records on stdout too.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub output: Format,

    /// No colors (also when NO_COLOR is set or stdout is not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Say more (unchanged resources, and those a `when:` skipped).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Say less: only the summary line and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// `plan` and `apply` on other machines, over SSH (remote/).
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Remote hosts (over SSH)")]
#[command(group(clap::ArgGroup::new("targets").multiple(true).args(["hosts", "inventory"])))]
pub struct RemoteArgs {
    /// Converge this machine over SSH instead of the local one (repeatable); a name of --inventory selects that host.
    #[arg(long = "host", value_name = "[USER@]HOST[:PORT]")]
    pub hosts: Vec<String>,

    /// The hosts to converge, from a YAML inventory: hosts, groups, their vars and SSH settings.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,

    /// Only the inventory's hosts that match: host or group names, globs (`web*`), comma-separated; `!` excludes.
    #[arg(long, value_name = "PATTERN", requires = "inventory")]
    pub limit: Option<String>,

    /// How many hosts to converge at the same time.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub forks: u16,

    /// An OpenSSH config file for every host (ssh -F FILE), such as `vagrant ssh-config` prints.
    #[arg(long, value_name = "FILE", requires = "targets")]
    pub ssh_config: Option<PathBuf>,

    /// Run converge as root on the target through `sudo -n` (no password prompt).
    #[arg(long = "become", requires = "targets")]
    pub become_root: bool,
}

impl RemoteArgs {
    /// Whether the command runs on other machines.
    pub fn any(&self) -> bool {
        !self.hosts.is_empty() || self.inventory.is_some()
    }
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

/// What the commands need, resolved from the flags.
#[derive(Debug)]
pub struct Settings {
    pub root: Option<PathBuf>,
    pub vars: VarsInput,
    pub format: Format,
    pub no_color: bool,
    pub verbosity: i8,
}

impl Global {
    pub fn settings(&self) -> Settings {
        Settings {
            root: self.root.clone(),
            vars: VarsInput {
                vars: self.vars.clone(),
                files: self.vars_files.clone(),
                secret_vars: self.secret_vars.clone(),
                secret_files: self.secrets_files.clone(),
            },
            format: self.output,
            no_color: self.no_color,
            verbosity: if self.quiet { -1 } else { self.verbose.min(3) as i8 },
        }
    }
}
