//! `converge rollback [--to N] [--check]` and `converge history` (runs.rs).

use crate::cli::Settings;
use crate::engine::lock::lock;
use crate::engine::record::{
    HistoryEntry, NotRestored, PlannedTrigger, Record, Restore, RollbackDone, RollbackPlan, RunRecord,
};
use crate::engine::runs::{self, Recorder, describe};
use crate::engine::trigger::Trigger;
use crate::engine::{journal, rollback};
use crate::error::{Error, Result};
use crate::output::Printer;

/// Restores what the last run (or runs N.. to the last) changed; itself a run. Exit 0, or 2 with
/// `--check` when something would be restored.
pub fn run(to: Option<u64>, check: bool, keep_runs: usize, settings: &Settings, printer: &mut Printer) -> Result<u8> {
    let host = super::host(settings);
    let _lock = if check { None } else { Some(lock(&host, std::time::Duration::ZERO)?) };
    let all = runs::load_all(&host)?;
    let undone = runs_to_undo(&all, to)?;
    let steps = runs::restore_plan(&host, &undone)?;
    // Its triggers, by the rules of an apply, with what an interrupted run left (rule 8).
    let (mut pending, removed) = rollback::pending(&steps);
    pending.merge(&journal::load(&host)?);
    let triggers = crate::engine::plan::decide_without_playbook(&pending, &removed, &host)?;
    show_plan(&host, &undone, &steps, &triggers, printer);
    if check {
        return Ok(if steps.is_empty() { 0 } else { 2 });
    }
    crate::engine::stop::catch();
    // The state now of what is put back, so that the rollback can itself be rolled back.
    let mut recorder = Recorder::default();
    recorder.capture_restored(&host, &steps)?;
    let systemd = host.systemd()?;
    let mut journal = journal::Kept::new(&host, systemd.is_some());
    journal.save(&pending)?;
    let restored = restore_all(&host, &steps).and_then(|()| rollback::test_nginx(&host, &steps, &mut recorder));
    // Recorded even when it failed half way, as an apply is: what it did can be rolled back.
    let numbers: Vec<u64> = undone.iter().map(|r| r.number).collect();
    let label = format!("rollback of run {}", list(&numbers));
    let number = runs::record(&host, "rollback", &label, &[], recorder, numbers, keep_runs)?;
    restored?;
    // Decided again with what systemd reports now, as an apply does after its changes.
    let triggers = crate::engine::plan::decide_without_playbook(&pending, &removed, &host)?;
    let ran = match systemd {
        Some(systemd) => {
            let settle = |_: &str| crate::host::systemd::DEFAULT_SETTLE;
            crate::engine::apply::run_triggers(&triggers, systemd, &settle, &host, printer)?
        }
        None => {
            printer.triggers_skipped(&triggers, crate::engine::plan::OFFLINE_ROOT);
            0
        }
    };
    // A rollback runs no command: those an interrupted run owes stay owed.
    let owed = std::mem::take(&mut pending.commands);
    journal.save(&journal::Pending { commands: owed, ..journal::Pending::default() })?;
    let number = number.map(|n| format!(" (recorded as run {n})")).unwrap_or_default();
    let ran = if ran > 0 { format!(", {ran} triggers ran") } else { String::new() };
    printer.say(format!("Rollback complete: {} paths restored{ran}{number}.", steps.len()));
    printer.record(Record::Rollback(RollbackDone { restored: steps.len() }));
    Ok(0)
}

/// The runs a rollback undoes, newest first: the last, or `to` and every one after it. A run
/// this converge cannot read is never skipped over: rolling back past it is refused.
fn runs_to_undo(recorded: &runs::Recorded, to: Option<u64>) -> Result<Vec<&runs::Run>> {
    let from = to.unwrap_or(recorded.next_number().saturating_sub(1));
    if let Some(unreadable) = recorded.unreadable.iter().find(|u| u.number >= from) {
        return Err(Error::Usage {
            message: format!(
                "run {} cannot be rolled back by this converge: {} (roll it back with the converge that recorded it)",
                unreadable.number, unreadable.reason
            ),
        });
    }
    let all = &recorded.runs;
    let Some(last) = all.last() else {
        return Err(Error::Usage { message: "no run is recorded here: nothing to roll back".into() });
    };
    let from = to.unwrap_or(last.number);
    if !all.iter().any(|r| r.number == from) {
        let kept: Vec<String> = all.iter().map(|r| r.number.to_string()).collect();
        return Err(Error::Usage {
            message: format!("there is no run {from} (the runs kept are {}; see `converge history`)", kept.join(", ")),
        });
    }
    Ok(all.iter().rev().filter(|r| r.number >= from).collect())
}

