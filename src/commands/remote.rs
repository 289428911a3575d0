//! `converge plan|apply PLAYBOOK --host ...` / `--inventory FILE`: targets -> resolve here, per
//! target (every mistake reported before any host is contacted) -> bundles -> the fleet
//! converges, `--forks` at a time, each host streaming its records back -> summary, exit code.
//! The machinery is in remote/.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::cli::{RemoteArgs, Settings};
use crate::engine::resolve::resolve;
use crate::engine::saved::SavedPlan;
use crate::error::{Error, Result};
use crate::output::Printer;
use crate::playbook::Playbook;
use crate::playbook::template::record_reads;
use crate::remote::binary::Binary;
use crate::remote::bundle::Bundle;
use crate::remote::interrupt;
use crate::remote::inventory::Inventory;
use crate::remote::report::{RunKind, Status};
use crate::remote::session::Event;
use crate::remote::ssh;
use crate::remote::target::Target;
use crate::remote::{Fleet, PrivateDir, Remote, SavedPlans};

/// The command given for the remote hosts, with its options: `plan` or `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteCommand {
    Plan,
    /// `lock_wait`: seconds the target's engine waits for another run's lock; `jobs`: how many
    /// long resources it applies at once.
    Apply {
        check: bool,
        detailed_exitcode: bool,
        lock_wait: u64,
        jobs: u8,
    },
}

