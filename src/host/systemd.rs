//! The one place converge talks to systemd.
//!
//! This module owns the connection to the system bus and every D-Bus call converge makes to
//! systemd's manager (`org.freedesktop.systemd1`, see `org.freedesktop.systemd1(5)`): observing
//! units, `daemon-reload`, start/stop/restart/reload jobs, and enabling, disabling, masking and
//! unmasking unit files. Nothing else in converge runs `systemctl` or knows about D-Bus.
//!
//! zbus 6 has no blocking API, so the proxies below are async and every public method drives
//! them to completion inside one `zbus::block_on` call (zbus's own small runtime, on the calling
//! thread; no tokio). It also watches a service for its settle time after a start or restart
//! (PropertiesChanged signals, see [`Systemd::run_jobs`]), lists a template's running instances
//! and a service's processes. The async world ends at this module's boundary: callers see plain
//! synchronous methods. Being async inside is what lets [`Systemd::units`] have the property
//! reads of many units in flight at once, and lets [`Systemd::run_jobs`] enqueue jobs while it
//! listens for their completion.
//!
//! Do not call these methods from inside an async task: `zbus::block_on` panics when nested.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io::ErrorKind;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use zbus::proxy::CacheProperties;
use zbus::{AsyncDrop, Connection, OwnedObjectPath};
// The `Stream` trait that the generated signal streams implement, by the path the proxy macro
// itself emits: zbus re-exports no other, and it saves converge a futures-core dependency.
use zbus::export::futures_core::Stream;

/// The bus name systemd's manager owns on the system bus.
const SYSTEMD: &str = "org.freedesktop.systemd1";

/// The job mode of every job converge enqueues: like `systemctl`, replace conflicting queued jobs.
const JOB_MODE: &str = "replace";

/// The only `JobRemoved` result that means the job did what was asked.
const JOB_DONE: &str = "done";

/// How many calls may wait for their replies at once. The system bus answers the calls beyond
/// its `max_replies_per_connection` (128 in Debian's dbus) with `LimitsExceeded`.
const MAX_PENDING_CALLS: usize = 64;

/// `org.freedesktop.systemd1.Manager`, at `/org/freedesktop/systemd1`: the methods converge uses.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    /// Asks for the manager's signals (`JobRemoved` among them): systemd emits them only while
    /// some client is subscribed. A second call on one connection fails with AlreadySubscribed.
    fn subscribe(&self) -> zbus::Result<()>;

    /// `daemon-reload`. systemd holds the reply back until the reload has finished.
    fn reload(&self) -> zbus::Result<()>;

    /// The object path of a unit, loading it from disk if it is not loaded. Unlike `GetUnit`,
    /// this works for inactive units that systemd has unloaded, and answers a name that has no
    /// unit file with a unit whose LoadState is `not-found` rather than with an error.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// The loaded units whose names match `patterns` (fnmatch), in any of `states` (all when
    /// empty): (name, description, load, active, sub, following, path, job id, job type, job path).
    #[allow(clippy::type_complexity)]
    fn list_units_by_patterns(
        &self,
        states: &[&str],
        patterns: &[&str],
    ) -> zbus::Result<
        Vec<(String, String, String, String, String, String, OwnedObjectPath, u32, String, OwnedObjectPath)>,
    >;

    /// The processes of a unit's cgroup: (cgroup path, pid, command line).
    fn get_unit_processes(&self, name: &str) -> zbus::Result<Vec<(String, u32, String)>>;

    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reload_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// `(asbb) -> (ba(sss))`: whether the units have `[Install]` sections, and the changes made
    /// as (type, file, destination).
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;
    fn disable_unit_files(&self, files: &[&str], runtime: bool) -> zbus::Result<Vec<(String, String, String)>>;
    fn mask_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;
    fn unmask_unit_files(&self, files: &[&str], runtime: bool) -> zbus::Result<Vec<(String, String, String)>>;

    /// A job left the queue; `result` says how: done, canceled, timeout, failed, dependency,
    /// skipped, invalid (e.g. reloading an inactive unit).
    #[zbus(signal)]
    fn job_removed(&self, id: u32, job: OwnedObjectPath, unit: String, result: String) -> zbus::Result<()>;
}

