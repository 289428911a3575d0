//! `plan`: observe every resource (read-only) and diff it. Nothing is written.
//!
//! The plan is honest about what earlier resources will do: a file owned by a user that an
//! earlier `user` resource creates plans as "owner vagrant (created above)", not as an error,
//! while an owner that exists nowhere is an error before anything is applied.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::engine::journal::{self, Pending};
use crate::engine::on_change::{self, Gate};
use crate::engine::resolve::{Entry, Resolved};
use crate::engine::trigger::{self, Observed, Request, Trigger, UnitFacts};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::host::systemd::JobAction;
use crate::host::systemd::UnitStatus;
use crate::kinds::AnyResource;
use crate::kinds::Unit;
use crate::kinds::notify::Notify;
use crate::kinds::resource::{Attr, Change, Need, PackageTo, Provide, ResourceId, Value};
use crate::kinds::unit::observed_state;

/// What `apply` would do: the resources that differ, and the triggers they set off.
#[derive(Debug, Default)]
pub struct Plan {
    pub resources: Vec<ResourcePlan>,
    pub triggers: Vec<Trigger>,
    /// The resources that already match, for `-v`.
    pub unchanged: Vec<ResourceId>,
    /// What the triggers are decided from, for the journal: this run's and an interrupted one's.
    pub pending: Pending,
    /// What an interrupted run left pending, as the journal held it before this run.
    pub interrupted: Pending,
    /// Unit state could not be read: no system bus and no offline root.
    pub units_unobserved: bool,
    /// Resources a `when:` left out, and the expression, for `-v`.
    pub skipped: Vec<(String, String)>,
    /// Why the triggers will not run (an offline root has no service manager), as apply says.
    pub triggers_skipped: Option<&'static str>,
    /// What the plan of a resource took from the packages an earlier `apt` resource installs,
    /// or why it could not know (docs/first-run.md).
    pub foresight: HashMap<ResourceId, Vec<Foresight>>,
}

/// What the plan of a resource took from the packages that an earlier `apt` resource of the
/// plan installs, or why it cannot know what they bring.
#[derive(Debug, Clone, PartialEq)]
pub enum Foresight {
    /// It found a path that a package brings.
    Saw { path: PathBuf, origin: String },
    /// What an earlier install brings could not be foreseen.
    Unknown { why: String },
    /// What it installs comes from the lists of these repositories, which an `apt_repository`
    /// above changes: apply fetches them first, so the plan cannot know what they offer.
    Unfetched { repositories: Vec<String> },
}

impl std::fmt::Display for Foresight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Foresight::Saw { path, origin } => {
                write!(f, "finds {}, from {origin}, installed above", path.display())
            }
            Foresight::Unknown { why } => write!(f, "depends on what apt installs: {why}"),
            Foresight::Unfetched { repositories } => {
                let noun = if repositories.len() == 1 { "repository" } else { "repositories" };
                write!(f, "depends on the lists of {noun} {}, not fetched yet", repositories.join(", "))
            }
        }
    }
}

/// What the installs of the plan bring, laid over the host for the resources after them and
/// lifted when the plan is done (or fails), so that apply reads the host as it is; or which
/// packages could not be foreseen, and why.
struct Installs<'h> {
    host: &'h Host,
    unforeseen: Option<(Vec<String>, String)>,
    /// The repositories whose sources the plan changes above: their lists are not fetched yet.
    unfetched: Vec<String>,
}

