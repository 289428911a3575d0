//! `Session`: converge one host over ssh, over one multiplexed connection.
//!
//! - **Probe and run**, one session: the run script first looks for this very binary in the
//!   target's cache (`/var/cache/converge/SHA256/converge` for root, `~/.cache/converge/...`
//!   for another user; `sudo -n` makes it root's with --become). When it is there, the bundle
//!   streams over stdin into a fresh private directory (`mktemp -d`, `tar -x`), the engine runs
//!   there as `converge plan|apply PLAYBOOK --output json` with the bundle's vars files, its
//!   stdout comes back one JSON record per line, and the directory is removed when it ends.
//!   When it is not, the script says so with the target's OS and `uname -m`, and stops.
//! - **Trust**: a cached binary runs only where nobody but the user it runs as can have written
//!   it: the binary, its directory and the cache directory are that user's, no symlink among
//!   them, none writable by group or others; every directory above the cache directory is that
//!   user's or root's and not writable by group or others (unless sticky, like /tmp). One
//!   `find` per level checks this in the same session as the probe, from metadata alone: the
//!   binary is not hashed again on each run. Anything else counts as missing, and is uploaded
//!   again.
//! - **Upload**, only then, after the OS and architecture were checked here: a cache or
//!   binary directory that fails the trust rule is moved aside (`NAME.untrusted.TIME.PID`) and
//!   made afresh, private (umask 077); above it, a directory that fails it stops the host with
//!   its name. The bytes stream over ssh's stdin into a temporary file beside their place,
//!   whose size and sha256 are checked before it is made executable and renamed in, so a cut
//!   connection never leaves a truncated binary where the next run would trust it. Then the
//!   run script again.
//!
//! Our end keeps ssh's stdin open while the engine runs: when it closes (Ctrl-C here, or the
//! connection dropped), the script stops the engine with SIGTERM. The script itself then ignores
//! SIGPIPE: dash reports a job killed by a signal ("Terminated") on stderr, which is gone by
//! then, and would die of it before removing its directory. Nothing from the playbook is
//! on the remote command line (where `ps` would show it): only paths this module makes, each
//! quoted.

use std::io::PipeWriter;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use shell_words::quote;

use super::binary::arch_of_uname;
use super::bundle::Bundle;
use super::interrupt::{self, Exit};
use super::report::{Outcome, RunKind, reason};
use super::ssh::Ssh;
use super::target::Target;
use super::{Fleet, SavedPlans};
use crate::engine::record::Record;

/// What a session reports as it goes.
#[derive(Debug)]
pub enum Event {
    /// The binary is being sent to the host (`bytes` of it); `Uploaded` or `Done` follows.
    Uploading {
        host: usize,
        bytes: u64,
    },
    /// The binary was sent to the host.
    Uploaded {
        host: usize,
        path: String,
        bytes: u64,
        /// The cached copy that was there but not trusted (a path the trust rule refused).
        untrusted: Option<String>,
    },
    /// The binary was there already.
    Cached {
        host: usize,
        path: String,
    },
    /// A record of the engine's `--output json` (its stream record aside, which the session
    /// checks).
    Record {
        host: usize,
        record: Record,
    },
    /// The plan the target's engine saved (`plan --out`), as the JSON of its file.
    SavedPlan {
        host: usize,
        json: String,
    },
    /// A line of the engine's stdout that is not a record (a login script's chatter, say).
    Text {
        host: usize,
        line: String,
    },
    Done {
        host: usize,
        outcome: Outcome,
        elapsed: Duration,
    },
}

/// One host's run.
pub struct Session<'a> {
    pub host: usize,
    pub target: &'a Target,
    pub bundle: &'a Bundle,
    /// What every host of the run shares: binary, mode, --root, ssh config, --lock-wait.
    pub fleet: &'a Fleet<'a>,
    /// The master connection's socket.
    pub control: PathBuf,
    pub sudo: bool,
    /// `--timeout`: when its ssh is stopped and the host fails.
    pub deadline: Option<Instant>,
}

/// Why a step stopped the session.
type Stop = Outcome;

