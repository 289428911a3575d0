//! `Ssh`: the system's OpenSSH client, driven with argument vectors.
//!
//! The user's `~/.ssh/config`, agent and known_hosts apply as they do to `ssh` itself (or only
//! the file of `--ssh-config`, which ssh reads instead with `-F`). Every run opens one connection
//! per host and multiplexes its sessions over it (`ControlMaster=auto`), and keeps it open for
//! the next run ([`Masters`]): a `plan` followed by an `apply` pays for one handshake per host.
//! `BatchMode=yes`: ssh never prompts (a password or an unknown host key fails the host with
//! ssh's own message instead of hanging the run).
//!
//! ssh joins the words after the destination into one command line for the remote login shell,
//! so each remote command is a single `sh -c SCRIPT` string whose every variable part went
//! through `shell_words::quote`.

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::target::Target;

/// How long an idle master connection of a run's private directory outlives its last session: a
/// run killed outright leaves none behind for long.
const PER_RUN_PERSIST: Duration = Duration::from_secs(15);

/// The ssh settings that every host of a run shares.
pub struct Options<'a> {
    /// `--ssh-config FILE` (`ssh -F FILE`).
    pub config: Option<&'a Path>,
    /// `--connect-timeout`: seconds for the connection and the handshake.
    pub connect_timeout: u16,
    /// Where the master connections are, and whether they outlive the run.
    pub masters: Masters,
}

/// Where a run's master connections (their control sockets) are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Masters {
    /// In the run's private directory, each closed when its host is done (`--ssh-persist 0`, or
    /// when there is no control directory, see [`control_dir`]).
    PerRun(PathBuf),
    /// In converge's control directory, kept open `idle` after their last session, for the next
    /// run to the same host from the same network namespace, ssh config and login.
    Kept { dir: PathBuf, idle: Duration },
}

impl Masters {
    /// Kept masters in the control directory when `idle` is not zero and there is one; else the
    /// run's own, in `run_dir`.
    pub fn new(idle: Duration, run_dir: &Path) -> Masters {
        match control_dir().filter(|_| !idle.is_zero()) {
            Some(dir) => Masters::Kept { dir, idle },
            None => Masters::PerRun(run_dir.to_owned()),
        }
    }

    /// The control socket for host number `i` of the run, `target`.
    pub fn socket(&self, i: usize, target: &Target, config: Option<&Path>) -> PathBuf {
        match self {
            Masters::PerRun(dir) => dir.join(format!("{i}.ssh")),
            Masters::Kept { dir, .. } => dir.join(socket_name(target, config)),
        }
    }

    /// Whether a host's master stays open when its run is done.
    pub fn kept(&self) -> bool {
        matches!(self, Masters::Kept { .. })
    }

    fn persist(&self) -> Duration {
        match self {
            Masters::PerRun(_) => PER_RUN_PERSIST,
            Masters::Kept { idle, .. } => *idle,
        }
    }
}

/// converge's own directory of kept connections: `/run/converge/ssh` for root,
/// `$XDG_RUNTIME_DIR/converge/ssh` for another user (None without it: never a shared name in
/// /tmp). Made mode 0700; used only when it and its parent are real directories of this user
/// that nobody else may write, and short enough for a socket path (108 bytes, of which ssh
/// takes 17 for a temporary name and converge 24 for the socket's).
pub fn control_dir() -> Option<PathBuf> {
    let base = if nix::unistd::geteuid().is_root() {
        PathBuf::from("/run")
    } else {
        PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?)
    };
    let parent = base.join("converge");
    let dir = parent.join("ssh");
    if !base.is_absolute() || dir.as_os_str().len() > 60 {
        return None;
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).ok()?;
    [&parent, &dir].iter().all(|d| private(d)).then_some(dir)
}

/// A directory (not a symlink) of this user that no one else may write.
fn private(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0)
}

/// The control socket's name for `target`: a hash of what picks the connection, the network
/// namespace included (the same address can be another machine in another namespace).
fn socket_name(target: &Target, config: Option<&Path>) -> String {
    let netns = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).unwrap_or(0);
    let key = serde_json::json!([netns, target.destination, target.user, target.port, target.key, config]);
    let hash = Sha256::digest(key.to_string());
    hash.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Closes every connection kept in the control directory (`converge disconnect`): each ends
/// when idle, at once unless a run is using it. Returns how many were open.
pub fn close_kept() -> usize {
    let Some(dir) = control_dir() else { return 0 };
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let sockets = entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_socket()));
    sockets.filter(|e| super::interrupt::stop_master(&e.path())).count()
}

pub struct Ssh {
    options: Vec<OsString>,
    destination: String,
    control: PathBuf,
    sudo: bool,
}