impl<'h> Installs<'h> {
    fn new(host: &'h Host) -> Installs<'h> {
        Installs { host, unforeseen: None, unfetched: Vec::new() }
    }

    /// Foresees what `changes` (of `resource`) install afresh; what the resource's own plan
    /// must say of it, when the lists it installs from are not fetched yet.
    fn foresee(&mut self, resource: &AnyResource, changes: &[Change]) -> Option<Foresight> {
        if let AnyResource::AptRepository(repository) = resource
            && repository.stanza.as_ref().is_some_and(|s| s.enabled)
            && changes.iter().any(|c| matches!(c, Change::Content { .. }))
        {
            self.unfetched.push(repository.name.clone());
        }
        let fresh = fresh_installs(changes);
        if fresh.is_empty() {
            return None;
        }
        if !self.unfetched.is_empty() {
            // apt-get install -s would read the lists as they are, without the new sources.
            let why = format!("the lists of repository {} are not fetched yet", self.unfetched.join(", "));
            self.unforeseen.get_or_insert_with(|| (Vec::new(), why)).0.extend(fresh);
            return Some(Foresight::Unfetched { repositories: self.unfetched.clone() });
        }
        match crate::kinds::apt::forecast::forecast(self.host, &fresh) {
            Ok(forecast) => self.host.foresee(forecast),
            Err(why) => self.unforeseen.get_or_insert_with(|| (Vec::new(), why)).0.extend(fresh),
        }
        None
    }

    /// Forgets what was read so far: the next resource's plan starts.
    fn start(&self) {
        self.host.foreseen_reads();
    }

    /// What the plan of `resource` took from the forecast since [`Installs::start`], and that
    /// it depends on a package whose install could not be foreseen.
    fn foresight(&self, resource: &AnyResource) -> Vec<Foresight> {
        let reads = self.host.foreseen_reads().into_iter();
        let mut foresight: Vec<Foresight> = reads.map(|(path, origin)| Foresight::Saw { path, origin }).collect();
        if let Some((_, why)) = self.unforeseen.as_ref().filter(|(packages, _)| needs_one_of(resource, packages)) {
            foresight.push(Foresight::Unknown { why: why.clone() });
        }
        foresight
    }

    /// Why some install could not be foreseen.
    fn why(&self) -> Option<&str> {
        self.unforeseen.as_ref().map(|(_, why)| why.as_str())
    }
}

impl Drop for Installs<'_> {
    fn drop(&mut self) {
        self.host.forget_forecast();
    }
}

/// Why apply skips the triggers under `--root`.
pub const OFFLINE_ROOT: &str = "offline root: no service manager to run it";

/// One resource that differs from the playbook.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePlan {
    /// Its index in `Resolved::entries`.
    pub index: usize,
    pub id: ResourceId,
    pub changes: Vec<Change>,
    pub sensitive: bool,
    /// The users and groups it needs that an earlier resource of this run creates, so that the
    /// plan can say "owner vagrant (created above)".
    pub created_above: Vec<ResourceId>,
}

/// What a plan line does to its resource, as Terraform names its actions (`+ file:/x (create)`).
/// A job systemd runs on a unit is a [`crate::host::systemd::JobAction`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Remove,
    Run,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Remove => "remove",
            Action::Run => "run",
        }
    }
}

impl ResourcePlan {
    pub fn action(&self) -> Action {
        if self.changes.contains(&Change::Create) {
            Action::Create
        } else if self.changes.contains(&Change::Remove) {
            Action::Remove
        } else if self.changes.iter().any(|c| matches!(c, Change::Run { .. })) {
            Action::Run
        } else {
            Action::Update
        }
    }
}

/// How many resources each action touches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub remove: usize,
    pub run: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.triggers.is_empty()
    }

    pub fn counts(&self) -> Counts {
        Counts::of(&self.resources)
    }
}

impl Counts {
    /// How many of `resources` each action touches.
    pub fn of(resources: &[ResourcePlan]) -> Counts {
        let mut counts = Counts::default();
        for r in resources {
            match r.action() {
                Action::Create => counts.create += 1,
                Action::Update => counts.update += 1,
                Action::Remove => counts.remove += 1,
                Action::Run => counts.run += 1,
            }
        }
        counts
    }
}

