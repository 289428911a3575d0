//! `converge plan|apply PLAYBOOK --host ...` / `--inventory FILE`: targets -> resolve here, per
//! target (every mistake reported before any host is contacted) -> bundles -> the fleet
//! converges, `--forks` at a time, each host streaming its records back -> summary, exit code.
//! The machinery is in remote/.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::cli::{RemoteArgs, Settings};
use crate::engine::resolve::resolve;
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
use crate::remote::target::Target;
use crate::remote::{Fleet, PrivateDir, Remote};

/// The command given for the remote hosts, with its options: `plan` or `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteCommand {
    Plan,
    /// `lock_wait`: seconds the target's engine waits for another run's lock.
    Apply {
        check: bool,
        detailed_exitcode: bool,
        lock_wait: u64,
    },
}

pub fn run(
    path: &Path,
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
    let hosts = match prepare(path, &targets, settings, dir.path(), printer)? {
        Some(hosts) => hosts,
        None => return Ok(1),
    };
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
        ssh_config: args.ssh_config.as_deref(),
        become_root: args.become_root,
        forks: usize::from(args.forks),
        lock_wait: match command {
            RemoteCommand::Apply { lock_wait, .. } => lock_wait,
            RemoteCommand::Plan => 0,
        },
        dir: dir.path(),
    };

    let width = targets.iter().map(|t| t.name.chars().count()).max().unwrap_or(0);
    let label = |i: usize| format!("{:width$} | ", targets[i].name);
    // A spinner per host while its binary uploads (a terminal only; output::progress decides).
    let mut uploading: std::collections::HashMap<usize, crate::output::progress::Spinner> = Default::default();
    let reports = fleet.converge(|event, report| match event {
        Event::Uploading { host, bytes } => {
            let what = format!("{}: uploading converge ({:.1} MB)", targets[*host].name, *bytes as f64 / 1_000_000.0);
            uploading.insert(*host, crate::output::progress::spinner(what));
        }
        Event::Record { host, record } => printer.host_record(&label(*host), &targets[*host].name, record.clone()),
        Event::Text { host, line } => printer.host_text(&label(*host), &targets[*host].name, line),
        Event::Uploaded { host, path, bytes, untrusted } => {
            uploading.remove(host);
            printer.host_binary(&label(*host), &targets[*host].name, path, Some((*bytes, untrusted.as_deref())))
        }
        Event::Cached { host, path } => printer.host_binary(&label(*host), &targets[*host].name, path, None),
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
    if statuses.iter().any(|s| matches!(s, Status::Failed(_))) {
        return Ok(1);
    }
    let pending = statuses.contains(&Status::Pending);
    let changed = statuses.contains(&Status::Changed);
    Ok(match command {
        RemoteCommand::Plan | RemoteCommand::Apply { check: true, .. } => u8::from(pending) * 2,
        RemoteCommand::Apply { check: false, detailed_exitcode, .. } => u8::from(detailed_exitcode && changed) * 2,
    })
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