/// "3, 2": run numbers as a rollback names them.
fn list(numbers: &[u64]) -> String {
    numbers.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// The rollback's plan: each path and what it goes back to, what is not restored, the triggers.
fn show_plan(
    host: &crate::host::Host,
    undone: &[&runs::Run],
    steps: &[runs::Restore],
    triggers: &[Trigger],
    printer: &mut Printer,
) {
    let numbers: Vec<u64> = undone.iter().map(|r| r.number).collect();
    printer.say(format!("converge rollback will undo run {}:", list(&numbers)));
    printer.say("");
    for step in steps {
        let verb = match (&step.now, &step.to) {
            (runs::Before::Absent, _) => "+",
            (_, runs::Before::Absent) => "-",
            _ => "~",
        };
        printer.say(format!("  {verb} {} ({} -> {})", host.shown(&step.path), describe(&step.now), describe(&step.to)));
        printer.record(Record::Restore(Restore {
            path: step.path.clone(),
            from: describe(&step.now),
            to: describe(&step.to),
        }));
    }
    let not_restored: Vec<_> = undone.iter().flat_map(|r| r.not_restored.iter()).collect();
    for (id, reason) in &not_restored {
        printer.say(format!("  ! {id} (not restored: {reason})"));
        printer.record(Record::NotRestored(NotRestored { id: id.clone(), reason: reason.clone() }));
    }
    printer.say("");
    let skipped = host.root().map(|_| crate::engine::plan::OFFLINE_ROOT.to_owned());
    if !triggers.is_empty() {
        printer.say("Triggers, in order:");
        for trigger in triggers {
            let why = skipped.as_ref().map(|why| format!(": skipped ({why})")).unwrap_or_default();
            printer.say(format!("  {trigger}   ({}){why}", trigger.reason));
            printer.record(Record::Trigger(PlannedTrigger { trigger: trigger.clone(), skipped: skipped.clone() }));
        }
        printer.say("");
    }
    printer.say(format!(
        "Rollback: {} paths to restore; {} not restored; {} triggers.",
        steps.len(),
        not_restored.len(),
        triggers.len()
    ));
    printer.record(Record::RollbackPlan(RollbackPlan {
        runs: numbers,
        restore: steps.len(),
        not_restored: not_restored.len(),
    }));
}

/// Puts every path back, in the plan's order; a signal stops it between two paths.
fn restore_all(host: &crate::host::Host, steps: &[runs::Restore]) -> Result<()> {
    for step in steps {
        Error::check_stop()?;
        runs::restore(host, step)?;
    }
    Ok(())
}

/// Lists the recorded runs, oldest first.
pub fn history(settings: &Settings, printer: &mut Printer) -> Result<u8> {
    let host = super::host(settings);
    let recorded = runs::load_all(&host)?;
    let all = recorded.runs;
    if all.is_empty() && recorded.unreadable.is_empty() {
        printer.say("No runs recorded.");
    }
    for unreadable in &recorded.unreadable {
        printer.say(format!("{:>4}  cannot be read: {}", unreadable.number, unreadable.reason));
        let (number, unreadable) = (unreadable.number, unreadable.reason.clone());
        printer.record(Record::Run(HistoryEntry::Unreadable { number, unreadable }));
    }
    for run in &all {
        let rolled = match run.rolled_back_by {
            Some(n) => format!("  rolled back by run {n}"),
            None => String::new(),
        };
        printer.say(format!(
            "{:>4}  {}  {:<8}  {}  {}  +{} ~{} -{} >{}{rolled}",
            run.number, run.time, run.kind, run.playbook, run.host, run.create, run.update, run.remove, run.run
        ));
        printer.record(Record::Run(HistoryEntry::Recorded(RunRecord {
            number: run.number,
            time: run.time,
            kind: run.kind.clone(),
            playbook: run.playbook.clone(),
            host: run.host.clone(),
            create: run.create,
            update: run.update,
            remove: run.remove,
            run: run.run,
            paths: run.before.len(),
            rolled_back_by: run.rolled_back_by,
            rollback_of: run.rollback_of.clone(),
        })));
    }
    Ok(0)
}