/// `org.freedesktop.systemd1.Unit`, at the unit's object path: what every unit type has.
#[zbus::proxy(interface = "org.freedesktop.systemd1.Unit", default_service = "org.freedesktop.systemd1")]
trait Unit {
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn unit_file_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn need_daemon_reload(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn triggered_by(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn triggers(&self) -> zbus::Result<Vec<String>>;
    // The macro would make "InvocationId" of the method name: systemd spells it "ID".
    #[zbus(property, name = "InvocationID")]
    fn invocation_id(&self) -> zbus::Result<Vec<u8>>;
    #[zbus(property)]
    fn can_reload(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn fragment_path(&self) -> zbus::Result<String>;
}

/// `org.freedesktop.systemd1.Service`, at the object path of a `.service` unit.
#[zbus::proxy(interface = "org.freedesktop.systemd1.Service", default_service = "org.freedesktop.systemd1")]
trait Service {
    #[zbus(property)]
    fn runtime_directory(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn runtime_directory_preserve(&self) -> zbus::Result<String>;
    /// How the service last ended: success, exit-code, signal, timeout, core-dump, ...
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
    /// Type=: simple, exec, forking, oneshot, dbus, notify, notify-reload, idle.
    #[zbus(property, name = "Type")]
    fn service_type(&self) -> zbus::Result<String>;
    /// The main process (nginx's master); 0 when there is none.
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
    /// How many times systemd restarted it by its Restart= since it was last started by hand.
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;
}

/// `org.freedesktop.systemd1.Socket`, at the object path of a `.socket` unit.
#[zbus::proxy(interface = "org.freedesktop.systemd1.Socket", default_service = "org.freedesktop.systemd1")]
trait Socket {
    /// `a(ss)`: (type, address), e.g. ("Stream", "/run/gunicorn.sock").
    #[zbus(property)]
    fn listen(&self) -> zbus::Result<Vec<(String, String)>>;
    /// How the socket last ended: success, resources, service-start-limit-hit, ...
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
}

/// A connection to systemd over the system bus.
pub struct Systemd {
    connection: Connection,
    manager: ManagerProxy<'static>,
}

/// What went wrong talking to systemd. Each message names the unit, when there is one, and
/// ends with the D-Bus error as systemd sent it, which usually says best what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// The system bus is there, but connecting to it or to systemd failed.
    #[error("cannot connect to systemd over the system bus: {error}")]
    Connect { error: zbus::Error },

    /// A manager call that concerns no unit in particular failed.
    #[error("systemd: {call} failed: {error}")]
    Manager { call: &'static str, error: zbus::Error },

    /// A call about units was refused, e.g. `org.freedesktop.systemd1.UnitMasked`.
    #[error("{unit}: {call} failed: {error}")]
    Unit {
        /// The unit, or the units of one call joined with ", ".
        unit: String,
        call: &'static str,
        error: zbus::Error,
    },

    /// A property of a unit could not be read.
    #[error("{unit}: cannot read property {property}: {error}")]
    Property { unit: String, property: &'static str, error: zbus::Error },

    /// A job finished with a result other than `done`. The unit's state, read right after, says
    /// more (e.g. `Result=exit-code`: its process exited with a failure status).
    #[error(
        "{unit}: job {action} finished with `{result}` (ActiveState={active_state}, SubState={sub_state}{})",
        unit_result.as_deref().map(|r| format!(", Result={r}")).unwrap_or_default()
    )]
    JobFailed {
        unit: String,
        action: JobAction,
        result: String,
        active_state: String,
        sub_state: String,
        /// The `Result` property of a service or socket; `None` for other unit types.
        unit_result: Option<String>,
    },

    /// A start or restart job ended `done`, but within the settle time the service died:
    /// systemd put it in `failed`, or in `activating (auto-restart)` to start it again
    /// (`Restart=`), or restarted it already.
    #[error(
        "{unit}: the {action} job finished, but within {} s the service {} (ActiveState={active_state}, SubState={sub_state}{})",
        settle.as_secs_f64(),
        match restarts { 0 => "failed".to_string(), n => format!("died and was restarted by systemd ({n}x)") },
        unit_result.as_deref().map(|r| format!(", Result={r}")).unwrap_or_default()
    )]
    Settle {
        unit: String,
        action: JobAction,
        /// How long converge watched it.
        settle: Duration,
        active_state: String,
        sub_state: String,
        unit_result: Option<String>,
        /// How many times systemd restarted it meanwhile (NRestarts went up by this much).
        restarts: u32,
    },

    /// The bus connection ended while jobs were running.
    #[error("{units}: the system bus connection closed while waiting for jobs to finish")]
    Disconnected { units: String },
}

/// The jobs converge enqueues, displayed (and written in playbooks and journals) as their
/// `systemctl` verbs: what a trigger does to a unit (`notify: "restart app.service"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobAction {
    Stop,
    Reload,
    Restart,
    Start,
}

impl JobAction {
    /// Every job, as `systemctl` names them.
    pub const ALL: [JobAction; 4] = [JobAction::Restart, JobAction::Reload, JobAction::Start, JobAction::Stop];

    /// The job a `systemctl` verb names.
    pub fn parse(word: &str) -> Option<JobAction> {
        JobAction::ALL.into_iter().find(|action| action.as_str() == word)
    }

    /// The `systemctl` verb.
    pub fn as_str(self) -> &'static str {
        match self {
            JobAction::Start => "start",
            JobAction::Stop => "stop",
            JobAction::Restart => "restart",
            JobAction::Reload => "reload",
        }
    }

    /// The manager method that enqueues this job.
    fn method(self) -> &'static str {
        match self {
            JobAction::Start => "StartUnit",
            JobAction::Stop => "StopUnit",
            JobAction::Restart => "RestartUnit",
            JobAction::Reload => "ReloadUnit",
        }
    }
}

impl fmt::Display for JobAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SystemdError {
    /// The unit whose job or start failed, for a look at its journal.
    pub fn failed_unit(&self) -> Option<&str> {
        match self {
            SystemdError::JobFailed { unit, .. } | SystemdError::Settle { unit, .. } => Some(unit),
            _ => None,
        }
    }
}

