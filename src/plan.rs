//! `plan`: observe every resource (read-only) and diff it. Nothing is written.
//!
//! The plan is honest about what earlier resources will do: a file owned by a user that an
//! earlier `user` resource creates plans as "owner vagrant (created above)", not as an error,
//! while an owner that exists nowhere is an error before anything is applied.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::resolve::Resolved;
use crate::resource::{Change, ResourceId};
use crate::resources::AnyResource;
use crate::trigger::{self, Trigger};

/// What `apply` would do: the resources that differ, and the triggers they set off.
#[derive(Debug, Default)]
pub struct Plan {
    pub resources: Vec<ResourcePlan>,
    pub triggers: Vec<Trigger>,
    /// The resources that already match, for `-v`.
    pub unchanged: Vec<ResourceId>,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
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
        let mut counts = Counts::default();
        for r in &self.resources {
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
    let mut plan = Plan::default();
    // What earlier resources create, by id, for "(created above)" and missing owners.
    let mut created: HashMap<&ResourceId, bool> = HashMap::new();
    let mut created_dirs: Vec<&Path> = Vec::new();
    for (index, entry) in resolved.entries.iter().enumerate() {
        let changes = entry.resource.plan(host)?;
        if let Some(parent) = entry.resource.parent_needed().filter(|_| !changes.is_empty()) {
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
        if let (AnyResource::Directory(dir), true) = (&entry.resource, changes.contains(&Change::Create)) {
            created_dirs.push(&dir.path);
        }
        let mut created_above = Vec::new();
        for need in entry.resource.needs() {
            match created.get(&need) {
                Some(true) => created_above.push(need),
                Some(false) => {}
                None if exists(host, &need)? => {}
                None => {
                    let (kind, name) = need.0.split_once(':').unwrap_or(("", &need.0));
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
    plan.triggers =
        trigger::collect(plan.resources.iter().map(|r| (&r.id, resolved.entries[r.index].notify.as_slice())));
    Ok(plan)
}

fn exists(host: &Host, id: &ResourceId) -> Result<bool> {
    let io = |e| Error::resource_io(id, "cannot look it up", e);
    Ok(match id.0.split_once(':') {
        Some(("user", name)) => host.user(name).map_err(io)?.is_some(),
        Some(("group", name)) => host.group(name).map_err(io)?.is_some(),
        _ => true,
    })
}
