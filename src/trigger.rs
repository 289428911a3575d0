//! Triggers: what a change sets off after the resources are applied (`notify:` on any resource:
//! "restart gunicorn.service"). A trigger fires only when its resource changed in this run.
//!
//! This is the pipeline's last stage. The handlers that talk to systemd come with the systemd
//! issue; until then triggers are planned and reported, and `apply` says it did not run them.

use std::fmt;

use serde::Serialize;

use crate::resource::ResourceId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    // Declared in the order the phases run: stop, reload, restart, start.
    Stop,
    Reload,
    Restart,
    Start,
}

impl Action {
    fn parse(word: &str) -> Option<Action> {
        Some(match word {
            "stop" => Action::Stop,
            "reload" => Action::Reload,
            "restart" => Action::Restart,
            "start" => Action::Start,
            _ => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Stop => "stop",
            Action::Reload => "reload",
            Action::Restart => "restart",
            Action::Start => "start",
        })
    }
}

/// `notify: "restart gunicorn.service"`: an action on a unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Notify {
    pub action: Action,
    pub unit: String,
}

const UNIT_SUFFIXES: &[&str] = &[".service", ".socket", ".timer", ".target", ".path", ".mount", ".slice", ".scope"];

impl Notify {
    /// Parses "ACTION UNIT"; the error is a help line.
    pub fn parse(text: &str) -> Result<Notify, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [action, unit] = words[..] else {
            return Err("write an action and a unit, such as \"restart gunicorn.service\"".into());
        };
        let Some(action) = Action::parse(action) else {
            return Err(format!("`{action}` is not an action: use restart, reload, start or stop"));
        };
        if !UNIT_SUFFIXES.iter().any(|s| unit.ends_with(s)) {
            return Err(format!("name the unit with its suffix, such as {unit}.service"));
        }
        Ok(Notify { action, unit: unit.to_owned() })
    }
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action, self.unit)
    }
}

/// A trigger to run, with the resources whose changes caused it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trigger {
    pub action: Action,
    pub unit: String,
    pub because: Vec<ResourceId>,
}

impl Trigger {
    /// "gunicorn.service changed" style reason for plans.
    pub fn reason(&self) -> String {
        let ids: Vec<String> = self.because.iter().map(ToString::to_string).collect();
        format!("{} changed", ids.join(", "))
    }
}

/// The triggers that the changed resources' `notify:` entries set off: one per (action, unit),
/// in phase order (stop, reload, restart, start), then by unit name, so output is stable.
pub fn collect<'a>(changed: impl IntoIterator<Item = (&'a ResourceId, &'a [Notify])>) -> Vec<Trigger> {
    let mut triggers: Vec<Trigger> = Vec::new();
    for (id, notifies) in changed {
        for notify in notifies {
            match triggers.iter_mut().find(|t| t.action == notify.action && t.unit == notify.unit) {
                Some(t) if !t.because.contains(id) => t.because.push(id.clone()),
                Some(_) => {}
                None => triggers.push(Trigger {
                    action: notify.action,
                    unit: notify.unit.clone(),
                    because: vec![id.clone()],
                }),
            }
        }
    }
    triggers.sort_by(|a, b| (a.action, &a.unit).cmp(&(b.action, &b.unit)));
    triggers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_explains() {
        assert_eq!(
            Notify::parse("restart gunicorn.service"),
            Ok(Notify { action: Action::Restart, unit: "gunicorn.service".into() })
        );
        assert!(Notify::parse("bounce nginx.service").unwrap_err().contains("not an action"));
        assert!(Notify::parse("reload nginx").unwrap_err().contains("nginx.service"));
        assert!(Notify::parse("nginx.service").unwrap_err().contains("an action and a unit"));
    }

    #[test]
    fn collects_once_per_unit_in_phase_order() {
        let a = ResourceId::new("file", "/a");
        let b = ResourceId::new("file", "/b");
        let restart = [Notify::parse("restart app.service").unwrap(), Notify::parse("reload nginx.service").unwrap()];
        let again = [Notify::parse("restart app.service").unwrap()];
        let triggers = collect([(&a, &restart[..]), (&b, &again[..])]);
        assert_eq!(triggers.len(), 2);
        assert_eq!((triggers[0].action, triggers[0].unit.as_str()), (Action::Reload, "nginx.service"));
        assert_eq!(triggers[1].because, vec![a, b]);
        assert_eq!(triggers[1].reason(), "file:/a, file:/b changed");
    }
}