/// A job converge enqueues, and how long to watch a service after its start or restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub action: JobAction,
    pub unit: String,
    /// After a start or restart job of a service ends `done`: how long converge watches the
    /// unit for a failure (see [`Systemd::run_jobs`]). Zero: not at all.
    pub settle: Duration,
}

/// The settle time of a service whose unit does not say (`settle:` of the unit resource).
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);

/// A unit as systemd sees it now. The strings are systemd's own values: see `systemd.unit(5)`
/// and `org.freedesktop.systemd1(5)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitStatus {
    pub name: String,
    /// loaded, not-found, bad-setting, error, masked
    pub load_state: String,
    /// active, reloading, inactive, failed, activating, deactivating
    pub active_state: String,
    /// The state particular to the unit type: running, exited, dead, listening, ...
    pub sub_state: String,
    /// enabled, disabled, static, masked, indirect, generated, ..., or "" without a unit file.
    /// systemd keeps a loaded unit's value until the next daemon-reload (see `enable`).
    pub unit_file_state: String,
    /// The unit file or one of its drop-ins changed on disk since systemd loaded it. systemd
    /// 252 misses a drop-in directory that did not exist at the last daemon-reload.
    pub need_daemon_reload: bool,
    /// TriggeredBy: e.g. the `.socket` that starts this service (only if loaded: see `units`).
    pub triggered_by: Vec<String>,
    /// Triggers: e.g. the service this `.socket` starts.
    pub triggers: Vec<String>,
    /// The InvocationID of the unit's current or last run in lower-case hex; "" if it never ran.
    pub invocation_id: String,
    pub can_reload: bool,
    /// The unit file systemd loaded; "" when there is none.
    pub fragment_path: String,
    /// A service's RuntimeDirectory= (relative to /run); empty for other unit types.
    pub runtime_directory: Vec<String>,
    /// A service's RuntimeDirectoryPreserve= (no, yes, restart); "" for other unit types.
    pub runtime_directory_preserve: String,
    /// A socket's Listen: (type, address) pairs, e.g. ("Stream", "/run/app.sock"); empty for
    /// other unit types.
    pub listen: Vec<(String, String)>,
}

/// The D-Bus object of one unit, with a proxy for each interface converge reads.
struct UnitObject {
    unit: UnitProxy<'static>,
    /// Only services and sockets have these interfaces: systemd takes a unit's type from the
    /// suffix of its name, so the suffix says which interfaces its object has.
    service: Option<ServiceProxy<'static>>,
    socket: Option<SocketProxy<'static>>,
}

impl UnitObject {
    async fn new(systemd: &Systemd, name: &str, path: OwnedObjectPath) -> Result<UnitObject, SystemdError> {
        Ok(UnitObject {
            unit: interface(systemd, name, &path).await?,
            service: match name.ends_with(".service") {
                true => Some(interface(systemd, name, &path).await?),
                false => None,
            },
            socket: match name.ends_with(".socket") {
                true => Some(interface(systemd, name, &path).await?),
                false => None,
            },
        })
    }
}

/// A proxy for one interface of the unit at `path`. Building it makes no call.
async fn interface<P>(systemd: &Systemd, name: &str, path: &OwnedObjectPath) -> Result<P, SystemdError>
where
    P: From<zbus::Proxy<'static>> + zbus::proxy::Defaults + zbus::proxy::ProxyImpl<'static>,
{
    P::builder(&systemd.connection)
        .path(path.clone())
        // The default, a lazy cache, fetches all properties of the interface on the first read
        // and then follows PropertiesChanged in the background: more traffic, and a read soon
        // after a change (NeedDaemonReload right after a daemon-reload) could see the old value.
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|error| unit_error(name, "creating a proxy", error))
}

