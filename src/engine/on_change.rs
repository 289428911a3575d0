//! `on_change:` commands (docs/triggers.md, "Commands on a change"): a `command` that names
//! resources of the playbook runs only in a run that changed one of them (Puppet's
//! `refreshonly`, an Ansible handler that is not a service), after them (an ordering edge:
//! `Need::Changed`), once however many changed. Its guards (`creates`, `unless`, `onlyif`) are
//! asked only when one changed, and must still say it is needed. The plan decides it from the
//! planned changes, apply again from the real ones; the journal (engine/journal.rs) holds it from
//! before the first change is applied until it ran, so that a run that stops in between hands it
//! to the next one.

use crate::engine::journal::{Owed, Pending};
use crate::engine::resolve::{Entry, Resolved};
use crate::kinds::AnyResource;
use crate::kinds::resource::{Change, ResourceId};

/// What `on_change:` says of an entry.
pub enum Gate<'a> {
    /// It has no `on_change:`: its guards alone decide.
    Free,
    /// Nothing it names changed: it does not run, and its guards are not asked.
    Quiet,
    /// It runs (if its guards agree), because of this.
    Fires(Cause<'a>),
}

/// Why an `on_change:` command runs.
pub enum Cause<'a> {
    /// These resources it names change in this run; `sure` unless each of them changes only
    /// as far as the plan can foresee what apt installs.
    Changed { ids: Vec<&'a ResourceId>, sure: bool },
    /// A run that did not finish owes it.
    Interrupted(&'a Owed),
}

/// What `on_change:` says of `entry`, with what the `interrupted` run owes and `changed`, which
/// tells whether a resource changed so far in this run (Some), and whether that is certain.
pub fn gate<'a>(entry: &'a Entry, changed: impl Fn(&ResourceId) -> Option<bool>, interrupted: &'a Pending) -> Gate<'a> {
    let AnyResource::Command(command) = &entry.resource else { return Gate::Free };
    if command.on_change.is_empty() {
        return Gate::Free;
    }
    let named: Vec<(&ResourceId, bool)> =
        command.on_change.iter().filter_map(|(id, _)| changed(id).map(|sure| (id, sure))).collect();
    if !named.is_empty() {
        let sure = named.iter().any(|(_, sure)| *sure);
        return Gate::Fires(Cause::Changed { ids: named.into_iter().map(|(id, _)| id).collect(), sure });
    }
    match interrupted.owes(&entry.id) {
        Some(owed) => Gate::Fires(Cause::Interrupted(owed)),
        None => Gate::Quiet,
    }
}

impl Cause<'_> {
    /// Why it runs, as the plan and apply say it: "because file:/x changes", or "if file:/x
    /// changes" when the plan cannot be sure.
    pub fn reason(&self) -> String {
        match self {
            Cause::Changed { ids, sure } => {
                let verb = if ids.len() == 1 { "changes" } else { "change" };
                let word = if *sure { "because" } else { "if" };
                format!("{word} {} {verb}", names(ids))
            }
            Cause::Interrupted(owed) => format!("because {} (in a run that did not finish)", owed.reason),
        }
    }

    /// What the journal keeps of it.
    pub fn owed(&self, command: &ResourceId) -> Owed {
        let reason = match self {
            Cause::Changed { ids, .. } => format!("{} changed", names(ids)),
            Cause::Interrupted(owed) => owed.reason.clone(),
        };
        Owed { command: command.clone(), reason }
    }
}

fn names(ids: &[&ResourceId]) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// A command's changes with `reason` in front of what its guard said (a command with no guard
/// runs for `reason` alone).
pub fn run_because(changes: Vec<Change>, reason: &str) -> Vec<Change> {
    let because = |guard: String| match guard.as_str() {
        "no guard" => reason.to_owned(),
        _ => format!("{reason}; {guard}"),
    };
    changes
        .into_iter()
        .map(|change| match change {
            Change::Run { reason: guard } => Change::Run { reason: because(guard) },
            other => other,
        })
        .collect()
}

/// What the `interrupted` run owes to commands this playbook does not have: kept in the
/// journal for the playbook that has them.
pub fn owed_elsewhere(resolved: &Resolved, interrupted: &Pending) -> Vec<Owed> {
    let here = |owed: &&Owed| resolved.entries.iter().any(|e| e.id == owed.command);
    interrupted.commands.iter().filter(|owed| !here(owed)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kind;

    #[test]
    fn the_reason_says_what_changed_and_how_sure_the_plan_is() {
        let (a, b) = (ResourceId::new(Kind::File, "/a"), ResourceId::new(Kind::File, "/b"));
        let one = Cause::Changed { ids: vec![&a], sure: true };
        assert_eq!(one.reason(), "because file:/a changes");
        let unsure = Cause::Changed { ids: vec![&a, &b], sure: false };
        assert_eq!(unsure.reason(), "if file:/a, file:/b change");
        assert_eq!(unsure.owed(&a).reason, "file:/a, file:/b changed");
        let owed = Owed { command: a.clone(), reason: "file:/b changed".into() };
        assert_eq!(Cause::Interrupted(&owed).reason(), "because file:/b changed (in a run that did not finish)");
    }

    #[test]
    fn the_guard_says_its_part_after_the_change() {
        let run = |reason: &str| vec![Change::Run { reason: reason.into() }];
        assert_eq!(run_because(run("no guard"), "because file:/a changed"), run("because file:/a changed"));
        assert_eq!(
            run_because(run("`test -e /x` exited 1"), "because file:/a changed"),
            run("because file:/a changed; `test -e /x` exited 1")
        );
        assert_eq!(run_because(vec![], "because file:/a changed"), vec![]);
    }
}
