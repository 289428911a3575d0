//! `Host` is the only door to the machine: its files (`fs.rs`: every path resolved safely from a
//! directory fd of the root), its accounts, systemd, and the programs converge runs
//! (`process.rs`: argv, a clean environment, inside the root when there is one).
//!
//! With `--root DIR` it is an offline root, as `systemctl --root` and `useradd --root` know it:
//! paths, user and group names (DIR/etc/passwd, DIR/etc/group) all resolve inside DIR, and a
//! symlink inside it resolves as it would after a chroot. Without it, accounts are looked up
//! through NSS (nix), so users from LDAP or sssd count too.
//!
//! The bottom layer: it imports nothing of converge but `error.rs` (no playbook, kinds, engine
//! or output); what it must know of them comes in as arguments.

mod fetch;
pub mod forecast;
mod fs;
pub mod mode;
mod process;
pub mod systemd;
pub mod unit_file;

pub use fetch::supported as can_fetch;
pub use fs::{FileKind, InputEntry, MAX_READ, Stat, hex, read_input, read_input_text, read_input_tree, record_inputs};
pub use process::{Account, Failure, PATH, Program, Scratch};

use std::collections::HashMap;
use std::convert::Infallible;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::Result;
use crate::host::forecast::{Forecast, Foreseen};
use crate::host::mode::Mode;
use crate::host::systemd::{Systemd, UnitStatus};

#[derive(Debug, Clone, PartialEq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub struct Host {
    /// The offline root as given (made absolute); None on the live host.
    root: Option<PathBuf>,
    /// Its files, reached from a directory fd of the root (`/` on the live host).
    tree: fs::Tree,
    /// Looked-up accounts, by name and by id; cleared when a resource changes accounts.
    accounts: Mutex<Accounts>,
    /// The system bus connection to systemd, made on first use; None without a bus and always
    /// under an offline root.
    systemd: OnceLock<Option<Systemd>>,
    /// Unit statuses read from systemd, by name; cleared when a resource changes units.
    units: Mutex<HashMap<String, UnitStatus>>,
    /// Long-running tools (apt-get, pip) show their own output on stderr (`-v` on a terminal).
    stream_tool_output: bool,
    /// What the packages of the plan will bring, laid over the host while the plan observes
    /// (forecast.rs); empty otherwise.
    forecast: Mutex<Forecast>,
    /// The foreseen paths read since the last [`Host::foreseen_reads`].
    foreseen_reads: Mutex<Vec<PathBuf>>,
    /// apt source files changed by this run whose lists apt has not fetched since.
    stale_lists: Mutex<Vec<PathBuf>>,
}

#[derive(Default)]
struct Accounts {
    users: HashMap<String, Option<UserEntry>>,
    user_names: HashMap<u32, String>,
    groups: HashMap<String, Option<GroupEntry>>,
    group_names: HashMap<u32, String>,
}

impl Host {
    /// The live host (`root` None) or an offline root directory.
    pub fn new(root: Option<PathBuf>) -> Host {
        let root = root.map(|r| std::path::absolute(&r).unwrap_or(r));
        let tree = fs::Tree::new(root.as_deref().unwrap_or(Path::new("/")));
        Host {
            root,
            tree,
            accounts: Mutex::default(),
            systemd: OnceLock::new(),
            units: Mutex::default(),
            stream_tool_output: false,
            forecast: Mutex::default(),
            foreseen_reads: Mutex::default(),
            stale_lists: Mutex::default(),
        }
    }

    /// This host, with long-running tools (apt-get, pip) showing their own output on stderr.
    pub fn with_tool_output(self, stream: bool) -> Host {
        Host { stream_tool_output: stream, ..self }
    }

    /// Whether long-running tools show their own output on stderr.
    pub fn streams_tool_output(&self) -> bool {
        self.stream_tool_output
    }

    /// The offline root, if this is one (absolute).
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Where an absolute path of the playbook lives on this machine: for messages and for tools
    /// that take a path, never to open it (a symlink on the way could lead anywhere; the methods
    /// below resolve it safely).
    pub fn path(&self, path: &Path) -> PathBuf {
        self.tree.real(path)
    }