impl Ssh {
    /// ssh to `target`, its master socket at `control`, with `-F config` when given; an
    /// unreachable host (or one that does not finish the handshake) fails after
    /// `connect_timeout` seconds instead of TCP's minutes.
    pub fn new(target: &Target, shared: &Options, control: PathBuf, sudo: bool) -> Ssh {
        let mut options: Vec<OsString> = Vec::new();
        let mut opt = |words: &[&str]| options.extend(words.iter().map(OsString::from));
        if let Some(config) = shared.config {
            opt(&["-F"]);
            options.push(config.into());
        }
        let mut opt = |words: &[&str]| options.extend(words.iter().map(OsString::from));
        opt(&["-o", "BatchMode=yes", "-o", &format!("ConnectTimeout={}", shared.connect_timeout)]);
        opt(&["-o", "ControlMaster=auto", "-o", &format!("ControlPersist={}", shared.masters.persist().as_secs())]);
        options.push("-o".into());
        let mut path = OsString::from("ControlPath=");
        path.push(&control);
        options.push(path);
        if let Some(user) = &target.user {
            options.extend(["-l".into(), user.into()]);
        }
        if let Some(port) = target.port {
            options.extend(["-p".into(), port.to_string().into()]);
        }
        if let Some(key) = &target.key {
            options.extend(["-i".into(), key.into(), "-o".into(), "IdentitiesOnly=yes".into()]);
        }
        super::interrupt::master(&control);
        Ssh { options, destination: target.destination.clone(), control, sudo }
    }

    /// `ssh OPTIONS -- DESTINATION 'sh -c SCRIPT'` (through `sudo -n` with --become).
    pub fn argv(&self, script: &str) -> Vec<OsString> {
        let mut argv = vec![OsString::from("ssh")];
        argv.extend(self.options.iter().cloned());
        argv.extend(["--".into(), self.destination.clone().into(), self.remote_command(script).into()]);
        argv
    }

    /// `ssh -o ControlMaster=yes OPTIONS -f -N -- DESTINATION`: opens the master connection, which
    /// goes to the background once logged in. Opened on its own, it serves every session as a
    /// mux client and holds none of their pipes (the master that a session opens keeps a copy of
    /// that session's stdio for as long as the session lasts, even past its ssh client).
    pub fn master_argv(&self) -> Vec<OsString> {
        // ssh takes the first value given for an option.
        let mut argv: Vec<OsString> = ["ssh", "-o", "ControlMaster=yes"].map(OsString::from).into();
        argv.extend(self.options.iter().cloned());
        argv.extend(["-f", "-N", "--"].map(OsString::from));
        argv.push(self.destination.clone().into());
        argv
    }

    /// Whether a master connection's socket is there (a stale one is replaced by the next
    /// session, as `ControlMaster=auto` does).
    pub fn master_open(&self) -> bool {
        self.control.exists()
    }

    /// The command line the remote login shell runs.
    pub fn remote_command(&self, script: &str) -> String {
        let sh = format!("sh -c {}", shell_words::quote(script));
        if self.sudo { format!("sudo -n {sh}") } else { sh }
    }

    /// The arguments of every ssh run, for `-v` and tests.
    pub fn options(&self) -> &[OsString] {
        &self.options
    }

    /// Closes the master connection, if one was opened (and is not kept for the next run).
    pub fn close(&self) {
        if self.control.exists() {
            super::interrupt::close_master(&self.control);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_and_remote_command() {
        let mut target = Target::parse("deploy@web1:2222").unwrap();
        target.key = Some("/keys/id".into());
        let shared = Options {
            config: Some(Path::new("/tmp/ssh config")),
            connect_timeout: 10,
            masters: Masters::PerRun("/r".into()),
        };
        let ssh = Ssh::new(&target, &shared, "/run/c/0".into(), true);
        let words: Vec<String> = ssh.options().iter().map(|o| o.to_string_lossy().into_owned()).collect();
        assert_eq!(
            words,
            [
                "-F",
                "/tmp/ssh config",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ControlMaster=auto",
                "-o",
                "ControlPersist=15",
                "-o",
                "ControlPath=/run/c/0",
                "-l",
                "deploy",
                "-p",
                "2222",
                "-i",
                "/keys/id",
                "-o",
                "IdentitiesOnly=yes"
            ]
        );
        let args: Vec<String> =
            ssh.argv("echo 'it''s'; exit 0").iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args[0], "ssh");
        assert_eq!(args[args.len() - 2..], ["web1".to_owned(), ssh.remote_command("echo 'it''s'; exit 0")]);
        // What the remote shell gets back is the script, word for word.
        let words = shell_words::split(&ssh.remote_command("echo 'it''s'; exit 0")).unwrap();
        assert_eq!(words, ["sudo", "-n", "sh", "-c", "echo 'it''s'; exit 0"]);
    }
}
