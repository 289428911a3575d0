//! The host's files, reached safely: the only code in converge that opens, writes, changes or
//! removes a file of the machine it converges (docs/paths.md says what it guarantees).
//!
//! Every path a playbook names is resolved one component at a time from a directory fd of the
//! root (`/` on the live host, DIR under `--root`), never handed whole to the kernel:
//! - a symlink in a directory component is followed *inside* the root, as after a chroot: an
//!   absolute target starts again at the root, and `..` never climbs above it;
//! - the last component is never followed: it is acted on through its parent's fd (`*at` calls),
//!   or opened with O_NOFOLLOW and then changed through that fd, so what is changed is what was
//!   checked, whatever is renamed in between;
//! - systemd's CHASE_SAFE rule (chase.c, written after CVE-2018-6954): the walk refuses to pass
//!   from a component owned by an unprivileged user to one owned by somebody else, through a
//!   directory or a symlink. A user can lead converge only to their own things.
//!
//! Why a walk of our own and not openat2(RESOLVE_IN_ROOT): openat2 confines a lookup to the root
//! but cannot apply the ownership rule, which must see every component; one walk does both, on
//! every kernel, for one openat and one fstat per component. Why nix and not cap-std: cap-std
//! confines to a root but neither follows absolute symlinks chroot-style (an image's
//! `var/run -> /run`) nor knows the ownership rule; the *at calls themselves are thin, and nix,
//! which converge already uses, has them all.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode as Perm, SFlag, fchmod, fchmodat, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, symlinkat, unlinkat};
use sha2::{Digest, Sha256};

/// The most converge reads of one file into memory (templates, sources, managed files). A
/// bigger managed file is compared by streaming its sha256.
pub const MAX_READ: u64 = 64 * 1024 * 1024;
/// How many walked directories are kept open at most.
const MAX_CACHED_DIRS: usize = 256;
/// As the kernel's own limit on symlinks in one lookup.
pub(super) const MAX_SYMLINKS: usize = 40;
/// Temporary files are `.cvg.` and 8 characters beside their target: short, so any legal file
/// name can be replaced; fixed in shape, so a later run finds what a killed one left.
const TEMP_PREFIX: &str = ".cvg.";
const TEMP_RANDOM: usize = 8;

/// Names uids in refusals (`app (uid 1001)`); the Host knows the accounts.
pub type Namer<'a> = &'a dyn Fn(u32) -> String;

/// A root directory and the paths under it.
pub struct Tree {
    /// Absolute; `/` on the live host.
    root: PathBuf,
    /// Opened on first use (an `apply --root DIR` makes DIR first).
    fd: Mutex<Option<(Arc<OwnedFd>, FileStat)>>,
    /// Directories already cleared of stale temporary files in this run, by (dev, inode).
    swept: Mutex<HashSet<(u64, u64)>>,
    /// Directories reached by a walk, by path, until anything changes the machine: a no-op run
    /// walks each directory once, and a resource acts in the directory it observed.
    dirs: Mutex<HashMap<PathBuf, Arc<OwnedFd>>>,
    /// Who runs converge: root, or the user who owns an offline root they try converge on.
    euid: u32,
    egid: u32,
}

/// The parent directory of a path, opened by a safe walk, and the last component's name.
pub struct Place {
    dir: Arc<OwnedFd>,
    name: OsString,
}

impl Tree {
    pub fn new(root: &Path) -> Tree {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        Tree {
            root,
            fd: Mutex::default(),
            swept: Mutex::default(),
            dirs: Mutex::default(),
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
        }
    }

    /// The path as the playbook names it, with the root when there is one: for messages.
    pub fn shown(&self, path: &Path) -> String {
        if self.root == Path::new("/") {
            path.display().to_string()
        } else {
            format!("{} (in the root {})", path.display(), self.root.display())
        }
    }