pub fn plan(resolved: &Resolved, host: &Host) -> Result<Plan> {
    let mut plan = Plan { skipped: resolved.skipped.clone(), ..Plan::default() };
    // One concurrent read of every unit the run may touch, instead of one round trip each.
    let mut unit_names: Vec<String> = resolved
        .entries
        .iter()
        .flat_map(|e| e.notify.iter().cloned().chain(e.resource.implicit_notify()).map(|n| n.unit))
        .collect();
    unit_names.extend(resolved.entries.iter().filter_map(|e| match &e.resource {
        AnyResource::Unit(u) => Some(u.name.clone()),
        _ => None,
    }));
    if !unit_names.is_empty() {
        host.observe_units(&unit_names)?;
        plan.units_unobserved = host.root().is_none() && host.systemd()?.is_none();
    }
    // What earlier resources create, by id, for "(created above)" and missing owners.
    let mut created: HashMap<&ResourceId, bool> = HashMap::new();
    let mut created_dirs: Vec<PathBuf> = Vec::new();
    // Packages an earlier `apt` resource of the plan installs: a later one naming them too (a
    // module's `apt: nginx` and the playbook's) finds them installed when apply reaches it.
    let mut installing: Vec<String> = Vec::new();
    // What those installs bring is laid over the host for the resources after them; or why not.
    let mut installs = Installs::new(host);
    // An `on_change:` command owed by a run that did not finish runs in this one.
    plan.interrupted = journal::load(host)?;
    for (index, entry) in resolved.entries.iter().enumerate() {
        installs.start();
        let mut changes = planned_changes(entry, &plan, host)?;
        if changes.iter().any(|c| c.sets(Attr::Package)) {
            changes = merge_installs(changes, &mut installing);
        }
        let mut foresight = installs.foresight(&entry.resource);
        foresight.extend(installs.foresee(&entry.resource, &changes));
        check_may_give(host, &entry.id, &changes)?;
        let needs = entry.resource.needs();
        for need in &needs {
            let Need::Directory(parent) = need else { continue };
            if changes.is_empty() {
                break;
            }
            let made_above = created_dirs.iter().any(|d| d.starts_with(parent));
            let exists =
                host.stat(parent).map_err(|e| Error::resource_io(&entry.id, "cannot read its directory", e))?.is_some();
            if !made_above && !exists {
                return Err(Error::resource(
                    &entry.id,
                    format!(
                        "its directory {} does not exist, and no `directory:` resource before it creates it",
                        parent.display()
                    ),
                ));
            }
        }
        if changes.contains(&Change::Create) {
            for provided in entry.resource.provides() {
                if let Provide::Directory(path) = provided {
                    created_dirs.push(path);
                }
            }
        }
        let mut created_above = Vec::new();
        for need in &needs {
            let Some(id) = need.id() else { continue };
            match created.get(&id) {
                Some(true) => created_above.push(id),
                Some(false) => {}
                None if exists(host, need, &id)? => {}
                None => {
                    let (kind, name) = (id.kind, &id.name);
                    return Err(Error::resource(
                        &entry.id,
                        format!(
                            "{kind} `{name}` does not exist on the host, and no `{kind}: {name}` resource of this playbook creates it"
                        ),
                    ));
                }
            }
        }
        created.insert(&entry.id, changes.contains(&Change::Create));
        if !foresight.is_empty() && !changes.is_empty() {
            plan.foresight.insert(entry.id.clone(), foresight);
        }
        if changes.is_empty() {
            plan.unchanged.push(entry.id.clone());
        } else {
            plan.resources.push(ResourcePlan {
                index,
                id: entry.id.clone(),
                changes,
                sensitive: entry.sensitive,
                created_above,
            });
        }
    }
    (plan.pending, plan.triggers) = triggers_after(resolved, &plan.resources, &plan.interrupted, host)?;
    plan.triggers_skipped = host.root().map(|_| OFFLINE_ROOT);
    for trigger in &mut plan.triggers {
        if let Some(note) = trigger.unit.as_deref().map(|u| foreseen_unit(resolved, host, u, installs.why())) {
            trigger.reason += &note?;
        }
    }
    Ok(plan)
}

