//! `notify:`: what a resource's change asks of a unit, as a playbook writes it
//! (`notify: "restart gunicorn.service"`) and as a kind declares it (a changed `nginx_site`
//! reloads nginx). The engine turns these into trigger requests (docs/triggers.md, rule 6).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::host::systemd::JobAction;

/// `notify: "restart gunicorn.service"`: a job on a unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Notify {
    pub action: JobAction,
    pub unit: String,
}

impl Notify {
    /// Parses "ACTION UNIT"; the error is a help line.
    pub fn parse(text: &str) -> Result<Notify, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [action, unit] = words[..] else {
            return Err("write an action and a unit, such as \"restart gunicorn.service\"".into());
        };
        let Some(action) = JobAction::parse(action) else {
            let close = crate::error::did_you_mean(action, JobAction::ALL.map(JobAction::as_str));
            let close = close.map(|c| c + " ").unwrap_or_default();
            return Err(format!("{close}`{action}` is not an action: use restart, reload, start or stop"));
        };
        if crate::host::unit_file::check_unit_name(unit).is_err() {
            return Err(crate::kinds::unit::unit_name_help(unit));
        }
        Ok(Notify { action, unit: unit.to_owned() })
    }
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action, self.unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_parses_and_explains() {
        assert_eq!(
            Notify::parse("restart gunicorn.service"),
            Ok(Notify { action: JobAction::Restart, unit: "gunicorn.service".into() })
        );
        assert!(Notify::parse("bounce nginx.service").unwrap_err().contains("not an action"));
        assert!(Notify::parse("reload nginx").unwrap_err().contains("nginx.service"));
        assert!(Notify::parse("nginx.service").unwrap_err().contains("an action and a unit"));
    }
}