    /// Where the path is on this machine, for messages and for programs that take a path (never
    /// for opening it: a symlink on the way could lead anywhere).
    pub fn real(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    fn root_fd(&self) -> io::Result<(Arc<OwnedFd>, FileStat)> {
        let mut slot = self.fd.lock().unwrap();
        if let Some((fd, stat)) = &*slot {
            return Ok((fd.clone(), *stat));
        }
        let fd = nix::fcntl::open(&self.root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Perm::empty())
            .map_err(|e| errno(e, format!("cannot open the root {}", self.root.display())))?;
        let stat = fstat(&fd).map_err(io::Error::from)?;
        let fd = Arc::new(fd);
        *slot = Some((fd.clone(), stat));
        Ok((fd, stat))
    }

    /// Opens the directory `dir` (an absolute path inside the root) by a safe walk; with
    /// `create`, makes the missing directories on the way (0755, owned by whoever runs converge).
    /// `path` is what messages name: `dir` itself, or the path below it that the caller acts on.
    pub fn open_dir(&self, dir: &Path, path: &Path, create: bool, names: Namer) -> io::Result<Arc<OwnedFd>> {
        if let Some(fd) = self.dirs.lock().unwrap().get(dir) {
            return Ok(fd.clone());
        }
        let fd = Arc::new(self.walk(dir, path, create, names)?);
        let mut dirs = self.dirs.lock().unwrap();
        if dirs.len() >= MAX_CACHED_DIRS {
            dirs.clear(); // each holds an fd
        }
        dirs.insert(dir.to_path_buf(), fd.clone());
        Ok(fd)
    }

    /// Forgets the directories walked so far: called whenever something may have changed them
    /// (a write, a program, a systemd job).
    pub fn forget_dirs(&self) {
        self.dirs.lock().unwrap().clear();
    }

    fn walk(&self, dir: &Path, path: &Path, create: bool, names: Namer) -> io::Result<OwnedFd> {
        let (root, root_stat) = self.root_fd()?;
        let mut todo: VecDeque<OsString> = components(dir);
        // The directories entered, below the root.
        let mut stack: Vec<(OwnedFd, FileStat, OsString)> = Vec::new();
        // The last thing passed through, which the next must not be a forbidden step from.
        let mut guard = (root_stat, OsString::from("/"));
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                if let Some((_, left, left_name)) = stack.pop() {
                    let parent = stack.last().map(|s| s.1).unwrap_or(root_stat);
                    self.check_step(path, &left, &left_name, &parent, "..", names)?;
                    guard = (parent, "..".into());
                }
                continue;
            }
            let cur: BorrowedFd = stack.last().map(|s| s.0.as_fd()).unwrap_or(root.as_fd());
            let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let child = match openat(cur, name.as_os_str(), flags, Perm::empty()) {
                Err(Errno::ENOENT) if create => {
                    match mkdirat(cur, name.as_os_str(), Perm::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(errno(e, format!("cannot create {}", self.shown(path)))),
                    }
                    openat(cur, name.as_os_str(), flags, Perm::empty())
                }
                other => other,
            }
            .map_err(|e| errno(e, format!("cannot reach {}: `{}`", self.shown(path), name.to_string_lossy())))?;
            let stat = fstat(&child).map_err(io::Error::from)?;
            self.check_step(path, &guard.0, &guard.1, &stat, &name, names)?;
            match kind_of(&stat) {
                FileKind::Directory => {
                    guard = (stat, name.clone());
                    stack.push((child, stat, name));
                }
                FileKind::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("cannot reach {}: too many symlinks (more than {MAX_SYMLINKS})", self.shown(path)),
                        ));
                    }
                    let target = readlinkat(&child, "").map_err(io::Error::from)?;
                    let mut next = components(Path::new(&target));
                    if target.as_bytes().starts_with(b"/") {
                        // As after a chroot: an absolute target starts again at the root.
                        stack.clear();
                        self.check_step(path, &stat, &name, &root_stat, "/", names)?;
                        guard = (root_stat, "/".into());
                    } else {
                        guard = (stat, name);
                    }
                    next.extend(todo);
                    todo = next;
                }
                kind => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!(
                            "cannot reach {}: `{}` is {}, not a directory",
                            self.shown(path),
                            name.to_string_lossy(),
                            kind.name()
                        ),
                    ));
                }
            }
        }
        match stack.pop() {
            Some((fd, ..)) => Ok(fd),
            None => root.try_clone(),
        }
    }

    /// The ownership rule: from something an unprivileged user owns, only to their own things.
    fn check_step(
        &self,
        path: &Path,
        from: &FileStat,
        from_name: &OsStr,
        to: &FileStat,
        to_name: impl AsRef<OsStr>,
        names: Namer,
    ) -> io::Result<()> {
        if from.st_uid == 0 || from.st_uid == self.euid || from.st_uid == to.st_uid {
            return Ok(());
        }
        let who = |uid: u32| format!("{} (uid {uid})", names(uid));
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refused {}: `{}` is {} owned by {}, and it leads to `{}`, {} owned by {}; converge never passes \
                 from what one user controls to what another owns (that user could swap in a symlink and redirect \
                 the change); give both the same owner, or manage the path through one that root owns",
                self.shown(path),
                from_name.to_string_lossy(),
                kind_of(from).name(),
                who(from.st_uid),
                Path::new(to_name.as_ref()).display(),
                kind_of(to).name(),
                who(to.st_uid),
            ),
        ))
    }

    /// Opens the parent of `path` by a safe walk; the last component is left to the caller.
    pub fn place(&self, path: &Path, names: Namer) -> io::Result<Place> {
        let (parent, name) = split(path)?;
        Ok(Place { dir: self.open_dir(parent, path, false, names)?, name: name.to_owned() })
    }

    /// `lstat` of the last component; None when it (or a directory on the way) does not exist.
    pub fn stat(&self, path: &Path, names: Namer) -> io::Result<Option<Stat>> {
        if path.file_name().is_none() {
            // The root itself, which exists once something has made it.
            return match self.root_fd() {
                Ok((_, stat)) => Ok(Some(Stat::from(&stat))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            };
        }
        let place = match self.place(path, names) {
            Ok(place) => place,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match fstatat(&place.dir, place.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Stat::from(&stat))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno(e, format!("cannot stat {}", self.shown(path)))),
        }
    }

    /// Opens a regular file for reading; anything else (a symlink, a FIFO, a device) is an error.
    fn open_regular(&self, path: &Path, names: Namer) -> io::Result<(File, FileStat)> {
        let place = self.place(path, names)?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = openat(&place.dir, place.name.as_os_str(), flags, Perm::empty()).map_err(|e| match e {
            Errno::ELOOP => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a symlink; converge never follows the last component of a path", self.shown(path)),
            ),
            e => errno(e, format!("cannot open {}", self.shown(path))),
        })?;
        let stat = fstat(&fd).map_err(io::Error::from)?;
        let kind = kind_of(&stat);
        if kind != FileKind::File {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is {}, not a regular file; converge reads only regular files",
                    self.shown(path),
                    kind.name()
                ),
            ));
        }
        Ok((File::from(fd), stat))
    }

    /// Reads a regular file of at most `limit` bytes.
    pub fn read(&self, path: &Path, limit: u64, names: Namer) -> io::Result<Vec<u8>> {
        let (file, stat) = self.open_regular(path, names)?;
        let size = stat.st_size as u64;
        if size > limit {
            return Err(too_big(&self.shown(path), size, limit));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(limit + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(too_big(&self.shown(path), bytes.len() as u64, limit));
        }
        Ok(bytes)
    }

    /// The first bytes (at most `n`) of a regular file, whatever its size.
    pub fn head(&self, path: &Path, n: u64, names: Namer) -> io::Result<Vec<u8>> {
        let (file, _) = self.open_regular(path, names)?;
        let mut bytes = Vec::new();
        file.take(n).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The size and sha256 of a regular file, streamed: for files too big to read whole.
    pub fn digest(&self, path: &Path, names: Namer) -> io::Result<(u64, String)> {
        let (mut file, _) = self.open_regular(path, names)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buffer[..n]);
        }
        Ok((size, hex(&hasher.finalize())))
    }

    pub fn read_link(&self, path: &Path, names: Namer) -> io::Result<PathBuf> {
        let place = self.place(path, names)?;
        readlinkat(&place.dir, place.name.as_os_str())
            .map(PathBuf::from)
            .map_err(|e| errno(e, format!("cannot read the symlink {}", self.shown(path))))
    }

    /// The entries of a directory (not `.` and `..`), with what each is.
    pub fn read_dir(&self, path: &Path, names: Namer) -> io::Result<Vec<(OsString, FileKind)>> {
        let dir = self.open_dir(path, path, false, names)?;
        let (listing, names) =
            list(&dir, OsStr::new(".")).map_err(|e| errno(e, format!("cannot list {}", self.shown(path))))?;
        let mut entries = Vec::new();
        for name in names {
            match fstatat(&listing, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => entries.push((name, kind_of(&stat))),
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(errno(e, format!("cannot list {}", self.shown(path)))),
            }
        }
        Ok(entries)
    }

    /// Replaces `path` atomically: a temporary file beside it (the candidate) is created with its
    /// final owner and mode, written and fsynced, then renamed over the target, and the directory
    /// fsynced. A reader (or a crash) sees the old file or the new one, never a part.
    ///
    /// `check` is given the candidate's path (as the playbook names paths: inside the root)
    /// before the rename: when it refuses, the candidate is removed, the target is left as it
    /// was, and its refusal is returned.
    pub fn write_atomic<R>(
        &self,
        path: &Path,
        content: &[u8],
        (perm, uid, gid): (u32, u32, u32),
        names: Namer,
        check: impl FnOnce(&Path) -> Result<(), R>,
    ) -> io::Result<Result<(), R>> {
        let _forget = Forget(self);
        let place = self.place(path, names)?;
        self.sweep(&place.dir);
        let shown = self.shown(path);
        let (tmp, file) = self.create_temp(&place.dir, &shown)?;
        let written = (|| {
            let mut file = File::from(file);
            self.give(&file, uid, gid, &shown)?;
            fchmod(&file, Perm::from_bits_truncate(perm)).map_err(|e| errno(e, format!("chmod {shown}")))?;
            file.write_all(content).map_err(|e| io::Error::new(e.kind(), format!("write {shown}: {e}")))?;
            file.sync_all()?;
            let candidate = path.parent().unwrap_or(Path::new("/")).join(&tmp);
            if let Err(refusal) = check(&candidate) {
                return Ok(Err(refusal));
            }
            renameat(&place.dir, tmp.as_os_str(), &place.dir, place.name.as_os_str())
                .map_err(|e| errno(e, format!("rename into {shown}")))
                .map(Ok)
        })();
        if !matches!(written, Ok(Ok(()))) {
            let _ = unlinkat(&place.dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        if written.as_ref().is_ok_and(Result::is_ok) {
            sync_dir(&place.dir)?;
        }
        written
    }

    /// [`Tree::write_atomic`] of what `source` reads, streamed (no size limit): `accept` is
    /// given the sha256 of all of it before the rename and may refuse it, and then the temporary
    /// file is removed and the target is left as it was. Returns the sha256.
    #[allow(clippy::too_many_arguments)]
    pub fn write_atomic_from(
        &self,
        path: &Path,
        source: &mut dyn Read,
        perm: u32,
        (uid, gid): (u32, u32),
        accept: &dyn Fn(&str) -> io::Result<()>,
        names: Namer,
    ) -> io::Result<String> {
        let _forget = Forget(self);
        let place = self.place(path, names)?;
        self.sweep(&place.dir);
        let shown = self.shown(path);
        let (tmp, file) = self.create_temp(&place.dir, &shown)?;
        let written = (|| -> io::Result<String> {
            let mut file = File::from(file);
            self.give(&file, uid, gid, &shown)?;
            fchmod(&file, Perm::from_bits_truncate(perm)).map_err(|e| errno(e, format!("chmod {shown}")))?;
            let sha256 =
                copy_hashed(source, &mut file).map_err(|e| io::Error::new(e.kind(), format!("write {shown}: {e}")))?;
            accept(&sha256)?;
            file.sync_all()?;
            renameat(&place.dir, tmp.as_os_str(), &place.dir, place.name.as_os_str())
                .map_err(|e| errno(e, format!("rename into {shown}")))?;
            Ok(sha256)
        })();
        if written.is_err() {
            let _ = unlinkat(&place.dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        let sha256 = written?;
        sync_dir(&place.dir)?;
        Ok(sha256)
    }

    /// Opens a regular file for reading as a stream (never a symlink, FIFO or device).
    pub fn open(&self, path: &Path, names: Namer) -> io::Result<File> {
        self.open_regular(path, names).map(|(file, _)| file)
    }

    /// Creates the directory `path` (its parent must exist) with its owner and mode.
    pub fn create_dir(&self, path: &Path, perm: u32, uid: u32, gid: u32, names: Namer) -> io::Result<()> {
        let _forget = Forget(self);
        let place = self.place(path, names)?;
        let shown = self.shown(path);
        mkdirat(&place.dir, place.name.as_os_str(), Perm::from_bits_truncate(0o700))
            .map_err(|e| errno(e, format!("mkdir {shown}")))?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let dir = openat(&place.dir, place.name.as_os_str(), flags, Perm::empty())
            .map_err(|e| errno(e, format!("cannot open {shown}")))?;
        self.give(&dir, uid, gid, &shown)?;
        fchmod(&dir, Perm::from_bits_truncate(perm)).map_err(|e| errno(e, format!("chmod {shown}")))?;
        sync_dir(&place.dir)
    }

    /// Makes `path` and its missing parents (0755, owned by whoever runs converge).
    pub fn create_dirs(&self, path: &Path, names: Namer) -> io::Result<()> {
        let _forget = Forget(self);
        self.open_dir(path, path, true, names).map(drop)
    }

    /// Changes the owner (first: chown(2) clears setuid and setgid bits) and then the mode of a
    /// file or directory, through one fd of it: a symlink swapped in is refused, never followed.
    /// With `links`, a symlink's own owner may be changed (a venv's `bin/python`), never its mode.
    pub fn set_attributes(
        &self,
        path: &Path,
        owner: (Option<u32>, Option<u32>),
        perm: Option<u32>,
        links: bool,
        names: Namer,
    ) -> io::Result<()> {
        let _forget = Forget(self);
        let place = self.place(path, names)?;
        let shown = self.shown(path);
        let fd = openat(
            &place.dir,
            place.name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Perm::empty(),
        )
        .map_err(|e| errno(e, format!("cannot open {shown}")))?;
        let stat = fstat(&fd).map_err(io::Error::from)?;
        let kind = kind_of(&stat);
        let link_owner = links && kind == FileKind::Symlink && perm.is_none();
        if !matches!(kind, FileKind::File | FileKind::Directory) && !link_owner {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refused to change {shown}: it is {} now; converge never follows it", kind.name()),
            ));
        }
        let mut perm = perm;
        if owner.0.is_some() || owner.1.is_some() {
            fchownat(&fd, "", owner.0.map(Uid::from_raw), owner.1.map(Gid::from_raw), AtFlags::AT_EMPTY_PATH)
                .map_err(|e| chown_error(e, &shown))?;
            // chown(2) clears setuid and setgid: set them back unless a new mode is given.
            perm = perm.or(Some(stat.st_mode & 0o7777).filter(|m| m & 0o6000 != 0));
        }
        if let Some(perm) = perm {
            // An O_PATH fd takes no fchmod; its /proc link reaches exactly the inode it holds.
            let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
            fchmodat(AT_FDCWD, link.as_str(), Perm::from_bits_truncate(perm), FchmodatFlags::FollowSymlink)
                .map_err(|e| errno(e, format!("chmod {shown}")))?;
        }
        Ok(())
    }

    /// Points `path` at `target`, replacing whatever link or file is there atomically.
    pub fn symlink(&self, target: &Path, path: &Path, uid: u32, gid: u32, names: Namer) -> io::Result<()> {
        let _forget = Forget(self);
        let place = self.place(path, names)?;
        self.sweep(&place.dir);
        let shown = self.shown(path);
        let mut made = None;
        for _ in 0..100 {
            let tmp = temp_name();
            match symlinkat(target, &place.dir, tmp.as_os_str()) {
                Ok(()) => {
                    made = Some(tmp);
                    break;
                }
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(errno(e, format!("symlink {shown}"))),
            }
        }
        let tmp = made.ok_or_else(|| io::Error::other(format!("cannot find a free temporary name beside {shown}")))?;
        let done = (|| {
            if (uid, gid) != (self.euid, self.egid) {
                fchownat(
                    &place.dir,
                    tmp.as_os_str(),
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| chown_error(e, &shown))?;
            }
            renameat(&place.dir, tmp.as_os_str(), &place.dir, place.name.as_os_str())
                .map_err(|e| errno(e, format!("rename into {shown}")))
        })();
        if done.is_err() {
            let _ = unlinkat(&place.dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        done?;
        sync_dir(&place.dir)
    }

    /// Renames within one root.
    pub fn rename(&self, from: &Path, to: &Path, names: Namer) -> io::Result<()> {
        let _forget = Forget(self);
        let a = self.place(from, names)?;
        let b = self.place(to, names)?;
        renameat(&a.dir, a.name.as_os_str(), &b.dir, b.name.as_os_str())
            .map_err(|e| errno(e, format!("rename {} to {}", self.shown(from), to.display())))?;
        sync_dir(&b.dir)
    }

    /// Removes a file or symlink, or a directory with everything in it (symlinks inside are
    /// removed, never followed). Nothing there is not an error.
    pub fn remove(&self, path: &Path, names: Namer) -> io::Result<()> {
        let _forget = Forget(self);
        let place = match self.place(path, names) {
            Ok(place) => place,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let shown = self.shown(path);
        match fstatat(&place.dir, place.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(errno(e, format!("cannot stat {shown}"))),
            Ok(stat) if kind_of(&stat) == FileKind::Directory => {
                remove_tree(&place.dir, &place.name).map_err(|e| errno(e, format!("cannot remove {shown}")))?
            }
            Ok(_) => unlinkat(&place.dir, place.name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(|e| errno(e, format!("cannot remove {shown}")))?,
        }
        sync_dir(&place.dir)
    }

    /// chown that says what failed, and is skipped when the file is already ours (so that
    /// trying converge without root works for files that nobody asked to give away).
    fn give(&self, fd: &impl AsFd, uid: u32, gid: u32, shown: &str) -> io::Result<()> {
        if (uid, gid) == (self.euid, self.egid) {
            return Ok(());
        }
        fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(|e| chown_error(e, shown))
    }

    /// A new temporary file beside a target, `.cvg.XXXXXXXX`, opened O_EXCL and O_NOFOLLOW.
    fn create_temp(&self, dir: &impl AsFd, shown: &str) -> io::Result<(OsString, OwnedFd)> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        for _ in 0..100 {
            let name = temp_name();
            match openat(dir, name.as_os_str(), flags, Perm::from_bits_truncate(0o600)) {
                Ok(fd) => return Ok((name, fd)),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(errno(e, format!("cannot create a temporary file beside {shown}"))),
            }
        }
        Err(io::Error::other(format!("cannot find a free temporary name beside {shown}")))
    }

    /// Removes the temporary files an earlier, killed run left in `dir` (once per directory per
    /// run; runs hold the lock, so none of them is in use).
    fn sweep(&self, dir: &impl AsFd) {
        let Ok(stat) = fstat(dir) else { return };
        if !self.swept.lock().unwrap().insert((stat.st_dev, stat.st_ino)) {
            return;
        }
        let Ok((listing, names)) = list(dir, OsStr::new(".")) else { return };
        for name in names.into_iter().filter(|n| is_temp_name(n)) {
            if let Ok(stat) = fstatat(&listing, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                && kind_of(&stat) != FileKind::Directory
            {
                let _ = unlinkat(&listing, name.as_os_str(), UnlinkatFlags::NoRemoveDir);
            }
        }
    }
}

/// Reads a file that converge takes as input (a playbook, a template, a `source:`, a vars file):
/// a regular file (a FIFO would hang the run, a device never end) of at most [`MAX_READ`] bytes.
pub fn read_input(path: &Path) -> io::Result<Vec<u8>> {
    let (fd, stat) = open_input_flags(path, OFlag::empty())?;
    read_opened_input(path, fd, &stat)
}

/// [`read_input`] of a file of a source tree: a symlink there is refused, never followed.
pub fn read_input_entry(path: &Path) -> io::Result<Vec<u8>> {
    let (fd, stat) = open_input_flags(path, OFlag::O_NOFOLLOW)?;
    read_opened_input(path, fd, &stat)
}

/// Opens an input file to stream it (a `file://` download), whatever its size: a regular file.
pub fn open_input(path: &Path) -> io::Result<File> {
    open_input_flags(path, OFlag::empty()).map(|(fd, _)| File::from(fd))
}

/// One entry of a source tree beside the playbook (a `directory` with `source:`).
#[derive(Debug, Clone, PartialEq)]
pub struct InputEntry {
    /// Its path below the tree's top.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// Its bytes; None for a directory.
    pub bytes: Option<Vec<u8>>,
}

/// Reads the tree below `top` (a directory the playbook names, followed if it is a symlink):
/// every directory and regular file, each directory before what is inside it and its entries by
/// name. A symlink inside is an error naming it, never followed (its target may lie anywhere);
/// so is a FIFO, socket or device. Each file is read as [`read_input`] reads one.
pub fn read_input_tree(top: &Path) -> io::Result<Vec<InputEntry>> {
    let meta = std::fs::metadata(top)?;
    if !meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "it is not a directory"));
    }
    let mut entries = Vec::new();
    read_input_dir(top, Path::new(""), &mut entries)?;
    Ok(entries)
}

fn read_input_dir(top: &Path, below: &Path, entries: &mut Vec<InputEntry>) -> io::Result<()> {
    let mut names: Vec<OsString> =
        std::fs::read_dir(top.join(below))?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = below.join(&name);
        let full = top.join(&path);
        let meta = std::fs::symlink_metadata(&full)?;
        let mode = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        if kind.is_dir() {
            entries.push(InputEntry { path: path.clone(), mode, bytes: None });
            read_input_dir(top, &path, entries)?;
        } else if kind.is_file() {
            let bytes =
                read_input_entry(&full).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", full.display())))?;
            entries.push(InputEntry { path, mode, bytes: Some(bytes) });
        } else {
            let what = if kind.is_symlink() { "a symlink" } else { "a special file (FIFO, socket or device)" };
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is {what}: a source tree holds only directories and regular files, and converge never \
                     follows a link in it (put the file itself there, or manage the link with a `symlink:` resource)",
                    full.display()
                ),
            ));
        }
    }
    Ok(())
}

