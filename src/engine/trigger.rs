//! Triggers: what the changes of a run set off in systemd, decided by a pure function of what
//! changed and what systemd reported, so that every rule has a table-driven test. The rules are
//! numbered in docs/triggers.md: [`decide`] applies rules 1 and 3 to 6 and orders the steps in
//! rule 2's phases (the rows of its test table start with their rule's number);
//! `engine/apply.rs` runs them through `host/systemd.rs` (the rest of rule 2). This module never
//! talks to the host.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::host::systemd::JobAction;
use crate::kinds::unit::OnChange;

// ----- the decision --------------------------------------------------------------------------

/// What systemd reported about a unit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// active, activating or reloading.
    pub active: bool,
    pub need_daemon_reload: bool,
    /// `Triggers=` (a socket: its service).
    pub triggers: Vec<String>,
    pub can_reload: bool,
}

/// What the decision needs to know about one unit: managed by the playbook, or named by a
/// trigger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitFacts {
    pub name: String,
    pub managed: bool,
    /// Its unit file or a drop-in is written or removed in this run.
    pub files_changed: bool,
    /// Enabled, disabled, masked or unmasked in this run.
    pub enablement_changed: bool,
    /// `state: absent`, and it exists.
    pub removed: bool,
    /// `active: true|false`.
    pub want_active: Option<bool>,
    pub on_change: OnChange,
    /// What systemd reported; None without a bus (an offline root): then it counts as active,
    /// so that the plan lists what a live host would do.
    pub observed: Option<Observed>,
    /// A socket: the file-system paths it listens on.
    pub listen_paths: Vec<String>,
    /// A service: its runtime directories (`/run/NAME`) and whether they survive a stop.
    pub runtime_dirs: Vec<String>,
    pub runtime_preserve: bool,
    /// A service: its sockets by `Sockets=`.
    pub sockets: Vec<String>,
    /// A template (`app@.service`): its running instances, which a change of it restarts.
    pub instances: Vec<String>,
}

impl UnitFacts {
    fn active(&self) -> bool {
        self.observed.as_ref().is_none_or(|o| o.active)
    }

    fn can_reload(&self) -> bool {
        self.observed.as_ref().is_none_or(|o| o.can_reload)
    }
}

/// A trigger that a changed resource asks for, with its reason ("file:/srv/app/wsgi.py changed").
/// The pending-trigger journal stores these (docs/triggers.md, "The journal"); a journal of an
/// older converge holds them as `[action, unit, reason]` arrays, which serde reads into the same
/// fields in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub action: JobAction,
    pub unit: String,
    pub reason: String,
}

/// The steps, in the order their phases run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Stop,
    DaemonReload,
    Reload,
    Restart,
    Start,
}

/// One thing to do in systemd, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub step: Step,
    /// None for daemon-reload.
    pub unit: Option<String>,
    pub reason: String,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.step {
            Step::Stop => "stop",
            Step::DaemonReload => "daemon-reload",
            Step::Reload => "reload",
            Step::Restart => "restart",
            Step::Start => "start",
        };
        match &self.unit {
            Some(unit) => write!(f, "{step} {unit}"),
            None => f.write_str(step),
        }
    }
}

/// Decides the triggers of a run (docs/triggers.md, rules 1 to 6), in the order of their phases.
pub fn decide(units: &[UnitFacts], requests: &[Request]) -> Vec<Trigger> {
    let mut plan = Decision { units, triggers: Vec::new() };

    // Rule 1: one daemon-reload, with the first reason.
    let reload_reason = units.iter().find_map(|u| {
        if u.files_changed {
            Some(format!("{} changed", u.name))
        } else if u.enablement_changed {
            Some(format!("{} enablement changed", u.name))
        } else if u.managed && u.observed.as_ref().is_some_and(|o| o.need_daemon_reload) {
            Some(format!("{}: NeedDaemonReload was set by an edit outside converge", u.name))
        } else {
            None
        }
    });
    if let Some(reason) = reload_reason {
        plan.triggers.push(Trigger { step: Step::DaemonReload, unit: None, reason });
    }

    for unit in units {
        if unit.removed {
            if unit.active() {
                plan.add(Step::Stop, &unit.name, "removed by the playbook");
            }
            continue;
        }
        if unit.files_changed {
            let reason = format!("{} changed", unit.name);
            plan.changed(unit, &reason);
        }
    }
    for request in requests {
        plan.request(request);
    }
    for unit in units.iter().filter(|u| !u.removed) {
        match unit.want_active {
            Some(true) if !unit.active() => plan.add(Step::Start, &unit.name, "active: true"),
            Some(false) if unit.active() => plan.add(Step::Stop, &unit.name, "active: false"),
            _ => {}
        }
    }
    plan.finish()
}