    /// The path as the playbook names it, and the root when there is one: for messages.
    pub fn shown(&self, path: &Path) -> String {
        self.tree.shown(path)
    }

    /// Who owns the system's own files that converge writes (unit files, nginx sites, the
    /// journal): root; or, when someone tries converge without root on a folder of their own,
    /// that user, since only root can give a file away.
    pub fn system_owner(&self) -> (u32, u32) {
        match nix::unistd::geteuid().as_raw() {
            0 => (0, 0),
            uid => (uid, nix::unistd::getegid().as_raw()),
        }
    }

    /// Whether converge may give files to `uid`:`gid` (root may; another user only to
    /// themselves, and to a group they are in).
    pub fn may_give(&self, uid: Option<u32>, gid: Option<u32>) -> bool {
        let euid = nix::unistd::geteuid().as_raw();
        if euid == 0 {
            return true;
        }
        let in_group = |g: u32| {
            g == nix::unistd::getegid().as_raw()
                || nix::unistd::getgroups().is_ok_and(|groups| groups.iter().any(|x| x.as_raw() == g))
        };
        uid.is_none_or(|u| u == euid) && gid.is_none_or(in_group)
    }

    /// Names a uid in a refusal, from the host's own accounts.
    fn namer(&self) -> impl Fn(u32) -> String + '_ {
        |uid| self.user_name(uid).unwrap_or_else(|_| format!("#{uid}"))
    }

    /// `lstat`: what is at the path itself; None when it (or a directory on the way) is missing.
    pub fn stat(&self, path: &Path) -> io::Result<Option<Stat>> {
        match self.tree.stat(path, &self.namer())? {
            None => Ok(self.foreseen(path).map(|f| f.stat())),
            found => Ok(found),
        }
    }

    /// Reads a regular file (never a symlink, FIFO or device) of at most [`MAX_READ`] bytes.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.tree.read(path, MAX_READ, &self.namer()).or_else(|e| self.foreseen_content(path, e).map(|c| c.to_vec()))
    }

    /// The size and sha256 of a regular file, streamed, whatever its size.
    pub fn digest(&self, path: &Path) -> io::Result<(u64, String)> {
        self.tree.digest(path, &self.namer()).or_else(|e| {
            let content = self.foreseen_content(path, e)?;
            Ok((content.len() as u64, hex(&<sha2::Sha256 as sha2::Digest>::digest(&content))))
        })
    }

    /// The first bytes (at most `n`) of a regular file.
    pub fn head(&self, path: &Path, n: u64) -> io::Result<Vec<u8>> {
        self.tree.head(path, n, &self.namer())
    }

    /// The target of a symlink, as written.
    pub fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.tree.read_link(path, &self.namer()).or_else(|e| match e.kind() {
            io::ErrorKind::NotFound => self.foreseen(path).and_then(|f| f.target).ok_or(e),
            _ => Err(e),
        })
    }

    /// Where `path` leads with all its symlinks followed, as realpath(3) would after a chroot:
    /// component by component, absolute targets starting again at the root, `..` never above
    /// it, at most 40 symlinks as the kernel; each step a safe walk ([`Host::stat`],
    /// [`Host::read_link`]). `Ok(real path)`, or `Err(missing)`: the first path on the way that
    /// does not exist, with the rest of the path joined on (where a dangling symlink leads).
    pub fn real_path(&self, path: &Path) -> io::Result<Result<PathBuf, PathBuf>> {
        let mut resolved = PathBuf::from("/");
        let mut rest: Vec<OsString> = path.components().rev().map(|c| c.as_os_str().to_owned()).collect();
        let mut hops = 0;
        while let Some(part) = rest.pop() {
            match part.to_str() {
                Some("/") | Some(".") => continue,
                Some("..") => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            let next = resolved.join(&part);
            match self.stat(&next)? {
                None => return Ok(Err(rest.iter().rev().fold(next, |path, part| path.join(part)))),
                Some(stat) if stat.kind == FileKind::Symlink => {
                    hops += 1;
                    if hops > fs::MAX_SYMLINKS {
                        return Err(io::Error::other(format!(
                            "too many levels of symbolic links at {}",
                            next.display()
                        )));
                    }
                    let target = self.read_link(&next)?;
                    if target.is_absolute() {
                        resolved = PathBuf::from("/");
                    }
                    rest.extend(target.components().rev().map(|c| c.as_os_str().to_owned()));
                }
                Some(_) => resolved = next,
            }
        }
        Ok(Ok(resolved))
    }

    /// The entries of a directory, with what each is (symlinks not followed).
    pub fn read_dir(&self, path: &Path) -> io::Result<Vec<(OsString, FileKind)>> {
        let (foreseen, foreseen_dir) = {
            let forecast = self.forecast.lock().unwrap();
            (forecast.children(path), forecast.at(path).is_some_and(|f| f.kind == FileKind::Directory))
        };
        let mut entries = match self.tree.read_dir(path, &self.namer()) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && (foreseen_dir || !foreseen.is_empty()) => Vec::new(),
            result => result?,
        };
        for (name, kind) in foreseen {
            if !entries.iter().any(|(n, _)| *n == name) {
                entries.push((name, kind));
            }
        }
        Ok(entries)
    }

    /// Lays what the packages of the plan will bring over the host, for the resources observed
    /// from now on (forecast.rs); added to what is laid already.
    pub fn foresee(&self, forecast: Forecast) {
        self.forecast.lock().unwrap().extend(forecast);
    }

    /// Lifts the forecast: the host is read as it is again.
    pub fn forget_forecast(&self) {
        *self.forecast.lock().unwrap() = Forecast::default();
        self.foreseen_reads.lock().unwrap().clear();
    }

    /// The foreseen paths read since the last call, each once, with who brings them.
    pub fn foreseen_reads(&self) -> Vec<(PathBuf, String)> {
        let mut reads = std::mem::take(&mut *self.foreseen_reads.lock().unwrap());
        reads.dedup();
        let forecast = self.forecast.lock().unwrap();
        let mut seen = Vec::new();
        for path in reads {
            if let Some(f) = forecast.at(&path).filter(|_| !seen.iter().any(|(p, _)| *p == path)) {
                seen.push((path, f.origin.clone()));
            }
        }
        seen
    }

    /// What the forecast lays at `path` (a read of it, for [`Host::foreseen_reads`]).
    fn foreseen(&self, path: &Path) -> Option<Foreseen> {
        let found = self.forecast.lock().unwrap().at(path).cloned()?;
        self.foreseen_reads.lock().unwrap().push(path.to_owned());
        Some(found)
    }

    /// The bytes of a foreseen file where the host has none (`error`, a NotFound, otherwise).
    fn foreseen_content(&self, path: &Path, error: io::Error) -> io::Result<std::sync::Arc<[u8]>> {
        if error.kind() != io::ErrorKind::NotFound {
            return Err(error);
        }
        match self.foreseen(path) {
            Some(Foreseen { content: Some(content), .. }) => Ok(content),
            Some(_) => Err(io::Error::other(format!(
                "{} comes with a package this plan installs, and the plan does not know its content",
                path.display()
            ))),
            None => Err(error),
        }
    }

    /// Replaces `path` atomically: a temporary file beside it (`.cvg.XXXXXXXX`) is created with
    /// its final owner and mode, written and fsynced, then renamed over the target, and the
    /// directory fsynced. A reader (or a crash) sees the old file or the new one, never a part.
    pub fn write_atomic(&self, path: &Path, content: &[u8], mode: Mode, uid: u32, gid: u32) -> io::Result<()> {
        let Ok(()) = self.write_checked(path, content, (mode, uid, gid), |_| Ok::<(), Infallible>(()))?;
        Ok(())
    }

    /// [`Host::write_atomic`] of what `source` reads, streamed: `accept` is given its sha256
    /// before the rename and may refuse it, leaving the target as it was. Returns the sha256.
    pub fn write_atomic_from(
        &self,
        path: &Path,
        source: &mut dyn io::Read,
        mode: Mode,
        owner: (u32, u32),
        accept: &dyn Fn(&str) -> io::Result<()>,
    ) -> io::Result<String> {
        let sha256 = self.tree.write_atomic_from(path, source, mode.0, owner, accept, &self.namer())?;
        self.forget_written(path);
        Ok(sha256)
    }

    /// Opens a regular file (never a symlink, FIFO or device) to stream it, whatever its size.
    pub fn open(&self, path: &Path) -> io::Result<std::fs::File> {
        self.tree.open(path, &self.namer())
    }

    /// A stream of what a URL names: `file://` (a file of this machine, also under `--root`),
    /// `http://` or `https://` (fetch.rs).
    pub fn fetch(&self, url: &str) -> io::Result<Box<dyn io::Read + Send>> {
        fetch::fetch(url)
    }

    /// [`Host::write_atomic`] of a candidate that `check` must accept first (a checker such as
    /// `visudo -cf`): `check` gets the candidate's path, beside the target, as the playbook names
    /// paths (a program run inside the root finds it there), with its final content, mode and
    /// owner. Only when it accepts is the candidate renamed in; otherwise it is removed, the
    /// target is left as it was, and `check`'s refusal is returned.
    pub fn write_checked<R>(
        &self,
        path: &Path,
        content: &[u8],
        (mode, uid, gid): (Mode, u32, u32),
        check: impl FnOnce(&Path) -> Result<(), R>,
    ) -> io::Result<Result<(), R>> {
        let written = self.tree.write_atomic(path, content, (mode.0, uid, gid), &self.namer(), check)?;
        if written.is_ok() {
            self.forget_written(path);
        }
        Ok(written)
    }

    /// [`Host::write_atomic`] of a file of the system (a unit, an nginx site, the journal),
    /// owned by [`Host::system_owner`].
    pub fn write_system_file(&self, path: &Path, content: &[u8], mode: Mode) -> io::Result<()> {
        let (uid, gid) = self.system_owner();
        self.write_atomic(path, content, mode, uid, gid)
    }

    /// [`Host::symlink`] owned by [`Host::system_owner`].
    pub fn system_symlink(&self, target: &Path, path: &Path) -> io::Result<()> {
        let (uid, gid) = self.system_owner();
        self.symlink(target, path, uid, gid)
    }

    /// Creates a directory and its missing parents, 0755, owned by whoever runs converge.
    pub fn create_dirs(&self, path: &Path) -> io::Result<()> {
        self.tree.create_dirs(path, &self.namer())
    }

    /// Creates one directory (its parent exists) with its owner and mode.
    pub fn create_dir(&self, path: &Path, mode: Mode, uid: u32, gid: u32) -> io::Result<()> {
        self.tree.create_dir(path, mode.0, uid, gid, &self.namer())
    }

    /// Changes owner and group (first), then the mode, of a file or directory, through one fd of
    /// it: a symlink found there is refused, never followed. chown(2) clears the setuid and
    /// setgid bits, so they are set back unless a new mode is given.
    pub fn set_attributes(
        &self,
        path: &Path,
        uid: Option<u32>,
        gid: Option<u32>,
        mode: Option<Mode>,
    ) -> io::Result<()> {
        self.tree.set_attributes(path, (uid, gid), mode.map(|m| m.0), false, &self.namer())
    }

    /// Changes owner and group of the path itself: a file, a directory, or a symlink (its own
    /// owner, never its target's).
    pub fn chown(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        self.tree.set_attributes(path, (uid, gid), None, true, &self.namer())
    }

    /// Points `path` at `target`, replacing whatever is there atomically.
    pub fn symlink(&self, target: &Path, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        self.tree.symlink(target, path, uid, gid, &self.namer())
    }

    /// Renames a path to another in the same root.
    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.tree.rename(from, to, &self.namer())
    }

    /// Removes a file or symlink, or a directory with everything in it.
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        self.tree.remove(path, &self.namer())?;
        self.forget_written(path);
        Ok(())
    }

    /// The running kernel's release and version (`uname -r`, `uname -v`): this machine's, also
    /// under `--root`, where programs run on it.
    pub fn kernel(&self) -> (String, String) {
        let read = |name: &str| {
            std::fs::read_to_string(Path::new("/proc/sys/kernel").join(name)).unwrap_or_default().trim().to_owned()
        };
        (read("osrelease"), read("version"))
    }

    /// Notes that the apt source file `sources` changed: its lists are to be fetched before the
    /// next install ([`Host::take_stale_lists`]).
    pub fn note_stale_lists(&self, sources: &Path) {
        let mut stale = self.stale_lists.lock().unwrap();
        if !stale.iter().any(|s| s == sources) {
            stale.push(sources.to_owned());
        }
    }

    /// The apt source files whose lists are to be fetched, in the order they changed; from now
    /// on, none.
    pub fn take_stale_lists(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *self.stale_lists.lock().unwrap())
    }

    /// Forgets the directories walked so far (fs.rs keeps them until something changes).
    pub fn forget_dirs(&self) {
        self.tree.forget_dirs();
    }

    /// A write to the account files makes the accounts read so far stale.
    fn forget_written(&self, path: &Path) {
        if path.starts_with("/etc") && matches!(path.file_name().and_then(|n| n.to_str()), Some("passwd" | "group")) {
            self.forget_accounts();
        }
    }

    /// What a run locks, and the file to lock it through: `/run/converge.lock` on the live host,
    /// the root directory itself for an offline root (so nothing is added to an image; an
    /// `apply --root DIR` into a folder that does not exist yet makes it, as `mkdir -p` would).
    pub fn lock_file(&self) -> (PathBuf, io::Result<std::fs::File>) {
        match &self.root {
            Some(root) => (root.clone(), std::fs::create_dir_all(root).and_then(|()| std::fs::File::open(root))),
            None => {
                let path = PathBuf::from("/run/converge.lock");
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path);
                (path, file)
            }
        }
    }

    /// systemd over the system bus; None under an offline root or where there is no bus
    /// (a container, a chroot, a build machine).
    pub fn systemd(&self) -> Result<Option<&Systemd>> {
        // Its jobs change the machine (a stopped service's RuntimeDirectory goes).
        self.forget_dirs();
        if self.root.is_some() {
            return Ok(None);
        }
        if let Some(systemd) = self.systemd.get() {
            return Ok(systemd.as_ref());
        }
        let systemd = Systemd::connect()?;
        Ok(self.systemd.get_or_init(|| systemd).as_ref())
    }

    /// Reads the status of many units from systemd at once (concurrently), for `unit_status`.
    pub fn observe_units(&self, names: &[String]) -> Result<()> {
        let Some(systemd) = self.systemd()? else { return Ok(()) };
        let missing: Vec<String> = {
            let known = self.units.lock().unwrap();
            let template = |n: &String| crate::host::unit_file::is_template(n);
            names.iter().filter(|n| !known.contains_key(*n) && !template(n)).cloned().collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let statuses = systemd.units(&missing)?;
        let mut known = self.units.lock().unwrap();
        for status in statuses {
            known.insert(status.name.clone(), status);
        }
        Ok(())
    }

    /// A unit's status as systemd reports it; None without a bus, and for a template
    /// (`app@.service`), which systemd cannot load: its instances are the units.
    pub fn unit_status(&self, name: &str) -> Result<Option<UnitStatus>> {
        if self.systemd()?.is_none() || crate::host::unit_file::is_template(name) {
            return Ok(None);
        }
        if !self.units.lock().unwrap().contains_key(name) {
            self.observe_units(&[name.to_owned()])?;
        }
        let status = self.units.lock().unwrap().get(name).cloned();
        // A unit that a package of the plan brings: as systemd will report it after the install.
        if status.as_ref().is_some_and(|s| s.load_state == "not-found")
            && let Some(unit) = self.forecast.lock().unwrap().unit(name)
        {
            return Ok(Some(unit.status()));
        }
        Ok(status)
    }

    /// The unit that a package of the plan brings, by name, if one does.
    pub fn foreseen_unit(&self, name: &str) -> Option<crate::host::forecast::ForeseenUnit> {
        self.forecast.lock().unwrap().unit(name).cloned()
    }

    /// The running instances of a template, by name; none without a bus.
    pub fn running_instances(&self, template: &str) -> Result<Vec<String>> {
        match self.systemd()? {
            Some(systemd) => Ok(systemd.running_instances(template)?),
            None => Ok(Vec::new()),
        }
    }

    /// Forgets unit statuses: called after a resource changed a unit.
    pub fn forget_units(&self) {
        self.units.lock().unwrap().clear();
    }

    pub fn user(&self, name: &str) -> io::Result<Option<UserEntry>> {
        if let Some(found) = self.accounts.lock().unwrap().users.get(name) {
            return Ok(found.clone());
        }
        let found = match &self.root {
            Some(_) => self.passwd()?.into_iter().find(|u| u.name == name),
            None => nix::unistd::User::from_name(name).map_err(io::Error::from)?.map(user_entry),
        };
        self.accounts.lock().unwrap().users.insert(name.to_owned(), found.clone());
        Ok(found)
    }

    pub fn group(&self, name: &str) -> io::Result<Option<GroupEntry>> {
        if let Some(found) = self.accounts.lock().unwrap().groups.get(name) {
            return Ok(found.clone());
        }
        let found = match &self.root {
            Some(_) => self.group_file()?.into_iter().find(|g| g.name == name),
            None => nix::unistd::Group::from_name(name).map_err(io::Error::from)?.map(group_entry),
        };
        self.accounts.lock().unwrap().groups.insert(name.to_owned(), found.clone());
        Ok(found)
    }

    /// The name of a uid, or `#1234` when it has none.
    pub fn user_name(&self, uid: u32) -> io::Result<String> {
        if let Some(name) = self.accounts.lock().unwrap().user_names.get(&uid) {
            return Ok(name.clone());
        }
        let found = match &self.root {
            Some(_) => self.passwd()?.into_iter().find(|u| u.uid == uid).map(|u| u.name),
            None => nix::unistd::User::from_uid(uid.into()).map_err(io::Error::from)?.map(|u| u.name),
        };
        let name = found.unwrap_or_else(|| format!("#{uid}"));
        self.accounts.lock().unwrap().user_names.insert(uid, name.clone());
        Ok(name)
    }

    /// The name of a gid, or `#1234` when it has none.
    pub fn group_name(&self, gid: u32) -> io::Result<String> {
        if let Some(name) = self.accounts.lock().unwrap().group_names.get(&gid) {
            return Ok(name.clone());
        }
        let found = match &self.root {
            Some(_) => self.group_file()?.into_iter().find(|g| g.gid == gid).map(|g| g.name),
            None => nix::unistd::Group::from_gid(gid.into()).map_err(io::Error::from)?.map(|g| g.name),
        };
        let name = found.unwrap_or_else(|| format!("#{gid}"));
        self.accounts.lock().unwrap().group_names.insert(gid, name.clone());
        Ok(name)
    }

    /// The groups that list `user` as a member (its supplementary groups).
    pub fn groups_of(&self, user: &str) -> io::Result<Vec<String>> {
        let groups = match &self.root {
            Some(_) => self.group_file()?,
            // NSS has no "groups of user" call that nix wraps safely; /etc/group holds what
            // useradd and usermod write.
            None => parse_group(&self.account_file("/etc/group")?),
        };
        Ok(groups.into_iter().filter(|g| g.members.iter().any(|m| m == user)).map(|g| g.name).collect())
    }

    /// Forgets looked-up accounts: called after a resource added or changed one.
    pub fn forget_accounts(&self) {
        *self.accounts.lock().unwrap() = Accounts::default();
    }

    /// The uid of a user by name, for applying an owner.
    pub fn uid(&self, name: &str) -> io::Result<u32> {
        self.user(name)?.map(|u| u.uid).ok_or_else(|| not_found("user", name))
    }

    /// The gid of a group by name, for applying a group.
    pub fn gid(&self, name: &str) -> io::Result<u32> {
        self.group(name)?.map(|g| g.gid).ok_or_else(|| not_found("group", name))
    }

    /// DIR/etc/passwd. root (uid 0) exists on every Linux system, so an offline root that has
    /// no account files yet (an empty image) still knows it.
    fn passwd(&self) -> io::Result<Vec<UserEntry>> {
        let mut users = parse_passwd(&self.account_file("/etc/passwd")?);
        if !users.iter().any(|u| u.uid == 0) {
            users.push(UserEntry {
                name: "root".into(),
                uid: 0,
                gid: 0,
                home: "/root".into(),
                shell: "/bin/sh".into(),
            });
        }
        Ok(users)
    }

    fn group_file(&self) -> io::Result<Vec<GroupEntry>> {
        let mut groups = parse_group(&self.account_file("/etc/group")?);
        if !groups.iter().any(|g| g.gid == 0) {
            groups.push(GroupEntry { name: "root".into(), gid: 0, members: vec![] });
        }
        Ok(groups)
    }
}

