//! What a rollback sets off, by the rules of an apply (docs/triggers.md): the unit files it put
//! back are daemon-reloaded and their active units restarted (a unit whose file it removed is
//! stopped), the jobs the undone changes asked for (`notify:`, a site's reload of nginx,
//! `restart_triggers`) are asked again, and nginx checks the configuration before any of it
//! runs (rule 7): rejected, what the rollback put back under /etc/nginx is undone again.

use std::path::Path;

use crate::engine::journal::Pending;
use crate::engine::runs::{self, Before, Recorder, Restore};
use crate::engine::trigger::Request;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::kinds::unit::UNIT_DIR;

/// Where nginx's configuration lives: a path put back under it is tested before any reload.
const NGINX_DIR: &str = "/etc/nginx";

/// The trigger inputs of putting `steps` back, and the units whose unit file it removes.
pub fn pending(steps: &[Restore]) -> (Pending, Vec<String>) {
    let mut pending = Pending::default();
    let mut removed = Vec::new();
    for step in steps {
        if let Some((unit, own_file)) = unit_of(&step.path) {
            if own_file && step.to == Before::Absent {
                removed.push(unit.clone());
            }
            if !pending.changed_units.contains(&unit) {
                pending.changed_units.push(unit);
            }
        }
        let reason = format!("{} rolled back", step.path.display());
        for notify in &step.notify {
            if !pending.requests.iter().any(|r| r.action == notify.action && r.unit == notify.unit) {
                let (action, unit) = (notify.action, notify.unit.clone());
                pending.requests.push(Request { action, unit, reason: reason.clone() });
            }
        }
    }
    (pending, removed)
}

/// The unit a path under the unit directory belongs to, and whether it is the unit file itself
/// (`/etc/systemd/system/NAME`) rather than a drop-in (`NAME.d/x.conf`).
fn unit_of(path: &Path) -> Option<(String, bool)> {
    let rest = path.strip_prefix(UNIT_DIR).ok()?;
    let mut components = rest.components();
    let name = components.next()?.as_os_str().to_str()?;
    let own_file = components.next().is_none();
    let unit = if own_file { name } else { name.strip_suffix(".d")? };
    crate::host::unit_file::check_unit_name(unit).ok().map(|_| (unit.to_owned(), own_file))
}

/// Rule 7 for a rollback: when it put back anything under /etc/nginx, `nginx -t` checks the
/// whole configuration before any trigger runs. Rejected, those paths are put back as they were
/// before the rollback (their content was stored when `recorder` captured it), leave the
/// rollback's record (it did not change them), and the error says so.
pub fn test_nginx(host: &Host, steps: &[Restore], recorder: &mut Recorder) -> Result<()> {
    let touched: Vec<&Restore> = steps.iter().filter(|s| s.path.starts_with(NGINX_DIR)).collect();
    if touched.is_empty() {
        return Ok(());
    }
    let Err(message) = crate::kinds::nginx_site::nginx_test(host) else { return Ok(()) };
    for step in touched.iter().rev() {
        let back = Restore { path: step.path.clone(), now: step.to.clone(), to: step.now.clone(), notify: Vec::new() };
        runs::restore(host, &back)?;
        recorder.before.retain(|b| !b.path.starts_with(&step.path));
    }
    let paths: Vec<String> = touched.iter().map(|s| host.shown(&s.path)).collect();
    Err(Error::Usage {
        message: format!(
            "nginx rejected the configuration the rollback put back, so it was undone again ({}) and nothing was \
             reloaded:\n  {}",
            paths.join(", "),
            message.replace('\n', "\n  ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mode::Mode;
    use crate::host::systemd::JobAction;
    use crate::kinds::notify::Notify;

    fn step(path: &str, to: Before, notify: Vec<Notify>) -> Restore {
        let now = Before::File { mode: Mode(0o644), uid: 0, gid: 0, sha256: "00".into(), len: 0 };
        Restore { path: path.into(), now, to, notify }
    }

    #[test]
    fn unit_files_drop_ins_and_requests_make_the_pending_triggers() {
        let file = Before::File { mode: Mode(0o644), uid: 0, gid: 0, sha256: "11".into(), len: 1 };
        let reload = Notify { action: JobAction::Reload, unit: "nginx.service".into() };
        let steps = [
            step("/etc/systemd/system/app.service", file.clone(), vec![]),
            step("/etc/systemd/system/app.service.d/limits.conf", Before::Absent, vec![]),
            step("/etc/systemd/system/old.service", Before::Absent, vec![]),
            step("/etc/nginx/sites-available/app", file.clone(), vec![reload.clone()]),
            step("/etc/nginx/sites-enabled/app", file, vec![reload]),
            step("/etc/systemd/system/multi-user.target.wants", Before::Absent, vec![]),
        ];
        let (pending, removed) = pending(&steps);
        assert_eq!(pending.changed_units, ["app.service", "old.service"]);
        assert_eq!(removed, ["old.service"], "a drop-in removed leaves its unit");
        assert_eq!(
            pending.requests,
            [Request {
                action: JobAction::Reload,
                unit: "nginx.service".into(),
                reason: "/etc/nginx/sites-available/app rolled back".into()
            }],
            "once, with the first reason"
        );
    }
}
