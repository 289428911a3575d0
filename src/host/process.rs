//! The programs converge runs: the playbook's commands and guards, and the tools it drives
//! (apt-get, pip, nginx, useradd...). One way to run each, from here:
//!
//! - an argument vector, never a shell string;
//! - a clean, explicit environment, like sudo's env_reset: `PATH`, `LANG`, and `HOME`, `USER`,
//!   `LOGNAME` of the user it runs as, plus what the resource sets; nothing of the operator's
//!   shell (a `PIP_FIND_LINKS` or `PYTHONPATH` there never reaches the host's pip), but for the
//!   proxy settings (`http_proxy`, `https_proxy`, `no_proxy`...) of programs that download;
//! - under `--root`, a program of the converged system runs inside the root (chroot, with the
//!   working directory set after it) and in its own mount, PID, IPC, UTS and network namespaces
//!   (unshare(1)), so `systemctl stop` or `ufw enable` inside an image cannot change this
//!   machine; it has no network unless the resource asks for it.
//!
//! Also what converge knows of a program before it runs it: where it is (`find_program`, as
//! execvp would find it, without running it) and whether an account may execute it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use super::{FileKind, Host};

/// sudo's `secure_path`: where Debian keeps its programs.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The proxy settings a program that downloads keeps from converge's own environment.
const PROXY: &[&str] =
    &["http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"];

/// A program to run, built up and then turned into a `Command`.
pub struct Program<'h> {
    host: &'h Host,
    argv: Vec<OsString>,
    /// Inside the root (a program of the converged system) or on this machine (a tool that works
    /// on the root from outside, like `useradd --root`).
    inside: bool,
    user: Option<Account>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    network: bool,
}

/// Who a program runs as: its ids, and the name and HOME its environment gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The user id it runs with.
    pub uid: u32,
    /// Its only group: the processes converge starts have no supplementary groups.
    pub gid: u32,
    /// `USER` and `LOGNAME`; empty when the uid has no account.
    pub name: String,
    /// `HOME` (`/` when the uid has no account).
    pub home: String,
}

impl Host {
    /// A program of the converged system: a command of the playbook, apt-get, pip, nginx. Under
    /// `--root` it runs inside the root, in namespaces of its own.
    pub fn program<S: AsRef<OsStr>>(&self, argv: &[S]) -> Program<'_> {
        Program::new(self, argv, true)
    }

    /// A tool of this machine that works on the root from outside (`useradd --root DIR`).
    pub fn tool<S: AsRef<OsStr>>(&self, argv: &[S]) -> Program<'_> {
        Program::new(self, argv, false)
    }
}