/// What the hosts are given (docs/saved-plans.md, "Remote hosts": one plan file per host).
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A playbook, resolved here for each host and sent.
    Playbook(&'a Path),
    /// `plan PLAYBOOK --out DIR`: each host's plan is saved to `DIR/HOST.json`.
    SavePlans { playbook: &'a Path, dir: &'a Path, allow_secrets: bool },
    /// `apply --plan DIR`: each host applies `DIR/HOST.json`, exactly, or refuses.
    SavedPlans(&'a Path),
}

pub fn run(
    input: Input<'_>,
    command: RemoteCommand,
    args: &RemoteArgs,
    settings: &Settings,
    printer: &mut Printer,
) -> Result<u8> {
    // Before any thread exists, so that every thread leaves the signals to the watcher.
    interrupt::watch();
    let targets = targets(args)?;
    let dir =
        PrivateDir::new().map_err(|e| Error::Usage { message: format!("cannot create a temporary directory: {e}") })?;
    let (hosts, saved) = match input {
        Input::Playbook(path) => (prepare(path, &targets, settings, dir.path(), printer)?, SavedPlans::None),
        Input::SavePlans { playbook, dir: out, allow_secrets } => {
            clear_plans(out, &targets)?;
            (prepare(playbook, &targets, settings, dir.path(), printer)?, SavedPlans::Save { allow_secrets })
        }
        Input::SavedPlans(plans) => (Some(saved_plans(plans, &targets)?), SavedPlans::Apply),
    };
    let Some(hosts) = hosts else { return Ok(1) };
    let binary = Binary::for_upload()?;
    let run_kind = match command {
        RemoteCommand::Plan | RemoteCommand::Apply { check: true, .. } => RunKind::Plan,
        RemoteCommand::Apply { check: false, .. } => RunKind::Apply,
    };
    let fleet = Fleet {
        hosts: &hosts,
        binary: &binary,
        mode: run_kind,
        root: settings.root.as_deref(),
        ssh: ssh::Options {
            config: args.ssh_config.as_deref(),
            connect_timeout: args.connect_timeout,
            masters: ssh::Masters::new(args.ssh_persist, dir.path()),
        },
        become_root: args.become_root,
        forks: args.forks.map_or(crate::remote::FORKS, usize::from),
        timeout: Some(args.timeout).filter(|t| !t.is_zero()),
        lock_wait: match command {
            RemoteCommand::Apply { lock_wait, .. } => lock_wait,
            RemoteCommand::Plan => 0,
        },
        jobs: match command {
            RemoteCommand::Apply { jobs, .. } => jobs,
            RemoteCommand::Plan => 1,
        },
        saved,
    };

    printer.hosts_start(targets.len());
    let width = targets.iter().map(|t| t.name.chars().count()).max().unwrap_or(0);
    let label = |i: usize| format!("{:width$} | ", targets[i].name);
    // A spinner per host while its binary uploads (a terminal only; output::progress decides).
    let mut uploading: std::collections::HashMap<usize, crate::output::progress::Spinner> = Default::default();
    let mut unsaved = 0;
    let reports = fleet.converge(|event, report| match event {
        Event::Uploading { host, bytes } => {
            let what = format!("{}: uploading converge ({:.1} MB)", targets[*host].name, *bytes as f64 / 1_000_000.0);
            uploading.insert(*host, crate::output::progress::spinner(what));
        }
        // The target's own "saved to its temporary file": the plan comes back as Event::SavedPlan.
        Event::Record { record: crate::engine::record::Record::SavedPlan(_), .. } => {}
        Event::Record { host, record } => printer.host_record(&label(*host), &targets[*host].name, record.clone()),
        Event::Text { host, line } => printer.host_text(&label(*host), &targets[*host].name, line),
        Event::Uploaded { host, path, bytes, untrusted } => {
            uploading.remove(host);
            printer.host_binary(&label(*host), &targets[*host].name, path, Some((*bytes, untrusted.as_deref())))
        }
        Event::Cached { host, path } => printer.host_binary(&label(*host), &targets[*host].name, path, None),
        Event::SavedPlan { host, json } => {
            let Input::SavePlans { dir, allow_secrets, .. } = input else { return };
            let name = &targets[*host].name;
            let line = match save_plan(dir, name, json, allow_secrets) {
                Ok(file) => format!("Saved the plan to {}", file.display()),
                Err(e) => {
                    unsaved += 1;
                    format!("the plan was not saved: {e}")
                }
            };
            printer.host_text(&label(*host), name, &line);
        }
        Event::Done { host, .. } => {
            uploading.remove(host);
            printer.host_done(&label(*host), report, run_kind)
        }
    });
    printer.hosts_summary(&reports, run_kind);

    let statuses: Vec<Status> = reports.iter().map(|r| r.status(run_kind)).collect();
    if statuses.contains(&Status::Interrupted) {
        return Ok(130);
    }
    if unsaved > 0 || statuses.iter().any(|s| matches!(s, Status::Failed(_))) {
        return Ok(1);
    }
    let pending = statuses.contains(&Status::Pending);
    let changed = statuses.contains(&Status::Changed);
    Ok(match command {
        RemoteCommand::Plan | RemoteCommand::Apply { check: true, .. } => u8::from(pending) * 2,
        RemoteCommand::Apply { check: false, detailed_exitcode, .. } => u8::from(detailed_exitcode && changed) * 2,
    })
}

/// Where the saved plan of host `name` is in `dir`: `DIR/NAME.json`.
fn plan_file(dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    if name.contains('/') || name.starts_with('.') {
        return Err(Error::Usage {
            message: format!("the host name `{name}` cannot name a plan file: give the host another name"),
        });
    }
    Ok(dir.join(format!("{name}.json")))
}

/// Makes `dir` for the plans of `targets`, without their older plans: a host that makes none
/// this time has none there to apply.
fn clear_plans(dir: &Path, targets: &[Target]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_owned(), source })?;
    for target in targets {
        let file = plan_file(dir, &target.name)?;
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Write { path: file, source: e });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes the plan host `name` sent back to `DIR/NAME.json`, as `plan --out` writes one.
fn save_plan(dir: &Path, name: &str, json: &str, allow_secrets: bool) -> Result<std::path::PathBuf> {
    let file = plan_file(dir, name)?;
    let saved = SavedPlan::parse(json.as_bytes(), &file)?;
    saved.write(&file, allow_secrets)?;
    Ok(file)
}

/// The hosts of `apply --plan DIR`: each gets its `DIR/HOST.json`. A host without one stops the
/// run before any host is contacted.
fn saved_plans(dir: &Path, targets: &[Target]) -> Result<Vec<Remote>> {
    let mut hosts = Vec::new();
    for target in targets {
        let file = plan_file(dir, &target.name)?;
        let bytes = std::fs::read(&file).map_err(|e| Error::PlanFile {
            message: format!("no saved plan for host {} ({}: {e})", target.name, file.display()),
            help: format!(
                "make one per host with `converge plan PLAYBOOK --host/--inventory ... --out {}`",
                dir.display()
            ),
        })?;
        let saved = SavedPlan::parse(&bytes, &file)?;
        let resources = saved.resources.len();
        hosts.push(Remote { target: target.clone(), bundle: Bundle::saved_plan(&bytes), resources });
    }
    Ok(hosts)
}