impl Systemd {
    /// Connects to systemd over the system bus.
    ///
    /// `Ok(None)` when there is no systemd to talk to: the bus socket is missing or refuses
    /// connections (build machines, most containers), or the bus has no systemd on it. The
    /// kernel or the bus answers each of these at once, so this never waits for a timeout.
    pub fn connect() -> Result<Option<Systemd>, SystemdError> {
        let error = |error| SystemdError::Connect { error };
        zbus::block_on(async {
            let connection = match Connection::system().await {
                Ok(connection) => connection,
                Err(zbus::Error::Connection(io, _))
                    if matches!(io.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(error(e)),
            };
            // A bus without systemd (a container that runs dbus-daemon alone): asking for the
            // name now spares converge manager calls that would all fail later.
            let bus = zbus::fdo::DBusProxy::new(&connection).await.map_err(error)?;
            let name = zbus::names::BusName::from_static_str(SYSTEMD).map_err(error)?;
            if !bus.name_has_owner(name).await.map_err(|e| error(e.into()))? {
                return Ok(None);
            }
            let manager = ManagerProxy::new(&connection).await.map_err(error)?;
            Ok(Some(Systemd { connection, manager }))
        })
    }

    /// Observes `names`, in that order. All units are loaded first, then all their properties
    /// are requested at once (up to 64 calls in flight): two round trips to systemd for a
    /// handful of units.
    ///
    /// systemd unloads an inactive unit that nothing references right after each call, and
    /// loads it from disk again for the next. So for such a unit NeedDaemonReload is false (what
    /// is on disk is what systemd has), and an inactive service's TriggeredBy does not list its
    /// inactive socket, even when both are observed in one call (seen with systemd 252). The
    /// socket's Triggers is reliable: loading a socket loads its service.
    pub fn units(&self, names: &[String]) -> Result<Vec<UnitStatus>, SystemdError> {
        zbus::block_on(self.units_async(names))
    }

    async fn units_async(&self, names: &[String]) -> Result<Vec<UnitStatus>, SystemdError> {
        let paths = join_all(names.iter().map(|name| self.manager.load_unit(name))).await;
        let mut objects = Vec::with_capacity(names.len());
        for (name, path) in names.iter().zip(paths) {
            let path = path.map_err(|error| unit_error(name, "LoadUnit", error))?;
            objects.push(UnitObject::new(self, name, path).await?);
        }

        let mut statuses: Vec<UnitStatus> =
            names.iter().map(|name| UnitStatus { name: name.clone(), ..UnitStatus::default() }).collect();
        let mut invocation_ids = vec![Vec::new(); names.len()];
        // The reads of all units in one list, so that one bound covers them all (see join_all);
        // `owners` says which unit each read is for.
        let mut reads = Vec::new();
        let mut owners = Vec::new();
        for (i, ((object, s), invocation_id)) in objects.iter().zip(&mut statuses).zip(&mut invocation_ids).enumerate()
        {
            let unit = &object.unit;
            reads.extend([
                read("LoadState", &mut s.load_state, unit.load_state()),
                read("ActiveState", &mut s.active_state, unit.active_state()),
                read("SubState", &mut s.sub_state, unit.sub_state()),
                read("UnitFileState", &mut s.unit_file_state, unit.unit_file_state()),
                read("NeedDaemonReload", &mut s.need_daemon_reload, unit.need_daemon_reload()),
                read("TriggeredBy", &mut s.triggered_by, unit.triggered_by()),
                read("Triggers", &mut s.triggers, unit.triggers()),
                read("InvocationID", invocation_id, unit.invocation_id()),
                read("CanReload", &mut s.can_reload, unit.can_reload()),
                read("FragmentPath", &mut s.fragment_path, unit.fragment_path()),
            ]);
            if let Some(service) = &object.service {
                reads.push(read("RuntimeDirectory", &mut s.runtime_directory, service.runtime_directory()));
                reads.push(read(
                    "RuntimeDirectoryPreserve",
                    &mut s.runtime_directory_preserve,
                    service.runtime_directory_preserve(),
                ));
            }
            if let Some(socket) = &object.socket {
                reads.push(read("Listen", &mut s.listen, socket.listen()));
            }
            owners.resize(reads.len(), i);
        }
        for (result, owner) in join_all(reads).await.into_iter().zip(owners) {
            result.map_err(|(property, error)| SystemdError::Property {
                unit: names[owner].clone(),
                property,
                error,
            })?;
        }
        for (status, invocation_id) in statuses.iter_mut().zip(&invocation_ids) {
            status.invocation_id = hex(invocation_id);
        }
        Ok(statuses)
    }

    /// The running instances of a template (`app@.service` -> `app@one.service`, ...): the
    /// loaded units of its pattern that are active, activating or reloading, sorted by name.
    pub fn running_instances(&self, template: &str) -> Result<Vec<String>, SystemdError> {
        let Some(pattern) = crate::host::unit_file::instance_pattern(template) else { return Ok(Vec::new()) };
        let states = ["active", "activating", "reloading"];
        let units = zbus::block_on(self.manager.list_units_by_patterns(&states, &[&pattern]))
            .map_err(|error| unit_error(template, "ListUnitsByPatterns", error))?;
        let mut names: Vec<String> = units.into_iter().map(|u| u.0).filter(|name| name != template).collect();
        names.sort();
        Ok(names)
    }

    /// The processes of a service other than its main process (nginx's workers), by pid; none
    /// when it is not running.
    pub fn helper_processes(&self, unit: &str) -> Result<Vec<u32>, SystemdError> {
        zbus::block_on(async {
            let path = self.manager.load_unit(unit).await.map_err(|error| unit_error(unit, "LoadUnit", error))?;
            let object = UnitObject::new(self, unit, path).await?;
            let Some(service) = &object.service else { return Ok(Vec::new()) };
            let main = service.main_pid().await.map_err(|error| SystemdError::Property {
                unit: unit.to_string(),
                property: "MainPID",
                error,
            })?;
            if main == 0 {
                return Ok(Vec::new());
            }
            let processes = self
                .manager
                .get_unit_processes(unit)
                .await
                .map_err(|error| unit_error(unit, "GetUnitProcesses", error))?;
            Ok(processes.into_iter().map(|(_, pid, _)| pid).filter(|&pid| pid != main).collect())
        })
    }

    /// `systemctl daemon-reload`: returns once systemd has finished reloading.
    pub fn daemon_reload(&self) -> Result<(), SystemdError> {
        zbus::block_on(self.manager.reload())
            .map_err(|error| SystemdError::Manager { call: "Reload (daemon-reload)", error })
    }

    /// Enqueues `jobs` together (mode "replace") and waits until systemd has finished all of
    /// them, however long that takes: systemd's own timeouts (TimeoutStartSec=, ...) end a job
    /// that hangs. The first job, in the order given, that could not be enqueued or did not end
    /// `done` is the error, returned once all the others have finished too.
    ///
    /// A job is done when systemd says so, which for a start depends on the service's Type=:
    /// `simple` is started once forked, so an ExecStart= that exits with a failure right away
    /// still ends `done` (as with `systemctl start`); `exec` waits for the exec, `oneshot` for
    /// the exit, `notify` for READY=1, and those report the failure. Reading the unit right
    /// after such a `done` is no remedy: it showed the failed /bin/false 79 times in 100.
    /// So after a start or restart of a service that is not `oneshot`/`notify`, converge
    /// watches the unit for the job's settle time (see [`Systemd::settle`]).
    ///
    /// The jobs of one call run concurrently: conflicting jobs of one unit (stop, then start)
    /// belong to separate calls, or "replace" cancels the first.
    pub fn run_jobs(&self, jobs: &[Job]) -> Result<(), SystemdError> {
        if jobs.is_empty() {
            return Ok(());
        }
        zbus::block_on(self.run_jobs_async(jobs))
    }

    async fn run_jobs_async(&self, jobs: &[Job]) -> Result<(), SystemdError> {
        let manager_error = |call, error| SystemdError::Manager { call, error };
        // The subscription lasts as long as the connection, so a call after the first is
        // answered AlreadySubscribed: that is success too. It also makes systemd emit the
        // PropertiesChanged signals that the settle watch follows.
        match self.manager.subscribe().await {
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
            other => other.map_err(|error| manager_error("Subscribe", error))?,
        }
        // Listen before enqueueing: a job with nothing to do (starting an active unit) ends
        // before the reply to StartUnit reaches us, and the bus drops the signals sent before it
        // had our match rule. This returns once the bus has the rule.
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .map_err(|error| manager_error("listening for JobRemoved", error))?;

        // Every JobRemoved seen, job path -> result and when it came: systemd's own jobs and
        // other clients' too.
        let mut finished: HashMap<OwnedObjectPath, (String, Instant)> = HashMap::new();
        let mut enqueue = pin!(join_all(jobs.iter().map(|job| self.enqueue(job.action, &job.unit))));
        let mut enqueued: Option<Vec<Result<OwnedObjectPath, SystemdError>>> = None;
        let mut closed = false;
        poll_fn(|cx| {
            // Take the signals on every wake-up, also while enqueue calls are in flight: the
            // stream's queue is bounded (64), and while it is full the connection stops reading
            // its socket, so the replies to our calls would never arrive.
            loop {
                match Pin::new(&mut removed).poll_next(cx) {
                    Poll::Ready(Some(signal)) => {
                        // A signal with other arguments than documented is none of ours.
                        if let Ok(args) = signal.args() {
                            finished.insert(args.job, (args.result, Instant::now()));
                        }
                    }
                    Poll::Ready(None) => {
                        closed = true;
                        return Poll::Ready(());
                    }
                    Poll::Pending => break,
                }
            }
            if enqueued.is_none()
                && let Poll::Ready(paths) = enqueue.as_mut().poll(cx)
            {
                enqueued = Some(paths);
            }
            match &enqueued {
                Some(paths) if paths.iter().flatten().all(|job| finished.contains_key(job)) => Poll::Ready(()),
                _ => Poll::Pending,
            }
        })
        .await;
        // Remove the match rule now, rather than in the background after the drop.
        removed.async_drop().await;

        if closed {
            let units = jobs.iter().map(|job| job.unit.as_str()).collect();
            return Err(SystemdError::Disconnected { units: join(units) });
        }
        let mut settling = Vec::new();
        for (job, path) in jobs.iter().zip(enqueued.unwrap_or_default()) {
            let (result, when) = &finished[&path?];
            if result != JOB_DONE {
                return Err(self.job_failed(&job.unit, job.action, result).await);
            }
            if matches!(job.action, JobAction::Start | JobAction::Restart)
                && job.unit.ends_with(".service")
                && !job.settle.is_zero()
            {
                settling.push((job, *when + job.settle));
            }
        }
        self.settle(&settling).await
    }

    /// Watches services whose start or restart job just ended `done`, each until its deadline
    /// (the job's end + its settle time), through systemd's PropertiesChanged signals: one that
    /// goes to `failed`, or to `activating` with SubState `auto-restart` (died, and systemd
    /// starts it again by its Restart=), or whose NRestarts went up, did not start. Services of
    /// Type=oneshot, notify and notify-reload are not watched: their job already waits for
    /// them to be up (or done) and fails when they are not.
    ///
    /// Returns when every deadline has passed, or all watched services failed: a failing start
    /// adds the settle time to a run, a good one too (all of a phase's services are watched at
    /// once, so a phase waits about one settle time).
    async fn settle(&self, units: &[(&Job, Instant)]) -> Result<(), SystemdError> {
        if units.is_empty() {
            return Ok(());
        }
        let mut watches = Vec::new();
        for watch in join_all(units.iter().map(|(job, deadline)| self.watch(job, *deadline))).await {
            watches.extend(watch?);
        }
        let Some(last) = watches.iter().map(|w| w.deadline).max() else { return Ok(()) };
        let mut sleep = Sleep::new(last);
        let mut closed = false;
        poll_fn(|cx| {
            for watch in watches.iter_mut().filter(|w| w.failed.is_none()) {
                let Some(mut changes) = watch.changes.take() else { continue };
                loop {
                    match Pin::new(&mut changes).poll_next(cx) {
                        Poll::Ready(Some(signal)) if Instant::now() <= watch.deadline => watch.changed(&signal),
                        Poll::Ready(Some(_)) => {}
                        Poll::Ready(None) => {
                            closed = true;
                            return Poll::Ready(());
                        }
                        Poll::Pending => break,
                    }
                }
                watch.changes = Some(changes);
            }
            if watches.iter().all(|w| w.failed.is_some()) {
                return Poll::Ready(());
            }
            Pin::new(&mut sleep).poll(cx)
        })
        .await;
        if closed {
            let units = watches.iter().map(|w| w.job.unit.as_str()).collect();
            return Err(SystemdError::Disconnected { units: join(units) });
        }
        for mut watch in watches {
            if let Some(changes) = watch.changes.take() {
                changes.async_drop().await;
            }
            // A last look, for a change whose signal was merged with a later one.
            let (active, sub, restarts) = (
                watch.object.unit.active_state().await,
                watch.object.unit.sub_state().await,
                watch.service().n_restarts().await,
            );
            if watch.failed.is_none()
                && let (Ok(active), Ok(sub)) = (active, sub)
            {
                watch.state(&active, &sub);
            }
            let restarts = restarts.unwrap_or(watch.restarts).saturating_sub(watch.restarts);
            if watch.failed.is_none() && restarts == 0 {
                continue;
            }
            let (active_state, sub_state) =
                watch.failed.clone().unwrap_or_else(|| (watch.active.clone(), watch.sub.clone()));
            return Err(SystemdError::Settle {
                unit: watch.job.unit.clone(),
                action: watch.job.action,
                settle: watch.job.settle,
                active_state,
                sub_state,
                unit_result: watch.service().result().await.ok(),
                restarts,
            });
        }
        Ok(())
    }

    /// Starts watching one service; None for a type that needs no watch.
    async fn watch<'a>(&self, job: &'a Job, deadline: Instant) -> Result<Option<Watch<'a>>, SystemdError> {
        let unit = job.unit.as_str();
        let property = |property| move |error| SystemdError::Property { unit: unit.to_string(), property, error };
        let path = self.manager.load_unit(unit).await.map_err(|error| unit_error(unit, "LoadUnit", error))?;
        let object = UnitObject::new(self, unit, path.clone()).await?;
        let Some(service) = &object.service else { return Ok(None) };
        let kind = service.service_type().await.map_err(property("Type"))?;
        if matches!(kind.as_str(), "oneshot" | "notify" | "notify-reload") {
            return Ok(None);
        }
        let properties = zbus::fdo::PropertiesProxy::builder(&self.connection)
            .destination(SYSTEMD)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|error| unit_error(unit, "creating a proxy", error))?;
        // Listen first, then read: a change after the read comes as a signal.
        let changes = properties
            .receive_properties_changed()
            .await
            .map_err(|error| unit_error(unit, "listening for PropertiesChanged", error))?;
        let restarts = service.n_restarts().await.map_err(property("NRestarts"))?;
        let active = object.unit.active_state().await.map_err(property("ActiveState"))?;
        let sub = object.unit.sub_state().await.map_err(property("SubState"))?;
        let mut watch = Watch {
            job,
            deadline,
            object,
            changes: Some(changes),
            restarts,
            active: String::new(),
            sub: String::new(),
            failed: None,
        };
        watch.state(&active, &sub);
        Ok(Some(watch))
    }

    async fn enqueue(&self, action: JobAction, unit: &str) -> Result<OwnedObjectPath, SystemdError> {
        let m = &self.manager;
        let job = match action {
            JobAction::Start => m.start_unit(unit, JOB_MODE).await,
            JobAction::Stop => m.stop_unit(unit, JOB_MODE).await,
            JobAction::Restart => m.restart_unit(unit, JOB_MODE).await,
            JobAction::Reload => m.reload_unit(unit, JOB_MODE).await,
        };
        job.map_err(|error| unit_error(unit, action.method(), error))
    }

    /// The error for a job of `unit` that ended with `result`, with the unit's state as it is
    /// now: the job's result alone ("failed") does not say why.
    async fn job_failed(&self, unit: &str, action: JobAction, result: &str) -> SystemdError {
        // The state only adds detail to an error already found: what cannot be read is "?".
        let state = async {
            let path = self.manager.load_unit(unit).await.ok()?;
            let object = UnitObject::new(self, unit, path).await.ok()?;
            let active_state = object.unit.active_state().await.ok()?;
            let sub_state = object.unit.sub_state().await.ok()?;
            let unit_result = match (&object.service, &object.socket) {
                (Some(service), _) => service.result().await.ok(),
                (_, Some(socket)) => socket.result().await.ok(),
                _ => None,
            };
            Some((active_state, sub_state, unit_result))
        };
        let (active_state, sub_state, unit_result) =
            state.await.unwrap_or_else(|| ("?".to_string(), "?".to_string(), None));
        SystemdError::JobFailed {
            unit: unit.to_string(),
            action,
            result: result.to_string(),
            active_state,
            sub_state,
            unit_result,
        }
    }

    /// `systemctl enable --no-reload`: creates the symlinks that the units' `[Install]` sections
    /// ask for. A unit without one is left as it is (`systemctl` warns about it).
    ///
    /// Like a unit file change, this needs a daemon-reload afterwards (`systemctl enable`
    /// does one unless told `--no-reload`): systemd reads the new dependencies only then, and
    /// until then a loaded unit keeps reporting its old UnitFileState. The same holds for
    /// `disable`, `mask` and `unmask`.
    pub fn enable(&self, units: &[String]) -> Result<(), SystemdError> {
        self.unit_files(units, "EnableUnitFiles", |m, files| async move {
            m.enable_unit_files(&files, false, false).await.map(|_| ())
        })
    }

    /// `systemctl disable --no-reload`: removes the symlinks made for the `[Install]` sections.
    pub fn disable(&self, units: &[String]) -> Result<(), SystemdError> {
        self.unit_files(units, "DisableUnitFiles", |m, files| async move {
            m.disable_unit_files(&files, false).await.map(|_| ())
        })
    }

    /// `systemctl mask --no-reload`: links the units to /dev/null in /etc/systemd/system, for
    /// good (not under /run), replacing a symlink there (force). A real unit file of that name
    /// in /etc cannot be masked: systemd refuses with UnitExists.
    pub fn mask(&self, units: &[String]) -> Result<(), SystemdError> {
        self.unit_files(units, "MaskUnitFiles", |m, files| async move {
            m.mask_unit_files(&files, false, true).await.map(|_| ())
        })
    }

    /// `systemctl unmask --no-reload`.
    pub fn unmask(&self, units: &[String]) -> Result<(), SystemdError> {
        self.unit_files(units, "UnmaskUnitFiles", |m, files| async move {
            m.unmask_unit_files(&files, false).await.map(|_| ())
        })
    }

    /// One unit-file call for all of `units`: systemd applies them together.
    fn unit_files<'a, F, Fut>(&'a self, units: &'a [String], call: &'static str, f: F) -> Result<(), SystemdError>
    where
        F: FnOnce(&'a ManagerProxy<'static>, Vec<&'a str>) -> Fut,
        Fut: Future<Output = zbus::Result<()>>,
    {
        if units.is_empty() {
            return Ok(());
        }
        let files: Vec<&str> = units.iter().map(String::as_str).collect();
        let names = join(files.clone());
        zbus::block_on(f(&self.manager, files)).map_err(|error| unit_error(&names, call, error))
    }
}

