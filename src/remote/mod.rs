//! Remote hosts: `converge plan|apply PLAYBOOK --host ...` (or `--inventory`) converges other
//! machines over SSH, each with the same engine that runs locally.
//!
//! ```text
//! here                                         each target, over one ssh connection
//! ----                                         ------------------------------------
//! targets (--host, --inventory, --limit)
//! resolve the playbook for each target         (errors point at the local YAML; a playbook
//!   with its vars, recording the files read      with any stops the run before any host)
//! bundle: playbook + those files + vars
//! bundle as a tar stream over stdin      --->  is converge SHA256 in the cache, and only
//!                                              its user's to write (find)? if so:
//!                                                tar -x in a private temp dir;
//!                                                converge plan|apply --output json
//! render each record, prefixed by host   <---    one JSON record per line
//!                                              if not: OS and uname -m
//! (only then) check them, send this binary -->  temp file, size + sha256 checked, rename;
//!                                              then the run again
//! summary table, exit code
//! ```
//!
//! - **Why the engine runs on the target.** Observing a host means reading files, the user
//!   database, dpkg's status and systemd over D-Bus; applying means atomic renames, fsyncs and
//!   D-Bus jobs. Done over ssh round trips that would be slow and would lose the engine's
//!   guarantees (atomic writes, the lock, the trigger journal). So converge sends itself (one
//!   Rust binary that needs only the C library: no Python or agent on the target), and the
//!   target needs only `sh`, `tar`, `find`, `mktemp` and an sshd. See `session.rs` for the steps.
//! - **The bundle** (`bundle.rs`) carries what the target's resolve reads: the playbook text,
//!   exactly the template/source files the local resolve read, the playbook's modules and the
//!   variables as vars files. It is resolved here first so that mistakes are reported against
//!   the local files and nothing is sent for a broken playbook, and resolved again there by the
//!   same binary on the same inputs, which is why the bundle does not need a serialized form of
//!   the resources: the engine's own `plan` and `apply` run unchanged.
//! - **The protocol back** is the engine's `--output json`: one record per line
//!   (`engine::record::Record`, docs/output.md), the first saying its format, which the session
//!   checks; each is rendered by the renderer of local runs. Errors are the engine's stderr and
//!   exit code.
//! - **Transport** (`ssh.rs`): the system's OpenSSH client, argv only, one multiplexed connection
//!   per host (ControlMaster), kept for the next run (`--ssh-persist`), BatchMode. `--ssh-config
//!   FILE` is `ssh -F FILE`.
//! - **Failures stay per host**: an unreachable host, a refused sudo, a failed apply, a host past
//!   `--timeout` (its ssh stopped) end that host with its reason; the others go on, `--forks` at
//!   a time (all, up to [`FORKS`]), and the exit code is 1.
//! - **Ctrl-C** (`interrupt.rs`) stops the local ssh processes and closes the master
//!   connections, skips hosts not yet started and still prints the summary. On each target the
//!   engine reads nothing but notices the connection go (the run script watches its stdin) and
//!   is sent SIGTERM, on which it stops between two of its atomic steps (engine/stop.rs): every
//!   file it wrote is whole (old or new), and the triggers its changes owe are in the journal, which the next run fires. A
//!   program it had started (a `command`, apt) finishes on its own; nothing after it starts.
//!
//! remote/ imports the engine (to resolve and bundle a playbook), the playbook layer and the
//! host; never output/ or the command line: sessions report `session::Event`s, which
//! commands/remote.rs hands to output/.

pub mod binary;
pub mod bundle;
pub mod interrupt;
pub mod inventory;
pub mod report;
pub mod session;
pub mod ssh;
pub mod tar;
pub mod target;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use binary::Binary;
use bundle::Bundle;
use report::{HostReport, Outcome, RunKind, Tally};
use session::{Event, Session};
use target::Target;

/// A remote host of the run: where it is reached (its [`Target`]), what it gets (its bundle), and
/// how many resources the playbook has for it. (`crate::host::Host` is the machine converge runs
/// on.)
pub struct Remote {
    pub target: Target,
    pub bundle: Bundle,
    pub resources: usize,
}