/// A file a host tool may write outside the root (`nginx -t`'s pid file), in this machine's
/// temporary directory, named after this run; removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!("converge-{}-{name}", std::process::id())))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl<'h> Program<'h> {
    fn new<S: AsRef<OsStr>>(host: &'h Host, argv: &[S], inside: bool) -> Program<'h> {
        let argv = argv.iter().map(|a| a.as_ref().to_owned()).collect();
        Program { host, argv, inside, user: None, env: Vec::new(), cwd: None, network: false }
    }

    /// Runs it as this account (with its group only), with its name and HOME.
    pub fn user(mut self, account: &Account) -> Self {
        self.user = Some(account.clone());
        self
    }

    /// Sets a variable of its environment, over the clean one.
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Its working directory, a path of the root (`/` by default).
    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_owned());
        self
    }

    /// Lets it reach the network under `--root` (package downloads; the live host's programs
    /// always share the host's network), and keeps the operator's proxy settings.
    pub fn network(mut self, network: bool) -> Self {
        self.network = network;
        self
    }

    /// What it runs, for messages.
    pub fn shown(&self) -> String {
        shell_words::join(self.argv.iter().map(|a| a.to_string_lossy()))
    }

    /// The command, ready to spawn. What it does to the files is unknown: the directories
    /// walked so far are forgotten.
    pub fn command(&self) -> Command {
        self.host.forget_dirs();
        let me = nix::unistd::geteuid().as_raw();
        let cwd = self.cwd.clone().unwrap_or_else(|| PathBuf::from("/"));
        let mut command = match (self.inside, self.host.root()) {
            (true, Some(root)) => {
                let mut command = Command::new("unshare");
                command.args(["--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child"]);
                if !self.network {
                    command.arg("--net");
                }
                if self.host.stat(Path::new("/proc")).ok().flatten().is_some_and(|s| s.kind == FileKind::Directory) {
                    command.arg("--mount-proc");
                }
                if me != 0 {
                    // Trying converge without root: a user namespace lends the chroot.
                    command.arg("--map-root-user");
                }
                let mut root_arg = OsString::from("--root=");
                root_arg.push(root);
                let mut wd_arg = OsString::from("--wd=");
                wd_arg.push(&cwd);
                command.arg(root_arg).arg(wd_arg);
                if let Some(user) = self.user.as_ref().filter(|u| u.uid != 0 && me == 0) {
                    command.arg(format!("--setgid={}", user.gid)).arg(format!("--setuid={}", user.uid));
                }
                command.arg("--").args(&self.argv);
                command
            }
            _ => {
                let mut command = Command::new(&self.argv[0]);
                command.args(&self.argv[1..]);
                if let Some(user) = &self.user
                    && (user.uid != me || user.gid != nix::unistd::getegid().as_raw())
                {
                    // std drops the supplementary groups (setgroups(0)) before setuid.
                    std::os::unix::process::CommandExt::uid(&mut command, user.uid);
                    std::os::unix::process::CommandExt::gid(&mut command, user.gid);
                }
                command.current_dir(if self.inside { self.host.path(&cwd) } else { cwd });
                command
            }
        };
        let (name, home) = match &self.user {
            Some(user) => (user.name.clone(), user.home.clone()),
            None if me == 0 => ("root".to_owned(), "/root".to_owned()),
            None => {
                let user = nix::unistd::User::from_uid(me.into()).ok().flatten();
                let name = user.as_ref().map(|u| u.name.clone()).unwrap_or_default();
                (name, user.map(|u| u.dir.to_string_lossy().into_owned()).unwrap_or_else(|| "/".into()))
            }
        };
        command.env_clear().env("PATH", PATH).env("LANG", "C.UTF-8").env("HOME", home);
        if !name.is_empty() {
            command.env("USER", &name).env("LOGNAME", &name);
        }
        if self.network {
            for key in PROXY {
                if let Some(value) = std::env::var_os(key) {
                    command.env(key, value);
                }
            }
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Runs it to its end, its stdin empty. With `stream`, what it prints goes to converge's
    /// stderr as it comes (never to stdout, which may carry JSON), and a failure says only how it
    /// ended; else its output is kept, and a failure carries what it said.
    pub fn run(&self, stream: bool) -> Result<(), Failure> {
        let mut command = self.command();
        command.stdin(Stdio::null());
        let cannot = |error: io::Error| Failure::Start { shown: self.shown(), error };
        if stream {
            let stderr = io::stderr().as_fd().try_clone_to_owned().map_err(cannot)?;
            let status = command.stdout(Stdio::from(stderr)).stderr(Stdio::inherit()).status().map_err(cannot)?;
            return if status.success() { Ok(()) } else { Err(Failure::Streamed(status)) };
        }
        let output = command.output().map_err(cannot)?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let said = if stderr.trim().is_empty() { stdout.trim() } else { stderr.trim() };
        Err(Failure::Said { status: output.status, said: last_lines(said) })
    }
}

/// A long story (a traceback) cut to its end, which says what went wrong: the last 20 lines of
/// more than 30.
fn last_lines(said: &str) -> String {
    let lines: Vec<&str> = said.lines().collect();
    match lines.len() {
        n if n > 30 => format!("[{} lines before]\n{}", n - 20, lines[n - 20..].join("\n")),
        _ => said.to_owned(),
    }
}

/// How a program that [`Program::run`] ran failed. It reads after the name of what failed:
/// `pip install failed (exit status: 1):` and what pip said.
#[derive(Debug)]
pub enum Failure {
    /// It could not be started.
    Start {
        /// What it runs ([`Program::shown`]).
        shown: String,
        /// Why not.
        error: io::Error,
    },
    /// It ended in failure, its output already on the terminal.
    Streamed(ExitStatus),
    /// It ended in failure and said something.
    Said {
        /// How it ended.
        status: ExitStatus,
        /// Its stderr, else its stdout, trimmed; the end of a long story.
        said: String,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Start { shown, error } => write!(f, "to start: cannot run `{shown}`: {error}"),
            Failure::Streamed(status) => write!(f, "({status}); its output is above"),
            Failure::Said { status, said } => write!(f, "({status}):\n{said}"),
        }
    }
}

impl Host {
    /// The account that a resource owned by `owner` and `group` (names) runs its programs as:
    /// None for whoever runs converge, and the owner's primary group when `group` is None. None
    /// when the owner does not exist; an unknown group is an error (NotFound).
    pub fn account(&self, owner: Option<&str>, group: Option<&str>) -> io::Result<Option<Account>> {
        let user = match owner {
            Some(name) => match self.user(name)? {
                Some(user) => Some(user),
                None => return Ok(None),
            },
            None => None,
        };
        let uid = user.as_ref().map_or_else(|| nix::unistd::geteuid().as_raw(), |u| u.uid);
        let gid = match group {
            Some(name) => self.gid(name)?,
            None => user.as_ref().map_or_else(|| nix::unistd::getegid().as_raw(), |u| u.gid),
        };
        let entry = match user {
            Some(user) => Some(user),
            None => self.user(&self.user_name(uid)?)?,
        };
        let (name, home) = entry.map_or_else(|| (String::new(), "/".to_owned()), |u| (u.name, u.home));
        Ok(Some(Account { uid, gid, name, home }))
    }