/// A service being watched after its start: see [`Systemd::settle`].
struct Watch<'a> {
    job: &'a Job,
    deadline: Instant,
    object: UnitObject,
    /// The PropertiesChanged signals of its object; taken out while polled and at the end.
    changes: Option<zbus::fdo::PropertiesChangedStream>,
    /// NRestarts when the watch began.
    restarts: u32,
    /// The last ActiveState and SubState seen.
    active: String,
    sub: String,
    /// The failing (ActiveState, SubState), once seen.
    failed: Option<(String, String)>,
}

impl Watch<'_> {
    fn service(&self) -> &ServiceProxy<'static> {
        self.object.service.as_ref().expect("only services are watched")
    }

    /// A PropertiesChanged signal of the unit's object: systemd sends the new values of
    /// ActiveState and SubState with it (interface org.freedesktop.systemd1.Unit).
    fn changed(&mut self, signal: &zbus::fdo::PropertiesChanged) {
        let Ok(args) = signal.args() else { return };
        if args.interface_name.as_str() != "org.freedesktop.systemd1.Unit" {
            return;
        }
        let text = |name| args.changed_properties.get(name).and_then(|v| String::try_from(v).ok());
        let active = text("ActiveState").unwrap_or_else(|| self.active.clone());
        let sub = text("SubState").unwrap_or_else(|| self.sub.clone());
        self.state(&active, &sub);
    }

    fn state(&mut self, active: &str, sub: &str) {
        self.active = active.to_string();
        self.sub = sub.to_string();
        if self.failed.is_none() && failing(active, sub) {
            self.failed = Some((self.active.clone(), self.sub.clone()));
        }
    }
}