impl Session<'_> {
    /// Converges the host; every event, `Done` last, goes to `events`.
    pub fn run(&self, events: &Sender<Event>) {
        let start = Instant::now();
        let outcome = if interrupt::interrupted() {
            Outcome::Interrupted
        } else {
            let ssh = Ssh::new(self.target, &self.fleet.ssh, self.control.clone(), self.sudo);
            let outcome = self.steps(&ssh, events).unwrap_or_else(|stop| stop);
            // A master that hangs is no use to the next run.
            if !self.fleet.ssh.masters.kept() || matches!(outcome, Outcome::TimedOut(_)) {
                ssh.close();
            }
            if interrupt::interrupted() && !matches!(outcome, Outcome::Ran { code: 0 | 2, .. }) {
                Outcome::Interrupted
            } else {
                outcome
            }
        };
        let _ = events.send(Event::Done { host: self.host, outcome, elapsed: start.elapsed() });
    }

    fn steps(&self, ssh: &Ssh, events: &Sender<Event>) -> Result<Outcome, Stop> {
        if !ssh.master_open() {
            self.open_master(ssh)?;
        }
        // Usually converge is there already, and one session probes and runs.
        let probe = match self.run_engine(ssh, events, true)? {
            Engine::Ran(outcome) => return Ok(outcome),
            Engine::Missing(probe) => probe,
        };
        let field = |name: &str| {
            probe.iter().find_map(|l| l.strip_prefix(name)?.strip_prefix('=')).map(str::to_owned).unwrap_or_default()
        };
        let (os, machine, path) = (field("os"), field("arch"), field("bin"));
        let untrusted = Some(field("untrusted")).filter(|u| !u.is_empty());
        if os != "Linux" {
            return Err(Outcome::Failed(format!("the target runs {os}; converge provisions Linux hosts")));
        }
        let here = std::env::consts::ARCH;
        if arch_of_uname(&machine) != here {
            return Err(Outcome::Failed(format!(
                "the target is {machine} and this converge is built for {here}: run a converge built for \
                 {machine} (cargo build --release --target {machine}-unknown-linux-gnu)"
            )));
        }
        if let Some(needed) = self.fleet.binary.glibc {
            let has = super::binary::parse_glibc(&field("libc"));
            if has.is_none_or(|has| has < needed) {
                let has = has.map(|(a, b)| format!("glibc {a}.{b}")).unwrap_or_else(|| "no glibc".to_owned());
                return Err(Outcome::Failed(format!(
                    "the target has {has}, and this converge is linked dynamically against glibc {}.{} so it \
                     would not start there; build a static converge, which --host then uploads instead: {}",
                    needed.0,
                    needed.1,
                    super::binary::static_build_hint()
                )));
            }
        }
        self.upload(ssh, events)?;
        let _ = events.send(Event::Uploaded { host: self.host, path, bytes: self.fleet.binary.size, untrusted });
        match self.run_engine(ssh, events, false)? {
            Engine::Ran(outcome) => Ok(outcome),
            Engine::Missing(_) => Err(Outcome::Failed(
                "converge was uploaded but cannot be run there (is the cache directory on a noexec filesystem?)".into(),
            )),
        }
    }

    /// The run script: the probe, then (when converge is there) the engine on the bundle.
    /// `announce`: say that converge was found.
    fn run_engine(&self, ssh: &Ssh, events: &Sender<Event>, announce: bool) -> Result<Engine, Stop> {
        let host = self.host;
        let mut probe: Vec<String> = Vec::new();
        // Whether the engine's records can be read: None until its stream record came.
        let mut readable: Option<Result<(), String>> = None;
        let (status, stderr) = self.exchange(
            ssh,
            &ssh.argv(&self.run_script()),
            |stdin| self.bundle.write_tar(stdin),
            Stdin::Hold,
            |line| {
                if let Some(json) = line.strip_prefix(SAVED_PLAN) {
                    let _ = events.send(Event::SavedPlan { host, json: json.to_owned() });
                    return;
                }
                if let Some(field) = line.strip_prefix("converge-probe ") {
                    if field == "present" && announce {
                        let path = probe.iter().find_map(|l| l.strip_prefix("bin=")).unwrap_or_default().to_owned();
                        let _ = events.send(Event::Cached { host, path });
                    }
                    probe.push(field.to_owned());
                    return;
                }
                match (serde_json::from_str::<Record>(&line), &readable) {
                    // Once the format is known to differ, nothing of the stream is read.
                    (_, Some(Err(_))) => {}
                    (Ok(Record::Stream(stream)), None) => readable = Some(stream.check()),
                    (Ok(record), Some(Ok(()))) => {
                        let _ = events.send(Event::Record { host, record });
                    }
                    (Ok(_), None) => {
                        readable = Some(Err("the target's converge sent records without a stream record first (a \
                                             converge older than this one?): run the same converge on both ends"
                            .into()))
                    }
                    (Err(_), _) => {
                        let _ = events.send(Event::Text { host, line });
                    }
                }
            },
        )?;
        if let Some(Err(why)) = readable {
            return Err(Outcome::Failed(why));
        }
        if probe.iter().any(|l| l == "missing") {
            return Ok(Engine::Missing(probe));
        }
        match status.0 {
            Some(255) => Err(Outcome::Unreachable(lost(&stderr))),
            // Before the probe answered: sudo refused, or no POSIX shell.
            Some(code) if !probe.iter().any(|l| l == "present") => Err(Outcome::Failed(
                reason(&stderr)
                    .unwrap_or_else(|| format!("the target's shell did not run the probe (exit status {code})")),
            )),
            Some(code) => Ok(Engine::Ran(Outcome::Ran { code, stderr })),
            None => Err(Outcome::Failed("ssh was killed".into())),
        }
    }

    /// Opens the host's master connection (see [`Ssh::master_argv`]).
    fn open_master(&self, ssh: &Ssh) -> Result<(), Stop> {
        let (status, stderr) = self.exchange(ssh, &ssh.master_argv(), |_| Ok(()), Stdin::Close, |_| {})?;
        match status.0 {
            Some(0) => Ok(()),
            _ => Err(Outcome::Unreachable(lost(&stderr))),
        }
    }

    /// [`exchange`] before the host's deadline: past it, ssh is stopped and the host fails.
    fn exchange(
        &self,
        ssh: &Ssh,
        argv: &[std::ffi::OsString],
        input: impl FnOnce(&mut PipeWriter) -> std::io::Result<()> + Send,
        keep: Stdin,
        line: impl FnMut(String),
    ) -> Result<(Exit, String), Stop> {
        let reply = exchange(ssh, argv, input, keep, line, self.deadline)
            .map_err(|e| Outcome::Failed(format!("cannot run ssh: {e}")))?;
        if reply.timed_out {
            return Err(Outcome::TimedOut(self.fleet.timeout.unwrap_or_default()));
        }
        Ok((reply.status, reply.stderr))
    }

    /// Sets `base` (the cache directory), `dir` (this binary's), `bin` and `uid`, and defines
    /// the trust rule's functions ([`TRUST`]).
    fn prelude(&self) -> String {
        format!(
            "uid=$(id -u); if [ \"$uid\" = 0 ]; then base=/var/cache/converge; else base=\"${{XDG_CACHE_HOME:-$HOME/.cache}}/converge\"; fi; \
             dir=\"$base\"/{sha}; bin=\"$dir\"/converge; {TRUST}",
            sha = quote(&self.fleet.binary.sha256)
        )
    }

    fn upload(&self, ssh: &Ssh, events: &Sender<Event>) -> Result<(), Stop> {
        let sha = quote(&self.fleet.binary.sha256);
        let size = self.fleet.binary.size;
        let script = format!(
            "set -e; umask 077; {prelude}; \
             above=$(unsafe_above) || :; [ -z \"$above\" ] || {{ echo \"converge's cache cannot be made safe: $(first_line \"$above\") is writable by others or not owned by root or uid $uid\" >&2; exit 1; }}; \
             for d in \"$base\" \"$dir\"; do \
               if [ -e \"$d\" ] || [ -L \"$d\" ]; then \
                 if [ ! -d \"$d\" ] || [ -n \"$(unsafe_own \"$d\")\" ]; then mv -f \"$d\" \"$d.untrusted.$(date +%s).$$\"; fi; \
               fi; \
               mkdir -p \"$d\"; \
             done; \
             if [ -L \"$bin\" ] || {{ [ -e \"$bin\" ] && [ ! -f \"$bin\" ]; }}; then mv -f \"$bin\" \"$bin.untrusted.$(date +%s).$$\"; fi; \
             tmp=$(mktemp \"$dir/.upload.XXXXXX\"); \
             trap 'rm -f \"$tmp\"' EXIT; cat >\"$tmp\"; size=$(wc -c <\"$tmp\" | tr -d ' '); \
             [ \"$size\" = {size} ] || {{ echo \"the upload stopped after $size of {size} bytes\" >&2; exit 1; }}; \
             if command -v sha256sum >/dev/null 2>&1; then sum=$(sha256sum <\"$tmp\"); sum=${{sum%% *}}; \
             [ \"$sum\" = {sha} ] || {{ echo \"the uploaded binary's sha256 is $sum, not {sha}\" >&2; exit 1; }}; fi; \
             chmod 755 \"$tmp\"; mv -f \"$tmp\" \"$bin\"; trap - EXIT",
            prelude = self.prelude()
        );
        let path = self.fleet.binary.path.clone();
        let _ = events.send(Event::Uploading { host: self.host, bytes: size });
        let (status, stderr) = self.exchange(
            ssh,
            &ssh.argv(&script),
            |stdin| {
                let mut file = std::fs::File::open(&path)?;
                std::io::copy(&mut file, stdin).map(|_| ())
            },
            Stdin::Close,
            |_| {},
        )?;
        match status.0 {
            Some(0) => Ok(()),
            Some(255) => Err(Outcome::Unreachable(lost(&stderr))),
            _ => Err(Outcome::Failed(format!(
                "uploading converge failed: {}",
                reason(&stderr).unwrap_or_else(|| status.to_string())
            ))),
        }
    }

    fn run_script(&self) -> String {
        let playbook = quote(&self.bundle.playbook);
        let mut args = match (self.fleet.saved, self.fleet.mode) {
            (SavedPlans::Apply, RunKind::Plan) => vec![format!("apply --plan {playbook} --check")],
            (SavedPlans::Apply, RunKind::Apply) => vec![format!("apply --plan {playbook}")],
            (_, RunKind::Plan) => vec![format!("plan {playbook}")],
            (_, RunKind::Apply) => vec![format!("apply {playbook}")],
        };
        args.push("--output json --no-color".to_owned());
        // The saved plan comes back on one line after the engine's records (its pretty JSON
        // holds newlines only between tokens: strings escape theirs).
        let mut send_back = String::new();
        if let SavedPlans::Save { allow_secrets } = self.fleet.saved {
            args.push("--out \"$work\"/saved-plan.json".to_owned());
            if allow_secrets {
                args.push("--allow-secrets".to_owned());
            }
            send_back = format!(
                "if [ -f \"$work\"/saved-plan.json ]; then printf '{SAVED_PLAN}'; tr -d '\\n' <\"$work\"/saved-plan.json; echo; fi; "
            );
        }
        if self.fleet.mode == RunKind::Apply && self.fleet.lock_wait > 0 {
            args.push(format!("--lock-wait {}", self.fleet.lock_wait));
        }
        // Its default may differ from the target's (CONVERGE_JOBS here): always said.
        if self.fleet.mode == RunKind::Apply {
            args.push(format!("--jobs {}", self.fleet.jobs));
        }
        if let Some(root) = self.fleet.root {
            args.push(format!("--root {}", quote(&root.to_string_lossy())));
        }
        for file in self.bundle.vars_files() {
            args.push(format!("--vars-file \"$work\"/{}", quote(&file)));
        }
        for file in self.bundle.secrets_files() {
            args.push(format!("--secrets-file \"$work\"/{}", quote(&file)));
        }
        format!(
            "umask 077; {prelude}; printf 'converge-probe bin=%s\\n' \"$bin\"; \
             untrusted=; if [ -x \"$bin\" ]; then untrusted=$(unsafe_own \"$base\" \"$dir\" \"$bin\"; unsafe_above); \
             [ -z \"$untrusted\" ] || printf 'converge-probe untrusted=%s\\n' \"$(first_line \"$untrusted\")\"; fi; \
             if [ -x \"$bin\" ] && [ -f \"$bin\" ] && [ -z \"$untrusted\" ]; then echo converge-probe present; else echo converge-probe missing; \
             printf 'converge-probe os=%s\\n' \"$(uname -s)\"; printf 'converge-probe arch=%s\\n' \"$(uname -m)\"; \
             printf 'converge-probe libc=%s\\n' \"$(getconf GNU_LIBC_VERSION 2>/dev/null)\"; exit 0; fi; \
             work=$(mktemp -d \"${{TMPDIR:-/tmp}}/converge.XXXXXX\") || exit 1; \
             trap 'rm -rf \"$work\"' EXIT; \
             tar -x -o -f - -C \"$work\" || {{ echo 'converge: the bundle could not be unpacked on the target' >&2; exit 1; }}; \
             cd \"$work\"/{dir} || exit 1; exec 3<&0; \"$bin\" {args} </dev/null 3<&- & engine=$!; \
             {{ while read -r _; do :; done; kill -TERM \"$engine\"; }} <&3 >/dev/null 2>&1 & watch=$!; \
             exec 3<&-; trap '' PIPE; trap 'exit 143' HUP TERM; \
             wait \"$engine\"; status=$?; kill \"$watch\" 2>/dev/null; {send_back}exit $status",
            prelude = self.prelude(),
            dir = quote(&self.bundle.dir.to_string_lossy()),
            args = args.join(" "),
        )
    }
}