/// The hosts of `--host` and `--inventory`, narrowed by `--limit`, each once.
fn targets(args: &RemoteArgs) -> Result<Vec<Target>> {
    let inventory = args.inventory.as_deref().map(Inventory::load).transpose()?;
    let mut targets: Vec<Target> = Vec::new();
    match &inventory {
        Some(inventory) => {
            let limited = match &args.limit {
                Some(pattern) => inventory.limit(pattern)?,
                None => inventory.hosts.clone(),
            };
            if args.hosts.is_empty() {
                targets = limited.clone();
            }
            for spec in &args.hosts {
                match inventory.hosts.iter().find(|h| h.name == *spec) {
                    Some(host) if limited.contains(host) => targets.push(host.clone()),
                    Some(_) => {}
                    None => targets.push(Target::parse(spec).map_err(|message| Error::Usage { message })?),
                }
            }
        }
        None => {
            for spec in &args.hosts {
                targets.push(Target::parse(spec).map_err(|message| Error::Usage { message })?);
            }
        }
    }
    let mut seen = Vec::new();
    targets.retain(|t| {
        let new = !seen.contains(&t.name);
        seen.push(t.name.clone());
        new
    });
    if targets.is_empty() {
        return Err(Error::Usage { message: "no host to converge: --limit left none of the inventory's hosts".into() });
    }
    Ok(targets)
}

/// Resolves the playbook for each target, with its variables, and builds its bundle. Mistakes
/// are printed (each once, naming the hosts when not all of them have it); None then.
fn prepare(
    path: &Path,
    targets: &[Target],
    settings: &Settings,
    dir: &Path,
    printer: &mut Printer,
) -> Result<Option<Vec<Remote>>> {
    let playbook = Playbook::load(path)?;
    let mut user_files = Vec::new();
    for file in &settings.vars.files {
        user_files.push(crate::host::read_input(file).map_err(|source| Error::Read { path: file.clone(), source })?);
    }
    let cli_vars: serde_json::Map<String, Value> = settings
        .vars
        .vars
        .iter()
        .map(|(k, v)| {
            let value = match v.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(v.clone()),
            };
            (k.clone(), value)
        })
        .collect();
    let mut secrets_files = Vec::new();
    for file in &settings.vars.secret_files {
        secrets_files.push(std::fs::read(file).map_err(|source| Error::Read { path: file.clone(), source })?);
    }
    if !settings.vars.secret_vars.is_empty() {
        let secret_vars: serde_json::Map<String, Value> =
            settings.vars.secret_vars.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        secrets_files.push(serde_json::to_vec(&secret_vars).expect("JSON values serialize"));
    }

    let mut hosts = Vec::new();
    let mut failures: BTreeMap<String, (Error, Vec<String>)> = BTreeMap::new();
    let mut warned = false;
    for (i, target) in targets.iter().enumerate() {
        // vars files, in order of precedence: the inventory's, the user's, the --var values.
        let mut vars_files: Vec<Vec<u8>> = Vec::new();
        let mut input = settings.vars.clone();
        if !target.vars.is_empty() {
            let text = serde_json::to_vec(&target.vars).expect("JSON values serialize");
            let local = dir.join(format!("inventory-vars-{i}.yml"));
            std::fs::write(&local, &text).map_err(|source| Error::Write { path: local.clone(), source })?;
            input.files.insert(0, local);
            vars_files.push(text);
        }
        vars_files.extend(user_files.iter().cloned());
        if !cli_vars.is_empty() {
            vars_files.push(serde_json::to_vec(&cli_vars).expect("JSON values serialize"));
        }
        let (resolved, reads) = record_reads(|| resolve(&playbook, &input));
        match resolved {
            Ok(resolved) => {
                if !warned {
                    printer.warnings(&resolved.warnings);
                    warned = true;
                }
                let bundle =
                    Bundle::new(path, &playbook.source.text, &reads, vars_files)?.with_secrets(secrets_files.clone());
                hosts.push(Remote { target: target.clone(), bundle, resources: resolved.entries.len() });
            }
            Err(error) => {
                let key = format!("{error:?}");
                failures.entry(key).or_insert_with(|| (error, Vec::new())).1.push(target.name.clone());
            }
        }
    }
    if failures.is_empty() {
        return Ok(Some(hosts));
    }
    for (error, names) in failures.values() {
        printer.hosts_error(error, names, names.len() == targets.len());
    }
    Ok(None)
}

/// `converge disconnect`: closes the SSH connections that remote runs keep (`--ssh-persist`).
pub fn disconnect(printer: &mut Printer) -> Result<u8> {
    let closed = ssh::close_kept();
    printer.say(match closed {
        0 => "No SSH connection was kept open.".to_owned(),
        1 => "Closed 1 kept SSH connection.".to_owned(),
        n => format!("Closed {n} kept SSH connections."),
    });
    Ok(0)
}