/// The states of a service that died: `failed`, or waiting to be started again by Restart=.
fn failing(active_state: &str, sub_state: &str) -> bool {
    active_state == "failed" || sub_state == "auto-restart"
}

/// A future that is ready at `deadline`. zbus's small runtime offers converge no timer, so a
/// thread sleeps until then and wakes the task.
struct Sleep {
    deadline: Instant,
    waker: Option<Arc<Mutex<Waker>>>,
}

impl Sleep {
    fn new(deadline: Instant) -> Sleep {
        Sleep { deadline, waker: None }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        match &self.waker {
            Some(waker) => waker.lock().unwrap().clone_from(cx.waker()),
            None => {
                let waker = Arc::new(Mutex::new(cx.waker().clone()));
                let (shared, deadline) = (waker.clone(), self.deadline);
                std::thread::spawn(move || {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    shared.lock().unwrap().wake_by_ref();
                });
                self.waker = Some(waker);
            }
        }
        Poll::Pending
    }
}

fn unit_error(unit: &str, call: &'static str, error: zbus::Error) -> SystemdError {
    SystemdError::Unit { unit: unit.to_string(), call, error }
}

fn join(units: Vec<&str>) -> String {
    units.join(", ")
}

/// One pending property read: stores the value in its slot, or fails with the property's name.
type Read<'a> = Pin<Box<dyn Future<Output = Result<(), (&'static str, zbus::Error)>> + 'a>>;