/// What differs of `entry` on the host; for an `on_change:` command, only when what it names
/// changes in the plan (and its guards agree), which its reason says.
fn planned_changes(entry: &Entry, plan: &Plan, host: &Host) -> Result<Vec<Change>> {
    let unsure = |id: &ResourceId| {
        plan.foresight.get(id).is_some_and(|seen| seen.iter().any(|f| matches!(f, Foresight::Unknown { .. })))
    };
    let changed = |id: &ResourceId| plan.resources.iter().any(|r| r.id == *id).then(|| !unsure(id));
    let observed = || entry.resource.plan(host).map_err(|e| entry.own_error(e));
    Ok(match on_change::gate(entry, changed, &plan.interrupted) {
        Gate::Free => observed()?,
        Gate::Quiet => Vec::new(),
        Gate::Fires(cause) => on_change::run_because(observed()?, &cause.reason()),
    })
}

/// What a trigger on `unit` owes to a package of the plan: the unit comes with it (and its
/// postinst starts it or not), or it is not there yet and the install could not be foreseen.
fn foreseen_unit(resolved: &Resolved, host: &Host, unit: &str, unforeseen: Option<&str>) -> Result<String> {
    if let Some(foreseen) = host.foreseen_unit(unit) {
        return Ok(format!("; {unit} comes with package {}, installed above: {}", foreseen.package, foreseen.why));
    }
    let managed = resolved.entries.iter().any(|e| matches!(&e.resource, AnyResource::Unit(u) if u.name == unit));
    let Some(why) = unforeseen.filter(|_| !managed) else { return Ok(String::new()) };
    Ok(match host.unit_status(unit)?.is_some_and(|s| s.load_state == "not-found") {
        true => format!(
            "; depends on what apt installs: {unit} is not there yet, and a package that starts it makes this a \
             reload or nothing ({why})"
        ),
        false => String::new(),
    })
}

/// Whether `resource` needs one of `packages` (names, or `name=version`).
fn needs_one_of(resource: &AnyResource, packages: &[String]) -> bool {
    let named = |name: &str| packages.iter().any(|p| p.split('=').next() == Some(name));
    resource.needs().iter().any(|need| matches!(need, Need::Package(names) if names.iter().any(|n| named(n))))
}

/// The packages that `changes` install afresh (`name`, or `name=version` when pinned).
fn fresh_installs(changes: &[Change]) -> Vec<String> {
    let fresh = |change: &Change| match change {
        Change::Set { attr: Attr::Package, from: None, to: Value::Package { name, to } } => match to {
            PackageTo::Install => Some(name.clone()),
            PackageTo::Version(version) => Some(format!("{name}={version}")),
            PackageTo::Remove => None,
        },
        _ => None,
    };
    changes.iter().filter_map(fresh).collect()
}

/// The package a change installs (at the candidate version), if it does.
fn installed_package(change: &Change) -> Option<String> {
    match change {
        Change::Set { attr: Attr::Package, from: None, to: Value::Package { name, to: PackageTo::Install } } => {
            Some(name.clone())
        }
        _ => None,
    }
}

/// An `apt` resource's changes without the installs an earlier resource already plans; records
/// its own installs in `installing`.
fn merge_installs(changes: Vec<Change>, installing: &mut Vec<String>) -> Vec<Change> {
    let package = installed_package;
    let mut kept: Vec<Change> =
        changes.into_iter().filter(|c| package(c).is_none_or(|p| !installing.contains(&p))).collect();
    installing.extend(kept.iter().filter_map(package));
    if !kept.iter().any(|c| package(c).is_some()) {
        kept.retain(|c| *c != Change::Create);
    }
    kept
}

/// The triggers that `changed` resources set off, with what an interrupted run left pending:
/// decided at plan time from the planned changes.
pub fn triggers(resolved: &Resolved, changed: &[ResourcePlan], host: &Host) -> Result<(Pending, Vec<Trigger>)> {
    triggers_after(resolved, changed, &journal::load(host)?, host)
}