impl Host {
    /// An account file of the root, empty when there is none yet. Its walk names owners by
    /// number: naming them would read this file again.
    fn account_file(&self, path: &str) -> io::Result<String> {
        match self.tree.read(Path::new(path), MAX_READ, &|uid| format!("#{uid}")) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        }
    }
}

fn not_found(what: &str, name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{what} `{name}` does not exist"))
}

fn user_entry(u: nix::unistd::User) -> UserEntry {
    UserEntry {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir.to_string_lossy().into_owned(),
        shell: u.shell.to_string_lossy().into_owned(),
    }
}

fn group_entry(g: nix::unistd::Group) -> GroupEntry {
    GroupEntry { name: g.name, gid: g.gid.as_raw(), members: g.mem }
}

/// `name:x:uid:gid:gecos:home:shell` lines (passwd(5)).
fn parse_passwd(text: &str) -> Vec<UserEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(UserEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5)?.to_string(),
                shell: f.get(6)?.to_string(),
            })
        })
        .collect()
}

/// `name:x:gid:member,member` lines (group(5)).
fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f.get(3)?.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_files_parse() {
        let users =
            parse_passwd("root:x:0:0:root:/root:/bin/bash\nbroken\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n");
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].uid, 33);
        assert_eq!(users[1].home, "/var/www");
        let groups = parse_group("sudo:x:27:vagrant,alice\nwww-data:x:33:\n");
        assert_eq!(groups[0].members, ["vagrant", "alice"]);
        assert!(groups[1].members.is_empty());
    }

    #[test]
    fn paths_resolve_inside_the_root() {
        let host = Host::new(Some(PathBuf::from("/mnt/image")));
        assert_eq!(host.path(Path::new("/etc/motd")), Path::new("/mnt/image/etc/motd"));
        assert_eq!(host.shown(Path::new("/etc/motd")), "/etc/motd (in the root /mnt/image)");
        assert_eq!(Host::new(None).path(Path::new("/etc/motd")), Path::new("/etc/motd"));
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("srv/venv/bin")).unwrap();
        std::fs::write(root.join("usr/bin/python3.11"), "\x7fELF").unwrap();
        std::os::unix::fs::symlink("python3.11", root.join("usr/bin/python3")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3", root.join("srv/venv/bin/python3")).unwrap();
        std::os::unix::fs::symlink("python3", root.join("srv/venv/bin/python")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/python2", root.join("srv/venv/bin/old")).unwrap();
        let host = Host::new(Some(root.to_path_buf()));
        let real = host.real_path(Path::new("/srv/venv/bin/python")).unwrap();
        assert_eq!(real, Ok(PathBuf::from("/usr/bin/python3.11")));
        assert_eq!(host.real_path(Path::new("/srv/venv/bin/old")).unwrap(), Err(PathBuf::from("/usr/bin/python2")));
    }
}