fn read<'a, T: 'a>(
    property: &'static str,
    slot: &'a mut T,
    value: impl Future<Output = zbus::Result<T>> + 'a,
) -> Read<'a> {
    Box::pin(async move {
        *slot = value.await.map_err(|error| (property, error))?;
        Ok(())
    })
}

/// Runs `futures` concurrently on the current task; their outputs in the same order. At most
/// [`MAX_PENDING_CALLS`] run at a time: a future sends its D-Bus call when first polled, so the
/// rest wait unpolled. (A few lines instead of a futures-util dependency.)
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut started = 0;
    poll_fn(|cx| {
        let mut running = 0;
        for (future, output) in futures[..started].iter_mut().zip(&mut outputs[..started]) {
            // A finished future must not be polled again.
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => running += 1,
                }
            }
        }
        while running < MAX_PENDING_CALLS && started < futures.len() {
            match futures[started].as_mut().poll(cx) {
                Poll::Ready(value) => outputs[started] = Some(value),
                Poll::Pending => running += 1,
            }
            started += 1;
        }
        if running == 0 && started == futures.len() { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Lower-case hex, as `systemctl show -p InvocationID` prints it.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_failed_job_names_the_unit_the_action_and_the_state() {
        let error = SystemdError::JobFailed {
            unit: "gunicorn.service".to_string(),
            action: JobAction::Restart,
            result: "failed".to_string(),
            active_state: "failed".to_string(),
            sub_state: "failed".to_string(),
            unit_result: Some("exit-code".to_string()),
        };
        assert_eq!(
            error.to_string(),
            "gunicorn.service: job restart finished with `failed` (ActiveState=failed, SubState=failed, Result=exit-code)"
        );
    }

    #[test]
    fn a_failed_job_of_a_unit_without_result_leaves_it_out() {
        let error = SystemdError::JobFailed {
            unit: "data.mount".to_string(),
            action: JobAction::Start,
            result: "timeout".to_string(),
            active_state: "inactive".to_string(),
            sub_state: "dead".to_string(),
            unit_result: None,
        };
        assert_eq!(
            error.to_string(),
            "data.mount: job start finished with `timeout` (ActiveState=inactive, SubState=dead)"
        );
    }

    #[test]
    fn a_service_that_died_is_failed_or_waiting_to_restart() {
        assert!(failing("failed", "failed"));
        assert!(failing("activating", "auto-restart"));
        assert!(!failing("active", "running"));
        assert!(!failing("inactive", "dead"), "an ExecStart= that exits 0 did not fail");
        assert!(!failing("activating", "start"));
    }

    #[test]
    fn a_settle_failure_says_how_long_and_what_systemd_did() {
        let error = |restarts, active: &str, sub: &str| SystemdError::Settle {
            unit: "app.service".into(),
            action: JobAction::Restart,
            settle: Duration::from_millis(1500),
            active_state: active.into(),
            sub_state: sub.into(),
            unit_result: Some("exit-code".into()),
            restarts,
        };
        assert_eq!(
            error(0, "activating", "auto-restart").to_string(),
            "app.service: the restart job finished, but within 1.5 s the service failed (ActiveState=activating, \
             SubState=auto-restart, Result=exit-code)"
        );
        assert!(error(2, "active", "running").to_string().contains("died and was restarted by systemd (2x)"));
        assert_eq!(error(0, "failed", "failed").failed_unit(), Some("app.service"));
    }

    #[test]
    fn invocation_ids_are_lower_case_hex() {
        assert_eq!(hex(&[0x0f, 0xa0, 0x00, 0xff]), "0fa000ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn join_all_keeps_the_order_of_its_futures() {
        let outputs = zbus::block_on(join_all((0..5).map(|i| async move { i * 2 })));
        assert_eq!(outputs, [0, 2, 4, 6, 8]);
    }

    /// A future that is pending on its first poll, counting how many such futures are between
    /// their first poll and their end.
    async fn pending_once(running: &AtomicUsize, most: &AtomicUsize) -> usize {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        let mut first = true;
        poll_fn(|cx| {
            if std::mem::take(&mut first) {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        running.fetch_sub(1, Ordering::SeqCst);
        now
    }

    #[test]
    fn join_all_runs_at_most_max_pending_calls_at_once() {
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let outputs = zbus::block_on(join_all((0..200).map(|_| pending_once(&running, &most))));
        assert_eq!(outputs.len(), 200);
        assert_eq!(most.load(Ordering::SeqCst), MAX_PENDING_CALLS);
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }
}