/// [`triggers`] decided again after apply from the real changes, with what the run that was
/// `interrupted` before this one left pending (the journal holds this run's own by then).
pub fn triggers_after(
    resolved: &Resolved,
    changed: &[ResourcePlan],
    interrupted: &Pending,
    host: &Host,
) -> Result<(Pending, Vec<Trigger>)> {
    let mut pending = pending(resolved, changed);
    pending.merge(interrupted);
    let mut triggers = decide_triggers(resolved, changed, &pending, interrupted, host)?;
    for trigger in &mut triggers {
        if let Some(next) = next_elapse(resolved, trigger, host) {
            trigger.reason += &format!("; next elapse {next}");
        }
    }
    Ok((pending, triggers))
}

/// Without root, converge can give a file only to the user running it (and a group they are in):
/// a resource that asks for another owner is an error before anything is written.
fn check_may_give(host: &Host, id: &ResourceId, changes: &[Change]) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let io = |e| Error::resource_io(id, "cannot look up its owner", e);
    for change in changes {
        let (attr, name, allowed) = match change {
            Change::Set { attr: Attr::Owner, to: Value::Text(to), .. } => {
                let uid = host.user(to).map_err(io)?.map(|u| u.uid);
                ("owner", to, uid.is_some_and(|uid| host.may_give(Some(uid), None)))
            }
            Change::Set { attr: Attr::Group, to: Value::Text(to), .. } => {
                let gid = host.group(to).map_err(io)?.map(|g| g.gid);
                ("group", to, gid.is_some_and(|gid| host.may_give(None, Some(gid))))
            }
            _ => continue,
        };
        if !allowed {
            return Err(Error::resource(
                id,
                format!(
                    "changing the {attr} to `{name}` needs root (converge runs as uid {}); run it as root, or leave \
                     `{attr}:` out to try the playbook as yourself",
                    nix::unistd::geteuid()
                ),
            ));
        }
    }
    Ok(())
}

/// Whether the host has the user or group `need` names (`id`).
fn exists(host: &Host, need: &Need, id: &ResourceId) -> Result<bool> {
    let io = |e| Error::resource_io(id, "cannot look it up", e);
    Ok(match need {
        Need::User(name) => host.user(name).map_err(io)?.is_some(),
        Need::Group(name) => host.group(name).map_err(io)?.is_some(),
        Need::Inside(_) | Need::Directory(_) | Need::Package(_) | Need::AptSources | Need::Changed(_) => true,
    })
}

/// The trigger inputs of this run: units whose files change, and what changed resources ask for.
fn pending(resolved: &Resolved, changed: &[ResourcePlan]) -> Pending {
    let mut pending = Pending::default();
    for r in changed {
        let entry = &resolved.entries[r.index];
        let reason = format!("{} changed", r.id);
        for notify in own_notify(resolved, r.index) {
            pending.requests.push(Request { action: notify.action, unit: notify.unit, reason: reason.clone() });
        }
        if let AnyResource::Unit(unit) = &entry.resource
            && r.changes.iter().any(|c| matches!(c, Change::Content { .. } | Change::Create | Change::Remove))
        {
            pending.changed_units.push(unit.name.clone());
        }
    }
    let ids = |id: &ResourceId| changed.iter().any(|r| r.id == *id).then_some(true);
    for r in changed {
        let entry = &resolved.entries[r.index];
        // Owed by an interrupted run: merged in from its journal.
        if let Gate::Fires(cause @ on_change::Cause::Changed { .. }) = on_change::gate(entry, ids, &Pending::default())
        {
            pending.commands.push(cause.owed(&r.id));
        }
    }
    let changed: Vec<&ResourceId> = changed.iter().map(|r| &r.id).collect();
    for entry in &resolved.entries {
        for (id, notify) in unit_triggers(entry) {
            if changed.contains(&id) {
                pending.requests.push(Request {
                    action: notify.action,
                    unit: notify.unit,
                    reason: format!("{id} changed"),
                });
            }
        }
    }
    pending
}