/// The trust rule, as shell functions of `$uid` and `$base`: `unsafe_own PATH...` prints the
/// paths that are a symlink, not `$uid`'s, or writable by group or others; `unsafe_above`
/// the directories above `$base` that are neither root's nor `$uid`'s, or writable by group
/// or others without the sticky bit (one that does not exist yet is no objection: the upload
/// makes it, private). Nothing when all pass. POSIX `find` only (`-prune` keeps it from
/// descending), metadata only; `first_line` keeps the first path for a message.
const TRUST: &str = "unsafe_own() { find \"$@\" -prune \\( -type l -o ! -user \"$uid\" -o -perm -020 -o -perm -002 \\) -print 2>&1; }; \
     unsafe_above() { _p=${base%/*}; set --; while [ -n \"$_p\" ]; do if [ -e \"$_p\" ] || [ -L \"$_p\" ]; then set -- \"$@\" \"$_p\"; fi; _p=${_p%/*}; done; \
     find \"$@\" / -prune ! -type l \\( ! -user 0 ! -user \"$uid\" -o \\( -perm -020 -o -perm -002 \\) ! -perm -1000 \\) -print 2>&1; }; \
     first_line() { printf '%s\\n' \"${1%%\"\n\"*}\"; }";

/// The prefix of the line that carries a saved plan back (`plan --out` with `--host`).
const SAVED_PLAN: &str = "converge-saved-plan ";