fn open_input_flags(path: &Path, extra: OFlag) -> io::Result<(OwnedFd, FileStat)> {
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | extra;
    let fd = nix::fcntl::open(path, flags, Perm::empty()).map_err(|e| match e {
        Errno::ELOOP => io::Error::new(io::ErrorKind::InvalidInput, "it is a symlink"),
        e => io::Error::from(e),
    })?;
    let stat = fstat(&fd).map_err(io::Error::from)?;
    let kind = kind_of(&stat);
    if kind != FileKind::File {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("it is {}, not a regular file", kind.name())));
    }
    Ok((fd, stat))
}

fn read_opened_input(path: &Path, fd: OwnedFd, stat: &FileStat) -> io::Result<Vec<u8>> {
    let size = stat.st_size as u64;
    let limit = MAX_READ;
    let shown = path.display().to_string();
    if size > limit {
        return Err(too_big(&shown, size, limit));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    File::from(fd).take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(&shown, bytes.len() as u64, limit));
    }
    note_input(path, &bytes);
    Ok(bytes)
}

thread_local! {
    static INPUTS: std::cell::RefCell<Option<Vec<(PathBuf, String)>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` and returns it with every input file it read through [`read_input`] (a saved plan
/// records them), each once, with the sha256 of what was read.
pub fn record_inputs<T>(f: impl FnOnce() -> T) -> (T, Vec<(PathBuf, String)>) {
    INPUTS.with(|r| r.replace(Some(Vec::new())));
    let value = f();
    (value, INPUTS.with(|r| r.take()).unwrap_or_default())
}

fn note_input(path: &Path, bytes: &[u8]) {
    INPUTS.with(|r| {
        if let Some(inputs) = r.borrow_mut().as_mut()
            && !inputs.iter().any(|(p, _)| p == path)
        {
            inputs.push((path.to_owned(), hex(&Sha256::digest(bytes))));
        }
    });
}

/// [`read_input`] of a text: UTF-8, or an error that says where it stops being.
pub fn read_input_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_input(path)?).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        io::Error::new(io::ErrorKind::InvalidData, format!("it is not UTF-8 text (the byte at offset {at} is not)"))
    })
}

/// Forgets the walked directories when dropped: at the end of every change, whatever its outcome.
struct Forget<'a>(&'a Tree);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget_dirs();
    }
}

/// What `lstat` says about a path (symlinks are never followed).
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub kind: FileKind,
    pub mode: crate::host::mode::Mode,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
}

impl From<&FileStat> for Stat {
    fn from(s: &FileStat) -> Stat {
        Stat {
            kind: kind_of(s),
            mode: crate::host::mode::Mode(s.st_mode & 0o7777),
            uid: s.st_uid,
            gid: s.st_gid,
            size: s.st_size as u64,
            mtime: s.st_mtime,
        }
    }
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
            FileKind::Other => "a special file (FIFO, socket or device)",
        }
    }
}

fn kind_of(stat: &FileStat) -> FileKind {
    match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => FileKind::File,
        SFlag::S_IFDIR => FileKind::Directory,
        SFlag::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

/// The components of a path to walk: names and `..`; `/` and `.` are dropped (the walk starts
/// at the root).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// A path's parent and last component; the root itself has none and is never acted on.
fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` names no file (the root itself is never created, changed or removed)", path.display()),
        )),
    }
}

