//! `Host` is the only door to the machine: file I/O under a root prefix, accounts, and commands.
//!
//! With `--root DIR` it is an offline root, as `systemctl --root` and `useradd --root` know it:
//! paths, user and group names (DIR/etc/passwd, DIR/etc/group) all resolve inside DIR. Without
//! it, accounts are looked up through NSS (nix), so users from LDAP or sssd count too.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::mode::Mode;
use crate::systemd::{Systemd, UnitStatus};

/// What `lstat` says about a path (symlinks are never followed).
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub kind: FileKind,
    pub mode: Mode,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Other,
}

impl FileKind {
    pub fn name(self) -> &'static str {
        match self {
            FileKind::File => "a file",
            FileKind::Directory => "a directory",
            FileKind::Symlink => "a symlink",
            FileKind::Other => "a special file",
        }
    }
}

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
    root: Option<PathBuf>,
    /// Looked-up accounts, by name and by id; cleared when a resource changes accounts.
    accounts: Mutex<Accounts>,
    /// The system bus connection to systemd, made on first use; None without a bus and always
    /// under an offline root.
    systemd: OnceLock<Option<Systemd>>,
    /// Unit statuses read from systemd, by name; cleared when a resource changes units.
    units: Mutex<HashMap<String, UnitStatus>>,
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
        Host { root, accounts: Mutex::default(), systemd: OnceLock::new(), units: Mutex::default() }
    }

    /// The offline root, if this is one.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Where an absolute path of the playbook lives on this machine.
    pub fn path(&self, path: &Path) -> PathBuf {
        match &self.root {
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        }
    }

    pub fn stat(&self, path: &Path) -> io::Result<Option<Stat>> {
        let meta = match fs::symlink_metadata(self.path(path)) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_dir() {
            FileKind::Directory
        } else if ft.is_file() {
            FileKind::File
        } else {
            FileKind::Other
        };
        Ok(Some(Stat { kind, mode: Mode(meta.mode() & 0o7777), uid: meta.uid(), gid: meta.gid() }))
    }

    /// Reads a regular file without following a symlink in its last component.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut file = OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(self.path(path))?;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes)?;
        Ok(bytes)
    }

    pub fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        fs::read_link(self.path(path))
    }

    /// Replaces `path` atomically: a temporary file beside it is created with its final mode,
    /// chowned, written and fsynced, then renamed over the target, and the directory fsynced.
    /// A reader (or a crash) sees the old file or the new one, never a part.
    pub fn write_atomic(&self, path: &Path, content: &[u8], mode: Mode, uid: u32, gid: u32) -> io::Result<()> {
        let target = self.path(path);
        let tmp = temp_beside(&target);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&tmp)?;
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            file.set_permissions(fs::Permissions::from_mode(mode.0))?;
            file.write_all(content)?;
            file.sync_all()?;
            fs::rename(&tmp, &target)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        sync_parent(&target)
    }

    /// Creates a directory and its missing parents, 0755, owned by whoever runs converge.
    pub fn create_dirs(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(self.path(path))
    }

    pub fn create_dir(&self, path: &Path, mode: Mode, uid: u32, gid: u32) -> io::Result<()> {
        let target = self.path(path);
        fs::DirBuilder::new().mode(0o700).create(&target)?;
        std::os::unix::fs::lchown(&target, Some(uid), Some(gid))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(mode.0))?;
        sync_parent(&target)
    }

    /// Sets permission bits of a file or directory (callers have checked it is not a symlink).
    pub fn chmod(&self, path: &Path, mode: Mode) -> io::Result<()> {
        fs::set_permissions(self.path(path), fs::Permissions::from_mode(mode.0))
    }

    /// Changes owner and group of the path itself, never of a symlink's target.
    pub fn chown(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        std::os::unix::fs::lchown(self.path(path), uid, gid)
    }

    /// Points `path` at `target`, replacing whatever is there atomically.
    pub fn symlink(&self, target: &Path, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        let link = self.path(path);
        let tmp = temp_beside(&link);
        std::os::unix::fs::symlink(target, &tmp)?;
        let done = std::os::unix::fs::lchown(&tmp, Some(uid), Some(gid)).and_then(|()| fs::rename(&tmp, &link));
        if done.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        done?;
        sync_parent(&link)
    }

    /// Removes a file or symlink, or a directory with everything in it.
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        let target = self.path(path);
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&target)?,
            Ok(_) => fs::remove_file(&target)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        sync_parent(&target)
    }

    /// systemd over the system bus; None under an offline root or where there is no bus
    /// (a container, a chroot, a build machine).
    pub fn systemd(&self) -> Result<Option<&Systemd>> {
        if self.root.is_some() {
            return Ok(None);
        }
        if let Some(systemd) = self.systemd.get() {
            return Ok(systemd.as_ref());
        }
        let systemd = Systemd::connect().map_err(|e| Error::Systemd(e.to_string()))?;
        Ok(self.systemd.get_or_init(|| systemd).as_ref())
    }

    /// Reads the status of many units from systemd at once (concurrently), for `unit_status`.
    pub fn observe_units(&self, names: &[String]) -> Result<()> {
        let Some(systemd) = self.systemd()? else { return Ok(()) };
        let missing: Vec<String> = {
            let known = self.units.lock().unwrap();
            names.iter().filter(|n| !known.contains_key(*n)).cloned().collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let statuses = systemd.units(&missing).map_err(|e| Error::Systemd(e.to_string()))?;
        let mut known = self.units.lock().unwrap();
        for status in statuses {
            known.insert(status.name.clone(), status);
        }
        Ok(())
    }

    /// A unit's status as systemd reports it; None without a bus.
    pub fn unit_status(&self, name: &str) -> Result<Option<UnitStatus>> {
        if self.systemd()?.is_none() {
            return Ok(None);
        }
        if let Some(status) = self.units.lock().unwrap().get(name) {
            return Ok(Some(status.clone()));
        }
        self.observe_units(&[name.to_owned()])?;
        Ok(self.units.lock().unwrap().get(name).cloned())
    }

    /// Forgets unit statuses: called after a resource changed a unit.
    pub fn forget_units(&self) {
        self.units.lock().unwrap().clear();
    }

    /// A host tool (`useradd`, `groupadd`, ...) that the caller gives `--root` itself.
    pub fn tool(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("LC_ALL", "C");
        command
    }

    /// A command of the playbook: argv, never a shell string; inside the offline root (chroot)
    /// when there is one.
    pub fn command<S: AsRef<OsStr>>(&self, argv: &[S]) -> Command {
        match &self.root {
            Some(root) => {
                let mut command = Command::new("chroot");
                command.arg("--").arg(root).args(argv);
                command
            }
            None => {
                let mut command = Command::new(&argv[0]);
                command.args(&argv[1..]);
                command
            }
        }
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
            None => {
                // NSS has no "groups of user" call that nix wraps safely; /etc/group holds
                // what useradd and usermod write.
                parse_group(&fs::read_to_string("/etc/group")?)
            }
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
        let mut users = parse_passwd(&read_or_empty(&self.path(Path::new("/etc/passwd")))?);
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
        let mut groups = parse_group(&read_or_empty(&self.path(Path::new("/etc/group")))?);
        if !groups.iter().any(|g| g.gid == 0) {
            groups.push(GroupEntry { name: "root".into(), gid: 0, members: vec![] });
        }
        Ok(groups)
    }
}

fn not_found(what: &str, name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{what} `{name}` does not exist"))
}

fn read_or_empty(path: &Path) -> io::Result<String> {
    match fs::read_to_string(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        other => other,
    }
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

/// The temporary name beside `target`. Runs hold the lock, so a leftover of this name can only
/// come from a run that was killed: it is removed first.
fn temp_beside(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = target.with_file_name(format!(".{name}.converge-tmp"));
    let _ = fs::remove_file(&tmp);
    tmp
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
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
        assert_eq!(Host::new(None).path(Path::new("/etc/motd")), Path::new("/etc/motd"));
    }
}