/// What the run script did: ran the engine, or found converge missing (with the probe's
/// `os=`, `arch=`, `bin=` answers).
enum Engine {
    Ran(Outcome),
    Missing(Vec<String>),
}

/// What ssh said when it lost the host (exit 255).
fn lost(stderr: &str) -> String {
    reason(stderr).unwrap_or_else(|| {
        "ssh exited with 255 and said nothing (does the ssh config set LogLevel FATAL or QUIET?)".into()
    })
}

/// Whether stdin stays open once `input` wrote it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stdin {
    Close,
    /// Open until the remote command ends: its end of file tells the target we are gone.
    Hold,
}

/// What `exchange` got back: the exit status and stderr of ssh, and whether the deadline
/// stopped it.
struct Reply {
    status: Exit,
    stderr: String,
    timed_out: bool,
}

/// Runs `argv` (ssh, with a script for the host): `input` writes its stdin, `line` gets each line of its stdout
/// as it comes. Past `deadline`, ssh is sent SIGTERM (SIGKILL two seconds later) and its master
/// connection is closed (which holds a copy of the pipes while the session it opened lasts):
/// that ends the pipes and so the exchange. A host that hangs (its sshd stopped, a command that
/// never returns) holds neither the run nor a process.
fn exchange(
    ssh: &Ssh,
    argv: &[std::ffi::OsString],
    input: impl FnOnce(&mut PipeWriter) -> std::io::Result<()> + Send,
    keep: Stdin,
    mut line: impl FnMut(String),
    deadline: Option<Instant>,
) -> std::io::Result<Reply> {
    let mut child = interrupt::spawn(argv)?;
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let pid = child.pid();
    let (finished, done) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let watchdog = deadline.map(|deadline| s.spawn(move || watch(ssh, pid, deadline, &done)));
        // A target that stops reading (it failed early) is not an error here: its exit status
        // and stderr say what happened.
        let writer = s.spawn(move || {
            let _ = input(&mut stdin);
            let _ = stdin.flush();
            (keep == Stdin::Hold).then_some(stdin)
        });
        let err = s.spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        for l in BufReader::new(stdout).split(b'\n') {
            match l {
                Ok(bytes) => line(String::from_utf8_lossy(&bytes).trim_end_matches('\r').to_owned()),
                Err(_) => break,
            }
        }
        drop(writer.join());
        let stderr = err.join().unwrap_or_default();
        let status = interrupt::wait(child);
        drop(finished);
        let timed_out = watchdog.is_some_and(|w| w.join().unwrap_or(false));
        Ok(Reply { status: status?, stderr, timed_out })
    })
}