/// Opens the directory `name` below `dir` (never through a symlink) and lists its entries, not
/// `.` and `..`.
fn list(dir: &impl AsFd, name: &OsStr) -> nix::Result<(Dir, Vec<OsString>)> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut listing = Dir::openat(dir, name, flags, Perm::empty())?;
    let names = listing
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    Ok((listing, names))
}

fn remove_tree(parent: &impl AsFd, name: &OsStr) -> nix::Result<()> {
    let (fd, entries) = list(parent, name)?;
    for entry in entries {
        match fstatat(&fd, entry.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) if kind_of(&stat) == FileKind::Directory => remove_tree(&fd, &entry)?,
            Ok(_) => unlinkat(&fd, entry.as_os_str(), UnlinkatFlags::NoRemoveDir)?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

fn sync_dir(dir: &impl AsFd) -> io::Result<()> {
    let fd = openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Perm::empty())?;
    File::from(fd).sync_all()
}

fn temp_name() -> OsString {
    // std's RandomState is seeded randomly per process; the counter makes each name new.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let mut bits = hasher.finish();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut name = String::from(TEMP_PREFIX);
    for _ in 0..TEMP_RANDOM {
        name.push(ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char);
        bits /= ALPHABET.len() as u64;
    }
    name.into()
}

fn is_temp_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    bytes.len() == TEMP_PREFIX.len() + TEMP_RANDOM
        && bytes.starts_with(TEMP_PREFIX.as_bytes())
        && bytes[TEMP_PREFIX.len()..].iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn errno(e: Errno, context: String) -> io::Error {
    io::Error::new(io::Error::from(e).kind(), format!("{context}: {}", e.desc()))
}

fn chown_error(e: Errno, shown: &str) -> io::Error {
    let hint = if e == Errno::EPERM { " (changing a file's owner needs root)" } else { "" };
    io::Error::new(io::Error::from(e).kind(), format!("chown {shown}: {}{hint}", e.desc()))
}

fn too_big(shown: &str, size: u64, limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{shown} is {size} bytes, more than the {} MiB converge reads into memory", limit / (1024 * 1024)),
    )
}

/// Copies `source` into `out`, returning the sha256 of what went through.
fn copy_hashed(source: &mut dyn Read, out: &mut dyn Write) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])?;
    }
    Ok(hex(&hasher.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_short_fixed_and_recognised() {
        let a = temp_name();
        let b = temp_name();
        assert_ne!(a, b);
        assert_eq!(a.len(), 13);
        assert!(is_temp_name(&a), "{a:?}");
        assert!(!is_temp_name(OsStr::new(".cvg.ABCDEFGH")));
        assert!(!is_temp_name(OsStr::new(".cvg.abc")));
        assert!(!is_temp_name(OsStr::new("app.conf")));
    }

    #[test]
    fn components_keep_dotdot_and_drop_the_rest() {
        let got: Vec<OsString> = components(Path::new("/a//./b/../c/")).into_iter().collect();
        assert_eq!(got, ["a", "b", "..", "c"]);
    }

    #[test]
    fn the_root_names_no_file() {
        assert!(split(Path::new("/")).is_err());
        assert_eq!(split(Path::new("/etc/motd")).unwrap(), (Path::new("/etc"), OsStr::new("motd")));
    }
}