    /// Finds a program without running it, as execvp(3) would: `program` itself when it is a
    /// path, else the first executable regular file of that name in the directories of `search`
    /// (a PATH; relative entries are skipped). Paths are the root's (under `--root`, where a
    /// chroot would look); the answer is the real file, its symlinks followed inside the root.
    pub fn find_program(&self, program: &str, search: &str) -> io::Result<Option<PathBuf>> {
        let candidates: Vec<PathBuf> = if program.starts_with('/') {
            vec![PathBuf::from(program)]
        } else {
            search.split(':').filter(|d| d.starts_with('/')).map(|d| Path::new(d).join(program)).collect()
        };
        for candidate in candidates {
            let Ok(real) = self.real_path(&candidate)? else { continue };
            match self.stat(&real)? {
                Some(stat) if stat.kind == FileKind::File && stat.mode.0 & 0o111 != 0 => return Ok(Some(real)),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Why `account` cannot execute `program` (a path of the root), or None when it can: every
    /// directory on the way needs search (x) permission and the file execute permission, for
    /// the account's uid and its one group (the processes converge starts have no
    /// supplementary groups).
    pub fn cannot_execute(&self, program: &Path, account: &Account) -> io::Result<Option<String>> {
        let mut paths: Vec<&Path> = program.ancestors().skip(1).collect();
        paths.reverse();
        paths.push(program);
        for path in paths {
            let Some(stat) = self.stat(path)? else {
                return Ok(Some(format!("{} does not exist", path.display())));
            };
            let bits = match () {
                _ if account.uid == 0 => {
                    if stat.kind == FileKind::Directory || stat.mode.0 & 0o111 != 0 {
                        continue;
                    }
                    0
                }
                _ if stat.uid == account.uid => (stat.mode.0 >> 6) & 7,
                _ if stat.gid == account.gid => (stat.mode.0 >> 3) & 7,
                _ => stat.mode.0 & 7,
            };
            if bits & 1 == 0 {
                let what = if stat.kind == FileKind::Directory { "search" } else { "execute" };
                let owner = match (self.user_name(stat.uid), self.group_name(stat.gid)) {
                    (Ok(user), Ok(group)) => format!("{user}:{group}"),
                    _ => format!("{}:{}", stat.uid, stat.gid),
                };
                return Ok(Some(format!("no {what} permission on {} ({owner}, {})", path.display(), stat.mode)));
            }
        }
        Ok(None)
    }
}

/// Processes whose end converge waits for (nginx's old workers after a reload): a pidfd each,
/// opened before the event that ends them, so that a reused pid can never be mistaken for one.
pub struct Exits {
    /// (pid, pidfd)
    pending: Vec<(u32, std::os::fd::OwnedFd)>,
}

impl Host {
    /// Starts watching `pids` for their exit. A process already gone, or a kernel without
    /// pidfd_open (before 5.3), gives nothing to wait for.
    pub fn watch_exits(&self, pids: &[u32]) -> Exits {
        use std::os::fd::FromRawFd;
        let mut pending = Vec::new();
        for &pid in pids {
            // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
            let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
            if fd >= 0 {
                // SAFETY: the fd was just returned to us, and nothing else owns it.
                pending.push((pid, unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }));
            }
        }
        Exits { pending }
    }
}

impl Exits {
    /// Waits until every watched process has exited, at most `timeout`; the pids still running.
    pub fn wait(mut self, timeout: std::time::Duration) -> Vec<u32> {
        use std::os::fd::AsRawFd;
        let deadline = std::time::Instant::now() + timeout;
        while !self.pending.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds: Vec<nix::libc::pollfd> = self
                .pending
                .iter()
                .map(|(_, fd)| nix::libc::pollfd { fd: fd.as_raw_fd(), events: nix::libc::POLLIN, revents: 0 })
                .collect();
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the call.
            let ready = unsafe { nix::libc::poll(fds.as_mut_ptr(), fds.len() as nix::libc::nfds_t, ms) };
            if ready < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
            // A pidfd is readable once its process has exited.
            let exited: Vec<bool> = fds.iter().map(|p| p.revents != 0).collect();
            let mut flags = exited.into_iter();
            self.pending.retain(|_| !flags.next().unwrap_or(false));
        }
        self.pending.iter().map(|(pid, _)| *pid).collect()
    }
}