/// Waits until `done` says the child ended, or `deadline`: then stops it (SIGTERM, SIGKILL if it
/// is still there two seconds later), closes its master connection, and says so.
fn watch(ssh: &Ssh, pid: nix::unistd::Pid, deadline: Instant, done: &std::sync::mpsc::Receiver<()>) -> bool {
    use std::sync::mpsc::RecvTimeoutError::Timeout;
    if done.recv_timeout(deadline.saturating_duration_since(Instant::now())) != Err(Timeout) {
        return false;
    }
    interrupt::stop(pid, nix::sys::signal::Signal::SIGTERM);
    ssh.close();
    if done.recv_timeout(Duration::from_secs(2)) == Err(Timeout) {
        interrupt::stop(pid, nix::sys::signal::Signal::SIGKILL);
    }
    true
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::TRUST;

    /// What the trust rule says about `base/dir/converge` (`own`) and the directories above
    /// `base` (`above`), run by sh and find as root.
    fn verdict(base: &Path) -> (String, String) {
        let script = format!(
            "uid=0; base={}; {TRUST}; first_line \"$(unsafe_own \"$base\" \"$base/d\" \"$base/d/converge\")\"; echo --; \
             first_line \"$(unsafe_above)\"",
            shell_words::quote(&base.to_string_lossy())
        );
        let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (own, above) = text.split_once("--\n").unwrap();
        (own.trim().to_owned(), above.trim().to_owned())
    }

    #[test]
    fn the_trust_rule() {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var_os("CI").is_none(), "CI runs the tests as root");
            eprintln!("skipped: needs root (chown)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let chmod = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        chmod(tmp.path(), 0o755);
        let base = tmp.path().join("cache/converge");
        std::fs::create_dir_all(base.join("d")).unwrap();
        let bin = base.join("d/converge");
        std::fs::write(&bin, "").unwrap();
        chmod(&bin, 0o755);
        let shown = |p: &Path| p.display().to_string();
        assert_eq!(verdict(&base), (String::new(), String::new()), "all root's, 0755");

        chmod(&bin, 0o775);
        assert_eq!(verdict(&base).0, shown(&bin), "group-writable binary");
        chmod(&bin, 0o757);
        assert_eq!(verdict(&base).0, shown(&bin), "world-writable binary");
        chmod(&bin, 0o755);
        std::os::unix::fs::chown(base.join("d"), Some(1234), None).unwrap();
        assert_eq!(verdict(&base).0, shown(&base.join("d")), "another user's directory");
        std::os::unix::fs::chown(base.join("d"), Some(0), None).unwrap();
        std::fs::rename(&base, tmp.path().join("real")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("real"), &base).unwrap();
        assert_eq!(verdict(&base).0, shown(&base), "a symlink");
        std::fs::remove_file(&base).unwrap();
        std::fs::rename(tmp.path().join("real"), &base).unwrap();
        assert_eq!(verdict(&base), (String::new(), String::new()));

        // Above the cache: root's or the user's, not writable by others unless sticky; one that
        // is not there yet is no objection (the upload makes it).
        assert_eq!(verdict(&tmp.path().join("new/cache/converge")).1, "");
        let cache = tmp.path().join("cache");
        chmod(&cache, 0o777);
        assert_eq!(verdict(&base).1, shown(&cache), "a world-writable parent");
        chmod(&cache, 0o1777);
        assert_eq!(verdict(&base).1, "", "sticky, like /tmp");
        chmod(&cache, 0o755);
        std::os::unix::fs::chown(&cache, Some(1234), None).unwrap();
        assert_eq!(verdict(&base).1, shown(&cache), "another user's parent");
    }
}