/// What a change of the resource at `index` asks of units (docs/triggers.md, rule 6): its
/// `notify:`, what its kind implies (a site reloads nginx), and the `restart_triggers` and
/// `reload_triggers` of units that name it. A run record keeps these, so that a rollback of the
/// change asks the same.
pub fn asks(resolved: &Resolved, index: usize) -> Vec<Notify> {
    let id = &resolved.entries[index].id;
    let named = resolved.entries.iter().flat_map(unit_triggers).filter(|(by, _)| *by == id).map(|(_, n)| n);
    own_notify(resolved, index).into_iter().chain(named).collect()
}

/// The resource's `notify:` and what its kind implies.
fn own_notify(resolved: &Resolved, index: usize) -> Vec<Notify> {
    let entry = &resolved.entries[index];
    entry.notify.iter().cloned().chain(entry.resource.implicit_notify()).collect()
}

/// A unit's `restart_triggers` and `reload_triggers`: the resource named, and the job it asks.
fn unit_triggers(entry: &crate::engine::resolve::Entry) -> Vec<(&ResourceId, Notify)> {
    let AnyResource::Unit(unit) = &entry.resource else { return Vec::new() };
    let asked = [(JobAction::Restart, &unit.restart_triggers), (JobAction::Reload, &unit.reload_triggers)];
    asked
        .into_iter()
        .flat_map(|(action, ids)| ids.iter().map(move |(id, _)| (id, Notify { action, unit: unit.name.clone() })))
        .collect()
}

/// Gathers the facts of every unit involved and asks `trigger::decide`.
fn decide_triggers(
    resolved: &Resolved,
    changed: &[ResourcePlan],
    pending: &Pending,
    interrupted: &Pending,
    host: &Host,
) -> Result<Vec<Trigger>> {
    let mut facts: Vec<UnitFacts> = Vec::new();
    for (index, entry) in resolved.entries.iter().enumerate() {
        let AnyResource::Unit(unit) = &entry.resource else { continue };
        let changes = changed.iter().find(|r| r.index == index).map(|r| r.changes.as_slice()).unwrap_or_default();
        let status = host.unit_status(&unit.name)?;
        let instances = match crate::host::unit_file::is_template(&unit.name) {
            true => host.running_instances(&unit.name)?,
            false => Vec::new(),
        };
        facts.push(UnitFacts {
            managed: true,
            instances,
            files_changed: pending.changed_units.contains(&unit.name),
            enablement_changed: changes.iter().any(|c| c.sets(Attr::Enabled) || c.sets(Attr::Masked)),
            removed: changes.contains(&Change::Remove),
            want_active: unit.active,
            on_change: unit.on_change,
            ..unit_facts(unit, status.as_ref())
        });
    }
    let mut requests = pending.requests.clone();
    for request in &mut requests {
        if interrupted.requests.contains(request) {
            request.reason += " (in a run that did not finish)";
        }
    }
    add_other_units(&mut facts, &requests, host)?;
    Ok(trigger::decide(&facts, &requests))
}

/// The triggers of changes made without a playbook (a rollback, engine/rollback.rs): the units
/// whose files changed (`removed`: their unit file is gone) and the requests, decided by the same
/// rules as an apply's with what systemd reports of each unit. What the playbook said of a unit
/// (`on_change:`, `active:`) is not known here: a changed active unit is restarted.
pub fn decide_without_playbook(pending: &Pending, removed: &[String], host: &Host) -> Result<Vec<Trigger>> {
    let names: Vec<String> =
        pending.changed_units.iter().chain(pending.requests.iter().map(|r| &r.unit)).cloned().collect();
    host.observe_units(&names)?;
    let mut facts = Vec::new();
    for name in &pending.changed_units {
        let status = host.unit_status(name)?;
        let instances = match crate::host::unit_file::is_template(name) {
            true => host.running_instances(name)?,
            false => Vec::new(),
        };
        let unit = Unit { name: name.clone(), ..Unit::unmanaged() };
        facts.push(UnitFacts {
            managed: true,
            files_changed: true,
            removed: removed.contains(name),
            instances,
            ..unit_facts(&unit, status.as_ref())
        });
    }
    add_other_units(&mut facts, &pending.requests, host)?;
    Ok(trigger::decide(&facts, &pending.requests))
}

