//! Ctrl-C (and SIGTERM, SIGHUP) during a remote run: the ssh processes are stopped, the hosts
//! not yet started are skipped, and the run ends through its normal path, which closes the
//! master connections, removes the private temp directory and prints the summary.
//!
//! No signal handler runs: the signals are blocked in every thread (threads inherit the mask
//! of the one that spawns them) and one thread takes them with `sigwait`, safe code that may
//! lock and signal as it likes. A second signal exits at once. Children would inherit the mask
//! too (std's `Command` keeps it, since Rust 1.66), and an ssh that blocks SIGTERM cannot be
//! stopped: so ssh is started here with `posix_spawn` and an empty mask.
//!
//! The pids of live ssh children are kept in a registry. A child is removed from it only after
//! it has exited and before it is reaped (`waitid` with `WNOWAIT`), so a pid in the registry
//! always names our child, never a recycled pid.

use std::collections::BTreeSet;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawnp};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static CHILDREN: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// ssh's master connections (their control sockets): a master holds the pipes of the sessions it
/// serves, so they end only when it does.
static MASTERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static WATCH: Once = Once::new();

fn signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Starts taking the signals. Call it before any other thread is spawned.
pub fn watch() {
    WATCH.call_once(|| {
        let set = signals();
        if set.thread_block().is_err() {
            return;
        }
        std::thread::spawn(move || {
            while let Ok(signal) = set.wait() {
                if INTERRUPTED.swap(true, Ordering::SeqCst) {
                    std::process::exit(128 + signal as i32);
                }
                {
                    let children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
                    for pid in children.iter() {
                        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
                    }
                }
                let masters = MASTERS.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for socket in masters.iter().filter(|s| s.exists()) {
                    close_master(socket);
                }
            }
        });
    });
}

/// Records a master connection's control socket, which an interrupt closes.
pub fn master(socket: &Path) {
    MASTERS.lock().unwrap_or_else(|e| e.into_inner()).push(socket.to_owned());
}

/// Asks the master connection at `socket` to exit (`ssh -O exit`): its sessions end with it.
/// Whether there was one.
pub fn close_master(socket: &Path) -> bool {
    ask_master(socket, "exit")
}

/// Asks the master connection at `socket` to take no new sessions and exit after its last
/// (`ssh -O stop`): a run that uses it finishes. Whether there was one.
pub fn stop_master(socket: &Path) -> bool {
    ask_master(socket, "stop")
}

/// `ssh -O COMMAND` to the master at `socket`.
fn ask_master(socket: &Path, command: &str) -> bool {
    let mut path = OsString::from("ControlPath=");
    path.push(socket);
    // The destination only names the connection; the socket is given.
    std::process::Command::new("ssh")
        .arg("-o")
        .arg(path)
        .args(["-O", command, "--", "converge-master"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the run was interrupted.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// A child process with its stdin, stdout and stderr piped.
pub struct Child {
    pid: Pid,
    pub stdin: Option<std::io::PipeWriter>,
    pub stdout: Option<std::io::PipeReader>,
    pub stderr: Option<std::io::PipeReader>,
}

/// Starts `argv` (the program found in PATH) as a child that an interrupt stops, with the
/// default signal mask and SIGPIPE's default action, as a program expects to start.
pub fn spawn(argv: &[OsString]) -> io::Result<Child> {
    let cstring = |s: &[u8]| CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte"));
    let args: Vec<CString> = argv.iter().map(|a| cstring(a.as_bytes())).collect::<io::Result<_>>()?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<io::Result<_>>()?;
    let program = args.first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no program"))?;
    let (stdin_r, stdin_w) = io::pipe()?;
    let (stdout_r, stdout_w) = io::pipe()?;
    let (stderr_r, stderr_w) = io::pipe()?;
    let mut actions = PosixSpawnFileActions::init()?;
    // The pipes are close-on-exec; dup2 makes the child's copies stay open.
    actions.add_dup2(stdin_r.as_raw_fd(), 0)?;
    actions.add_dup2(stdout_w.as_raw_fd(), 1)?;
    actions.add_dup2(stderr_w.as_raw_fd(), 2)?;
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_sigmask(&SigSet::empty())?;
    attr.set_sigdefault(&SigSet::from(Signal::SIGPIPE))?;
    attr.set_flags(PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF)?;
    let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    if interrupted() {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
    }
    let pid = posix_spawnp(program, &actions, &attr, &args, &env)?;
    children.insert(pid.as_raw());
    Ok(Child { pid, stdin: Some(stdin_w), stdout: Some(stdout_r), stderr: Some(stderr_r) })
}

impl Child {
    /// Its process id, for [`stop`].
    pub fn pid(&self) -> Pid {
        self.pid
    }
}

/// Sends `signal` to `pid` if it is a child of [`spawn`] that has not been reaped (so never to
/// a recycled pid).
pub fn stop(pid: Pid, signal: Signal) {
    let children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    if children.contains(&pid.as_raw()) {
        let _ = kill(pid, signal);
    }
}

/// How a child ended: its exit code, or None when a signal killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub Option<i32>);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(code) => write!(f, "exit status {code}"),
            None => f.write_str("killed by a signal"),
        }
    }
}

/// Waits for a child of `spawn`, and forgets it before it is reaped.
pub fn wait(child: Child) -> io::Result<Exit> {
    let Child { pid, stdin, stdout, stderr } = child;
    drop((stdin, stdout, stderr));
    while let Err(nix::errno::Errno::EINTR) = waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {}
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid.as_raw());
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Exit(Some(code))),
            Ok(WaitStatus::Signaled(..)) => return Ok(Exit(None)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
