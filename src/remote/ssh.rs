//! `Ssh`: the system's OpenSSH client, driven with argument vectors.
//!
//! The user's `~/.ssh/config`, agent and known_hosts apply as they do to `ssh` itself (or only
//! the file of `--ssh-config`, which ssh reads instead with `-F`). Every run opens one connection
//! per host and multiplexes its sessions over it: `ControlMaster=auto` with a socket in the
//! run's private temp directory, `ControlPersist` short so that a run killed outright leaves no
//! master behind for long; a finished host's master is closed with `ssh -O exit`.
//! `BatchMode=yes`: ssh never prompts (a password or an unknown host key fails the host with
//! ssh's own message instead of hanging the run).
//!
//! ssh joins the words after the destination into one command line for the remote login shell,
//! so each remote command is a single `sh -c SCRIPT` string whose every variable part went
//! through `shell_words::quote`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::target::Target;

/// How long an idle master connection outlives its last session.
const PERSIST: &str = "ControlPersist=15";
/// An unreachable host fails after this long instead of TCP's minutes.
const CONNECT_TIMEOUT: &str = "ConnectTimeout=10";

pub struct Ssh {
    options: Vec<OsString>,
    destination: String,
    control: PathBuf,
    sudo: bool,
}

impl Ssh {
    /// ssh to `target`, its master socket at `control`, with `-F config` when given.
    pub fn new(target: &Target, config: Option<&Path>, control: PathBuf, sudo: bool) -> Ssh {
        let mut options: Vec<OsString> = Vec::new();
        let mut opt = |words: &[&str]| options.extend(words.iter().map(OsString::from));
        if let Some(config) = config {
            opt(&["-F"]);
            options.push(config.into());
        }
        let mut opt = |words: &[&str]| options.extend(words.iter().map(OsString::from));
        opt(&["-o", "BatchMode=yes", "-o", CONNECT_TIMEOUT, "-o", "ControlMaster=auto", "-o", PERSIST]);
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

    /// The command line the remote login shell runs.
    pub fn remote_command(&self, script: &str) -> String {
        let sh = format!("sh -c {}", shell_words::quote(script));
        if self.sudo { format!("sudo -n {sh}") } else { sh }
    }

    /// The arguments of every ssh run, for `-v` and tests.
    pub fn options(&self) -> &[OsString] {
        &self.options
    }

    /// Closes the master connection, if one was opened.
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
        let ssh = Ssh::new(&target, Some(Path::new("/tmp/ssh config")), "/run/c/0".into(), true);
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