/// Adds the facts of the units the decision needs beyond those of `facts`: the running
/// instances of templates (which a template's change restarts) and the units `requests` name.
fn add_other_units(facts: &mut Vec<UnitFacts>, requests: &[Request], host: &Host) -> Result<()> {
    let instances: Vec<String> = facts.iter().flat_map(|f| f.instances.clone()).collect();
    for name in instances.into_iter().chain(requests.iter().map(|r| r.unit.clone())) {
        if !facts.iter().any(|f| f.name == name) {
            let status = host.unit_status(&name)?;
            let unmanaged = Unit { name, ..Unit::unmanaged() };
            facts.push(unit_facts(&unmanaged, status.as_ref()));
        }
    }
    Ok(())
}

/// When a timer that this trigger starts or restarts will elapse next, as systemd computes it
/// (`systemd-analyze calendar`) from the timer's `OnCalendar=` as it will be. None for other
/// triggers, and where it cannot be known (no OnCalendar=, only OnBootSec= and the like, or no
/// systemd-analyze).
fn next_elapse(resolved: &Resolved, trigger: &Trigger, host: &Host) -> Option<String> {
    let unit = trigger.unit.as_deref().filter(|u| u.ends_with(".timer"))?;
    if !matches!(trigger.step, trigger::Step::Start | trigger::Step::Restart) {
        return None;
    }
    let timer = resolved.entries.iter().find_map(|e| match &e.resource {
        AnyResource::Unit(u) if u.name == unit => u.parsed(),
        _ => None,
    })?;
    let calendars = timer.list("Timer", "OnCalendar");
    if calendars.is_empty() {
        return None;
    }
    let mut argv = vec!["systemd-analyze".to_string(), "calendar".to_string()];
    argv.extend(calendars);
    let output = host.program(&argv).env("LC_ALL", "C").command().output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let nexts: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("Next elapse:")).map(str::trim).collect();
    (!nexts.is_empty()).then(|| nexts.join(", "))
}

/// What a unit's file (as it will be) and systemd's status say, for the decision.
fn unit_facts(unit: &Unit, status: Option<&UnitStatus>) -> UnitFacts {
    let parsed = unit.parsed();
    let (runtime_dirs, runtime_preserve) = match (&parsed, status) {
        (Some(file), _) => file.runtime_directories(),
        (None, Some(s)) => (
            s.runtime_directory.iter().map(|d| format!("/run/{d}")).collect(),
            matches!(s.runtime_directory_preserve.as_str(), "yes" | "restart"),
        ),
        (None, None) => (Vec::new(), false),
    };
    let listen_paths = match (&parsed, status) {
        (Some(file), _) => file.listen_paths(),
        (None, Some(s)) => s.listen.iter().map(|(_, a)| a.clone()).filter(|a| a.starts_with('/')).collect(),
        (None, None) => Vec::new(),
    };
    UnitFacts {
        name: unit.name.clone(),
        observed: status.map(|s| Observed {
            active: observed_state(s).2,
            need_daemon_reload: s.need_daemon_reload,
            triggers: s.triggers.clone(),
            can_reload: s.can_reload,
        }),
        listen_paths,
        runtime_dirs,
        runtime_preserve,
        sockets: parsed.as_ref().map(|f| f.list("Service", "Sockets")).unwrap_or_default(),
        ..UnitFacts::default()
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    fn install(package: &str) -> Change {
        Change::set_to(Attr::Package, Value::Package { name: package.into(), to: PackageTo::Install })
    }

    #[test]
    fn a_package_installed_above_is_one_install() {
        let mut installing = Vec::new();
        let first = merge_installs(vec![Change::Create, install("nginx")], &mut installing);
        assert_eq!(first, vec![Change::Create, install("nginx")]);
        assert_eq!(merge_installs(vec![Change::Create, install("nginx")], &mut installing), vec![]);
        let both = merge_installs(vec![Change::Create, install("nginx"), install("curl")], &mut installing);
        assert_eq!(both, vec![Change::Create, install("curl")]);
    }
}