struct Decision<'a> {
    units: &'a [UnitFacts],
    triggers: Vec<Trigger>,
}

impl Decision<'_> {
    fn facts(&self, name: &str) -> Option<&UnitFacts> {
        self.units.iter().find(|u| u.name == name)
    }

    fn add(&mut self, step: Step, unit: &str, reason: &str) {
        let unit = Some(unit.to_owned());
        if !self.triggers.iter().any(|t| t.step == step && t.unit == unit) {
            self.triggers.push(Trigger { step, unit, reason: reason.to_owned() });
        }
    }

    /// The socket that activates `service`: by its `Triggers=`, by `Sockets=`, or by name.
    fn socket_of(&self, service: &UnitFacts) -> Option<&UnitFacts> {
        if !service.name.ends_with(".service") {
            return None;
        }
        // `app.service` -> `app.socket`; a template `app@.service` -> `app.socket`, the
        // Accept=yes socket whose connections each start an instance.
        let by_name = service.name.replace("@.service", ".service").replace(".service", ".socket");
        self.units.iter().find(|u| {
            u.name.ends_with(".socket")
                && (u.observed.as_ref().is_some_and(|o| o.triggers.contains(&service.name))
                    || service.sockets.contains(&u.name)
                    || u.name == by_name)
        })
    }

    /// The service that `socket` activates.
    fn service_of(&self, socket: &UnitFacts) -> Option<&UnitFacts> {
        self.units
            .iter()
            .find(|u| u.name.ends_with(".service") && self.socket_of(u).is_some_and(|s| s.name == socket.name))
    }

    /// The facts of a template's running instance.
    fn instance(&self, template: &UnitFacts, name: &str) -> UnitFacts {
        let running = UnitFacts {
            name: name.to_owned(),
            on_change: template.on_change,
            // Listed as running; the rest unknown, as without a bus.
            observed: None,
            ..UnitFacts::default()
        };
        let mut facts = self.facts(name).cloned().unwrap_or(running);
        facts.on_change = template.on_change;
        facts
    }

    /// Rules 3 to 5: the unit's own files changed.
    fn changed(&mut self, unit: &UnitFacts, reason: &str) {
        if crate::host::unit_file::is_template(&unit.name) {
            let socket = self.socket_of(unit).cloned();
            for name in &unit.instances {
                let instance = self.instance(unit, name);
                match &socket {
                    Some(socket) if instance.active() => self.add(
                        Step::Stop,
                        name,
                        &format!("{reason}; {} starts it on the next connection", socket.name),
                    ),
                    Some(_) => {}
                    None => self.changed(&instance, reason),
                }
            }
            if let Some(socket) = socket.filter(|s| s.active()) {
                self.add(Step::Restart, &socket.name, reason);
            }
            return;
        }
        let pair = match unit.name.rsplit_once('.').map(|(_, t)| t) {
            Some("socket") => self.service_of(unit).map(|service| (unit.clone(), service.clone())),
            Some("service") => self.socket_of(unit).map(|socket| (socket.clone(), unit.clone())),
            _ => None,
        };
        if let Some((socket, service)) = pair {
            // A template's instances (of an Accept=yes socket) stop in its place.
            let services = match crate::host::unit_file::is_template(&service.name) {
                true => service.instances.iter().map(|name| self.instance(&service, name)).collect(),
                false => vec![service.clone()],
            };
            for service in services.iter().filter(|s| s.active()) {
                self.add(
                    Step::Stop,
                    &service.name,
                    &format!("{reason}; {} starts it on the next connection", socket.name),
                );
            }
            if socket.active() {
                self.add(Step::Restart, &socket.name, reason);
            }
            return;
        }
        if !unit.active() {
            return;
        }
        match unit.on_change {
            OnChange::None => {}
            OnChange::Reload if unit.can_reload() => self.add(Step::Reload, &unit.name, reason),
            OnChange::Reload | OnChange::Restart => self.add(Step::Restart, &unit.name, reason),
        }
    }

    /// Rule 6: a trigger asked for by a changed resource (rules 4 and 5 for sockets and
    /// templates).
    fn request(&mut self, request: &Request) {
        let unknown = UnitFacts { name: request.unit.clone(), ..UnitFacts::default() };
        let unit = self.facts(&request.unit).cloned().unwrap_or(unknown);
        if crate::host::unit_file::is_template(&unit.name) {
            for name in &unit.instances {
                let instance = Request { unit: name.clone(), ..request.clone() };
                self.request(&instance);
            }
            return;
        }
        let reason = request.reason.as_str();
        match request.action {
            JobAction::Start if !unit.active() => self.add(Step::Start, &unit.name, reason),
            JobAction::Stop if unit.active() => self.add(Step::Stop, &unit.name, reason),
            JobAction::Reload if unit.active() && unit.can_reload() => self.add(Step::Reload, &unit.name, reason),
            JobAction::Reload | JobAction::Restart if unit.active() => match self.socket_of(&unit).cloned() {
                // A socket-activated service is stopped; the next connection starts it anew.
                Some(socket) => {
                    self.add(
                        Step::Stop,
                        &unit.name,
                        &format!("{reason}; {} starts it on the next connection", socket.name),
                    );
                    let inside = socket
                        .listen_paths
                        .iter()
                        .any(|p| unit.runtime_dirs.iter().any(|d| p.starts_with(&format!("{d}/"))));
                    if inside && !unit.runtime_preserve && socket.active() {
                        let why = format!(
                            "{reason}; its socket lies in {}'s RuntimeDirectory, which the stop removes",
                            unit.name
                        );
                        self.add(Step::Restart, &socket.name, &why);
                    }
                }
                None => self.add(Step::Restart, &unit.name, reason),
            },
            _ => {}
        }
    }

    /// Merges steps on one unit and sorts by phase (stable: playbook order within a phase).
    fn finish(mut self) -> Vec<Trigger> {
        let has = |triggers: &[Trigger], step: Step, unit: &Option<String>| {
            triggers.iter().any(|t| t.step == step && &t.unit == unit)
        };
        let snapshot = self.triggers.clone();
        self.triggers.retain(|t| match t.step {
            // A unit restarted anyway needs no reload; one started in this run no restart; one
            // stopped for good neither.
            Step::Reload => {
                !has(&snapshot, Step::Restart, &t.unit)
                    && !has(&snapshot, Step::Start, &t.unit)
                    && !has(&snapshot, Step::Stop, &t.unit)
            }
            Step::Restart => !has(&snapshot, Step::Start, &t.unit) && !has(&snapshot, Step::Stop, &t.unit),
            _ => true,
        });
        self.triggers.sort_by_key(|t| t.step);
        self.triggers
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn unit(name: &str) -> UnitFacts {
        UnitFacts {
            name: name.into(),
            managed: true,
            observed: Some(Observed { active: true, can_reload: true, ..Observed::default() }),
            ..UnitFacts::default()
        }
    }

    fn changed(name: &str) -> UnitFacts {
        UnitFacts { files_changed: true, ..unit(name) }
    }

    fn inactive(mut u: UnitFacts) -> UnitFacts {
        u.observed.as_mut().unwrap().active = false;
        u
    }

    fn socket_for(name: &str, service: &str) -> UnitFacts {
        let mut s = unit(name);
        s.observed.as_mut().unwrap().triggers = vec![service.into()];
        s.listen_paths = vec!["/run/gunicorn/socket".into()];
        s
    }

    /// A template as plan.rs describes it: no state of its own in systemd.
    fn template_named(name: &str, files_changed: bool) -> UnitFacts {
        UnitFacts { name: name.into(), managed: true, files_changed, observed: None, ..UnitFacts::default() }
    }

    fn template(files_changed: bool) -> UnitFacts {
        template_named("g@.service", files_changed)
    }

    fn request(action: JobAction, unit: &str) -> Request {
        Request { action, unit: unit.into(), reason: "file:/srv/app/wsgi.py changed".into() }
    }

    /// The triggers as "step unit" strings, in order.
    fn steps(units: &[UnitFacts], requests: &[Request]) -> Vec<String> {
        decide(units, requests).iter().map(ToString::to_string).collect()
    }

    /// (rule of docs/triggers.md and case, the units, the requests, the triggers expected in order)
    type Row = (&'static str, Vec<UnitFacts>, Vec<Request>, Vec<&'static str>);

    #[test]
    fn rules_table() {
        let gunicorn_service = || {
            let mut s = unit("gunicorn.service");
            s.runtime_dirs = vec!["/run/gunicorn".into()];
            s
        };
        let preserved = || UnitFacts { runtime_preserve: true, ..gunicorn_service() };
        let hand_edited = || {
            let mut u = unit("app.service");
            u.observed.as_mut().unwrap().need_daemon_reload = true;
            u
        };
        let rows: Vec<Row> = vec![
            ("nothing changed: nothing runs", vec![unit("app.service")], vec![], vec![]),
            (
                "1: a changed file: one daemon-reload",
                vec![changed("a.service"), changed("b.service")],
                vec![],
                vec!["daemon-reload", "restart a.service", "restart b.service"],
            ),
            ("1: hand edit of a managed unit: daemon-reload", vec![hand_edited()], vec![], vec!["daemon-reload"]),
            (
                "1: hand edit of an unmanaged unit: none",
                vec![UnitFacts { managed: false, ..hand_edited() }],
                vec![],
                vec![],
            ),
            (
                "1: enablement change: daemon-reload",
                vec![UnitFacts { enablement_changed: true, ..unit("a.service") }],
                vec![],
                vec!["daemon-reload"],
            ),
            (
                "3: changed and inactive: left alone",
                vec![inactive(changed("a.service"))],
                vec![],
                vec!["daemon-reload"],
            ),
            (
                "3: changed, inactive, active: true: started",
                vec![UnitFacts { want_active: Some(true), ..inactive(changed("a.service")) }],
                vec![],
                vec!["daemon-reload", "start a.service"],
            ),
            (
                "3: on_change reload",
                vec![UnitFacts { on_change: OnChange::Reload, ..changed("a.service") }],
                vec![],
                vec!["daemon-reload", "reload a.service"],
            ),
            (
                "3: on_change reload without ExecReload: restart",
                vec![{
                    let mut u = UnitFacts { on_change: OnChange::Reload, ..changed("a.service") };
                    u.observed.as_mut().unwrap().can_reload = false;
                    u
                }],
                vec![],
                vec!["daemon-reload", "restart a.service"],
            ),
            (
                "3: on_change none",
                vec![UnitFacts { on_change: OnChange::None, ..changed("a.service") }],
                vec![],
                vec!["daemon-reload"],
            ),
            (
                "4: service of a pair changed: stop it, restart the socket",
                vec![
                    socket_for("gunicorn.socket", "gunicorn.service"),
                    UnitFacts { files_changed: true, ..gunicorn_service() },
                ],
                vec![],
                vec!["stop gunicorn.service", "daemon-reload", "restart gunicorn.socket"],
            ),
            (
                "4: socket of a pair changed",
                vec![
                    UnitFacts { files_changed: true, ..socket_for("gunicorn.socket", "gunicorn.service") },
                    gunicorn_service(),
                ],
                vec![],
                vec!["stop gunicorn.service", "daemon-reload", "restart gunicorn.socket"],
            ),
            (
                "4: pair by name, service inactive, active: true starts it",
                vec![
                    UnitFacts { files_changed: true, ..unit("app.socket") },
                    UnitFacts { want_active: Some(true), ..inactive(unit("app.service")) },
                ],
                vec![],
                vec!["daemon-reload", "restart app.socket", "start app.service"],
            ),
            (
                "4: a restart asked of a socket-activated service with its socket in RuntimeDirectory",
                vec![socket_for("gunicorn.socket", "gunicorn.service"), gunicorn_service()],
                vec![request(JobAction::Restart, "gunicorn.service")],
                vec!["stop gunicorn.service", "restart gunicorn.socket"],
            ),
            (
                "4: ... with RuntimeDirectoryPreserve=yes the socket stays",
                vec![socket_for("gunicorn.socket", "gunicorn.service"), preserved()],
                vec![request(JobAction::Restart, "gunicorn.service")],
                vec!["stop gunicorn.service"],
            ),
            (
                "6: a request restarts an active unit",
                vec![unit("app.service")],
                vec![request(JobAction::Restart, "app.service")],
                vec!["restart app.service"],
            ),
            (
                "6: a request on an unmanaged unit with no facts counts it active",
                vec![],
                vec![request(JobAction::Reload, "nginx.service")],
                vec!["reload nginx.service"],
            ),
            (
                "6: a request does not restart an inactive unit",
                vec![inactive(unit("app.service"))],
                vec![request(JobAction::Restart, "app.service")],
                vec![],
            ),
            (
                "6: a unit started in this run is not restarted",
                vec![UnitFacts { want_active: Some(true), ..inactive(changed("a.service")) }],
                vec![request(JobAction::Restart, "a.service")],
                vec!["daemon-reload", "start a.service"],
            ),
            (
                "6: restart wins over reload",
                vec![unit("app.service")],
                vec![request(JobAction::Reload, "app.service"), request(JobAction::Restart, "app.service")],
                vec!["restart app.service"],
            ),
            (
                "3: removed and active: stopped, then daemon-reload",
                vec![UnitFacts { removed: true, files_changed: true, ..unit("old.service") }],
                vec![],
                vec!["stop old.service", "daemon-reload"],
            ),
            (
                "3: active: false stops, and no restart follows",
                vec![UnitFacts { want_active: Some(false), ..changed("a.service") }],
                vec![],
                vec!["stop a.service", "daemon-reload"],
            ),
            (
                "2: phases in order",
                vec![
                    UnitFacts { on_change: OnChange::Reload, ..changed("r.service") },
                    UnitFacts { want_active: Some(true), ..inactive(unit("s.service")) },
                    changed("t.service"),
                    UnitFacts { want_active: Some(false), ..unit("u.service") },
                ],
                vec![],
                vec!["stop u.service", "daemon-reload", "reload r.service", "restart t.service", "start s.service"],
            ),
            (
                "no bus: counted active, so the plan shows what a live host would do",
                vec![UnitFacts { observed: None, ..changed("a.service") }],
                vec![],
                vec!["daemon-reload", "restart a.service"],
            ),
            (
                "5: a changed template restarts its running instances, by name, never itself",
                vec![
                    UnitFacts { instances: vec!["g@a.service".into(), "g@b.service".into()], ..template(true) },
                    unit("g@a.service"),
                    inactive(unit("g@c.service")),
                ],
                vec![],
                vec!["daemon-reload", "restart g@a.service", "restart g@b.service"],
            ),
            (
                "5: a template with on_change: reload reloads its instances",
                vec![UnitFacts {
                    on_change: OnChange::Reload,
                    instances: vec!["g@a.service".into()],
                    ..template(true)
                }],
                vec![],
                vec!["daemon-reload", "reload g@a.service"],
            ),
            (
                "5: a template's new instance is started, not restarted",
                vec![
                    UnitFacts { instances: vec![], ..template(true) },
                    UnitFacts { want_active: Some(true), ..inactive(unit("g@a.service")) },
                ],
                vec![],
                vec!["daemon-reload", "start g@a.service"],
            ),
            (
                "5: restart_triggers of a template restart its running instances",
                vec![UnitFacts { instances: vec!["g@a.service".into()], ..template(false) }],
                vec![request(JobAction::Restart, "g@.service")],
                vec!["restart g@a.service"],
            ),
            (
                "5: an Accept=yes socket and its template: instances stop, the socket restarts",
                vec![
                    unit("echo.socket"),
                    UnitFacts { instances: vec!["echo@1-2.service".into()], ..template_named("echo@.service", true) },
                ],
                vec![],
                vec!["stop echo@1-2.service", "daemon-reload", "restart echo.socket"],
            ),
            (
                "5: a changed Accept=yes socket: the template itself is never stopped",
                vec![changed("echo.socket"), template_named("echo@.service", false)],
                vec![],
                vec!["daemon-reload", "restart echo.socket"],
            ),
        ];
        for (name, units, requests, expected) in rows {
            assert_eq!(steps(&units, &requests), expected, "row: {name}");
        }
    }

    #[test]
    fn reasons_are_specific() {
        let mut u = unit("app.service");
        u.observed.as_mut().unwrap().need_daemon_reload = true;
        let triggers = decide(&[u], &[]);
        assert_eq!(triggers[0].reason, "app.service: NeedDaemonReload was set by an edit outside converge");
        let triggers = decide(&[socket_for("g.socket", "g.service"), changed("g.service")], &[]);
        assert_eq!(triggers[0].reason, "g.service changed; g.socket starts it on the next connection");
    }
}