/// What a run does with saved plans (docs/saved-plans.md, "Remote hosts"): one file per host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SavedPlans {
    /// None: the playbook is planned or applied.
    #[default]
    None,
    /// `plan --out DIR`: each target's engine saves its plan and sends it back
    /// ([`session::Event::SavedPlan`]); `allow_secrets` is passed on.
    Save { allow_secrets: bool },
    /// `apply --plan DIR`: each bundle holds its host's saved plan ([`Bundle::saved_plan`]),
    /// which the target's engine applies exactly, or refuses.
    Apply,
}

/// How many hosts a run converges at once without `--forks`: all of them, up to this many. A host
/// costs this machine an ssh client (about 50 ms of CPU for the handshake, then nothing but
/// waiting), so the fleet's run time, not the CPU, is what a smaller number would cost; past
/// this many, ssh clients and servers competing for the CPU slow every host.
pub const FORKS: usize = 50;

/// What every host of a run shares.
pub struct Fleet<'a> {
    pub hosts: &'a [Remote],
    pub binary: &'a Binary,
    pub mode: RunKind,
    /// `--root DIR`, passed to each target's engine.
    pub root: Option<&'a Path>,
    /// `--ssh-config`, `--connect-timeout` and where the master connections are.
    pub ssh: ssh::Options<'a>,
    /// `--become` for every host (an inventory can set it per host too).
    pub become_root: bool,
    pub forks: usize,
    /// `--timeout`: how long a host may take, from its first connection to its last record;
    /// None: no limit.
    pub timeout: Option<Duration>,
    /// `apply --lock-wait SECONDS` on each target.
    pub lock_wait: u64,
    /// `apply --jobs N` on each target.
    pub jobs: u8,
    /// Saved plans: made and sent back by each target, or applied there.
    pub saved: SavedPlans,
}

impl Fleet<'_> {
    /// Converges every host, `forks` at a time; `event` sees each event, on this thread, as it
    /// comes, with its host's report so far. Returns one report per host, in the hosts' order.
    pub fn converge(&self, mut event: impl FnMut(&Event, &HostReport)) -> Vec<HostReport> {
        let mut reports: Vec<HostReport> = self
            .hosts
            .iter()
            .map(|h| HostReport {
                name: h.target.name.clone(),
                resources: h.resources,
                tally: Tally::default(),
                outcome: Outcome::Interrupted,
                elapsed: Duration::ZERO,
            })
            .collect();
        let next = AtomicUsize::new(0);
        let (sender, receiver) = mpsc::channel();
        std::thread::scope(|scope| {
            for _ in 0..self.forks.clamp(1, self.hosts.len().max(1)) {
                let sender = sender.clone();
                let next = &next;
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(host) = self.hosts.get(i) else { break };
                        let session = Session {
                            host: i,
                            target: &host.target,
                            bundle: &host.bundle,
                            fleet: self,
                            control: self.ssh.masters.socket(i, &host.target, self.ssh.config),
                            sudo: self.become_root || host.target.become_root,
                            deadline: self.timeout.map(|t| std::time::Instant::now() + t),
                        };
                        session.run(&sender);
                    }
                });
            }
            drop(sender);
            for e in receiver {
                let host = match &e {
                    Event::Record { host, record } => {
                        reports[*host].tally.record(record);
                        *host
                    }
                    Event::Done { host, outcome, elapsed } => {
                        reports[*host].outcome = outcome.clone();
                        reports[*host].elapsed = *elapsed;
                        *host
                    }
                    Event::Uploading { host, .. }
                    | Event::Uploaded { host, .. }
                    | Event::Cached { host, .. }
                    | Event::SavedPlan { host, .. }
                    | Event::Text { host, .. } => *host,
                };
                event(&e, &reports[host]);
            }
        });
        reports
    }
}

/// A directory only this run can use (mode 0700), removed when dropped.
pub struct PrivateDir(PathBuf);

impl PrivateDir {
    pub fn new() -> std::io::Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        // ssh's control sockets live here; a socket path must stay under ~100 bytes.
        let base = Some(std::env::temp_dir()).filter(|t| t.as_os_str().len() < 60).unwrap_or_else(|| "/tmp".into());
        let mut attempt = 0u32;
        loop {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos());
            let path = base.join(format!("converge-{}-{:x}", std::process::id(), nanos.unwrap_or(attempt)));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
