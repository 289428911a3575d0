//! The pending-trigger journal (docs/triggers.md, rule 8 and "The journal"): before anything is
//! applied, the run writes what its changes will trigger to
//! `/var/lib/converge/pending-triggers.json`, and clears it once the triggers ran. A run that
//! fails or is killed half way leaves it behind, and the next run fires those triggers even
//! though the files no longer differ (Ansible loses these handlers). It also holds the
//! `on_change:` commands the run owes (docs/triggers.md, "Commands on a change"), each taken out
//! as soon as it ran; those are kept under `--root` too (inside the root), since commands run there.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::trigger::Request;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::host::mode::Mode;
use crate::kinds::resource::ResourceId;

pub const PATH: &str = "/var/lib/converge/pending-triggers.json";

/// What a run's changes trigger: the inputs of the decision, not its outcome, so that the next
/// run decides again with what systemd then reports.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// Units whose files changed.
    pub changed_units: Vec<String>,
    /// Triggers asked for by changed resources.
    pub requests: Vec<Request>,
    /// `on_change:` commands that a change of the run makes run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Owed>,
}

/// An `on_change:` command owed, and the change that makes it run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owed {
    pub command: ResourceId,
    /// `file:/etc/ssh/sshd_config changed`.
    pub reason: String,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.changed_units.is_empty() && self.requests.is_empty() && self.commands.is_empty()
    }

    /// What an interrupted run owed `command`, if it did.
    pub fn owes(&self, command: &ResourceId) -> Option<&Owed> {
        self.commands.iter().find(|o| o.command == *command)
    }

    /// Adds what another run left, without duplicates.
    pub fn merge(&mut self, other: &Pending) {
        for unit in &other.changed_units {
            if !self.changed_units.contains(unit) {
                self.changed_units.push(unit.clone());
            }
        }
        for request in &other.requests {
            if !self.requests.contains(request) {
                self.requests.push(request.clone());
            }
        }
        for owed in &other.commands {
            if self.owes(&owed.command).is_none() {
                self.commands.push(owed.clone());
            }
        }
    }
}

/// The journal as a run keeps it: written before anything is applied, rewritten as `on_change:`
/// commands run and once the resources are applied, removed once nothing is owed.
pub struct Kept<'h> {
    host: &'h Host,
    /// Whether triggers are kept: a service manager runs them (never under `--root`).
    triggers: bool,
    /// What is on disk, as this run wrote it.
    written: Option<Pending>,
}

impl<'h> Kept<'h> {
    pub fn new(host: &'h Host, triggers: bool) -> Kept<'h> {
        Kept { host, triggers, written: None }
    }

    /// Journals what `pending` owes (its triggers only when they are kept), when that differs
    /// from what is on disk; removes the journal when nothing is owed any more.
    pub fn save(&mut self, pending: &Pending) -> Result<()> {
        let mut keep = pending.clone();
        if !self.triggers {
            keep.changed_units.clear();
            keep.requests.clear();
        }
        if self.written.as_ref() == Some(&keep) || (keep.is_empty() && self.written.is_none()) {
            return Ok(());
        }
        match keep.is_empty() {
            true => clear(self.host)?,
            false => save(self.host, &keep)?,
        }
        self.written = (!keep.is_empty()).then_some(keep);
        Ok(())
    }

    /// The host it is kept on.
    pub fn host(&self) -> &'h Host {
        self.host
    }

    /// The `on_change:` command `id` ran: it is owed no more.
    pub fn ran(&mut self, id: &ResourceId) -> Result<()> {
        let Some(mut pending) = self.written.clone() else { return Ok(()) };
        pending.commands.retain(|owed| owed.command != *id);
        self.save(&pending)
    }
}

/// What an interrupted run left; empty when there is nothing (or under an offline root).
/// Under an offline root, only its commands: no trigger runs there.
pub fn load(host: &Host) -> Result<Pending> {
    match host.read(Path::new(PATH)) {
        Ok(bytes) => {
            let mut pending: Pending = serde_json::from_slice(&bytes).map_err(|e| {
                Error::resource(
                    PATH,
                    format!("cannot understand the pending-trigger journal ({e}); remove it to go on"),
                )
            })?;
            if host.root().is_some() {
                pending.changed_units.clear();
                pending.requests.clear();
            }
            Ok(pending)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Pending::default()),
        Err(e) => Err(Error::Read { path: PATH.into(), source: e }),
    }
}

fn save(host: &Host, pending: &Pending) -> Result<()> {
    let io = |e| Error::resource_io(PATH, "cannot write the pending-trigger journal", e);
    let path = Path::new(PATH);
    host.create_dirs(path.parent().expect("a directory")).map_err(io)?;
    let json = serde_json::to_string_pretty(pending).expect("plain data serializes");
    // Reasons name resources; a secret has no place on disk either.
    let json = crate::playbook::redact::apply(&json).into_owned().into_bytes();
    host.write_system_file(path, &json, Mode(0o600)).map_err(io)
}

fn clear(host: &Host) -> Result<()> {
    host.remove(Path::new(PATH)).map_err(|e| Error::resource_io(PATH, "cannot clear the pending-trigger journal", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::systemd::JobAction;

    #[test]
    fn requests_are_stored_by_name() {
        let pending = Pending {
            changed_units: vec!["app.service".into()],
            requests: vec![Request {
                action: JobAction::Restart,
                unit: "app.service".into(),
                reason: "file:/etc/app.conf changed".into(),
            }],
            commands: vec![],
        };
        let json = serde_json::to_string(&pending).unwrap();
        assert!(
            json.contains(r#"{"action":"restart","unit":"app.service","reason":"file:/etc/app.conf changed"}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Pending>(&json).unwrap(), pending);
    }

    /// A crashed run of an older converge left its requests as `[action, unit, reason]`: they
    /// are read as the same requests, so that they still fire.
    #[test]
    fn a_journal_of_the_tuple_format_is_read() {
        let old = r#"{
  "changed_units": ["app.service"],
  "requests": [["reload", "nginx.service", "nginx_site:mysite changed"]]
}"#;
        let pending: Pending = serde_json::from_str(old).unwrap();
        assert_eq!(pending.changed_units, ["app.service"]);
        assert_eq!(
            pending.requests,
            [Request {
                action: JobAction::Reload,
                unit: "nginx.service".into(),
                reason: "nginx_site:mysite changed".into()
            }]
        );
    }
}
