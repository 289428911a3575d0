//! `extract:` of a download: a tar.gz, tar.xz or zip archive unpacked into a directory, with no
//! shell and no `tar` program (the tar, flate2, lzma-rust2 and zip crates, all pure Rust).
//!
//! The archive is read twice. The first pass checks every member before anything is written: a
//! member's path must stay inside the directory (no absolute path, no `..`), a symlink must
//! point inside it (never absolute, never climbing out), no member may lie below a symlink of
//! the archive, and only directories, files and symlinks are taken (a hard link or a device is
//! refused). The second pass writes through `host/`: files atomically (temporary file beside,
//! then rename), never through a symlink found on the host (a directory on the way that is a
//! symlink is refused). Modes are the archive's permission bits (no setuid, setgid or sticky
//! bit), owners those of the resource, as `tar --no-same-owner` does.
//!
//! The members are then listed in a manifest under the state directory (MANIFESTS, one per
//! directory), with the archive's sha256: a later run that finds the manifest of the same
//! archive, and each member there with its kind and size, extracts nothing.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::host::mode::Mode;
use crate::host::{FileKind, Host};

/// Where the manifests of extracted archives are kept.
pub const MANIFESTS: &str = "/var/lib/converge/extracted";

/// What an archive put into a directory, as the manifest keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The directory.
    pub dir: PathBuf,
    /// The archive's sha256.
    pub archive_sha256: String,
    pub members: Vec<Member>,
}

/// One member of an archive, checked: its path is below the directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub path: PathBuf,
    pub kind: MemberKind,
    /// Its permission bits, as the archive gives them (no setuid, setgid or sticky bit).
    pub mode: u32,
}

/// What a member is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MemberKind {
    Directory,
    File { size: u64 },
    Symlink { target: PathBuf },
}

/// The archive formats `extract:` takes, told by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    TarGz,
    TarXz,
    Zip,
}

impl Format {
    fn of(head: &[u8]) -> Option<Format> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Format::TarGz)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Format::TarXz)
        } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Some(Format::Zip)
        } else {
            None
        }
    }
}

/// The manifest's path for the directory `dir`.
pub fn manifest_path(dir: &Path) -> PathBuf {
    let name = crate::host::hex(&Sha256::digest(dir.as_os_str().as_encoded_bytes()));
    Path::new(MANIFESTS).join(format!("{name}.json"))
}

/// The manifest of what was extracted into `dir`, if any (an unreadable one counts as none).
pub fn read_manifest(host: &Host, dir: &Path) -> io::Result<Option<Manifest>> {
    match host.read(&manifest_path(dir)) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether every member of the manifest is in `dir` as it was extracted (kind, and size of a
/// file).
pub fn intact(host: &Host, manifest: &Manifest) -> io::Result<bool> {
    for member in &manifest.members {
        let Some(stat) = host.stat(&manifest.dir.join(&member.path))? else { return Ok(false) };
        let same = match &member.kind {
            MemberKind::Directory => stat.kind == FileKind::Directory,
            MemberKind::File { size } => stat.kind == FileKind::File && stat.size == *size,
            MemberKind::Symlink { .. } => stat.kind == FileKind::Symlink,
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Extracts the archive at `archive` (whose sha256 is `sha256`) into `dir`, its entries owned by
/// `owner`, and writes the manifest. Nothing is written when a member is refused.
pub fn extract(host: &Host, archive: &Path, sha256: &str, dir: &Path, owner: (u32, u32)) -> io::Result<()> {
    let head = host.head(archive, 6)?;
    let format = Format::of(&head).ok_or_else(|| {
        invalid(format!("{} is not a tar.gz, tar.xz or zip archive (by its first bytes)", archive.display()))
    })?;
    let members = read_members(host, archive, format, dir)?;
    make_dir(host, dir, 0o755, owner)?;
    let mut writer = Writer { host, dir, owner, checked: HashSet::new() };
    match format {
        Format::Zip => writer.zip(host.open(archive)?, &members)?,
        Format::TarGz | Format::TarXz => writer.tar(tar_stream(host, archive, format)?, &members)?,
    }
    let manifest = Manifest { dir: dir.to_owned(), archive_sha256: sha256.to_owned(), members };
    let path = manifest_path(dir);
    host.create_dirs(Path::new(MANIFESTS))?;
    let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    host.write_system_file(&path, &json, Mode(0o600))
}

/// The decompressed stream of a tar archive.
fn tar_stream(host: &Host, archive: &Path, format: Format) -> io::Result<Box<dyn Read>> {
    let file = io::BufReader::new(host.open(archive)?);
    Ok(match format {
        Format::TarXz => Box::new(lzma_rust2::XzReader::new(file, true)),
        _ => Box::new(flate2::read::MultiGzDecoder::new(file)),
    })
}

/// The first pass: every member, checked.
fn read_members(host: &Host, archive: &Path, format: Format, dir: &Path) -> io::Result<Vec<Member>> {
    let mut checker = Checker { dir, links: HashSet::new(), members: Vec::new() };
    match format {
        Format::Zip => {
            let mut zip = zip::ZipArchive::new(host.open(archive)?).map_err(io::Error::other)?;
            for index in 0..zip.len() {
                let mut entry = zip.by_index(index).map_err(io::Error::other)?;
                let name = PathBuf::from(entry.name().map_err(io::Error::other)?.as_ref());
                let mode = entry.unix_mode();
                let kind = if entry.is_dir() {
                    MemberKind::Directory
                } else if mode.is_some_and(|m| m & 0o170000 == 0o120000) {
                    let mut target = String::new();
                    entry.read_to_string(&mut target)?;
                    MemberKind::Symlink { target: target.into() }
                } else {
                    MemberKind::File { size: entry.size() }
                };
                checker.add(&name, kind, mode)?;
            }
        }
        Format::TarGz | Format::TarXz => {
            let mut tar = tar::Archive::new(tar_stream(host, archive, format)?);
            for entry in tar.entries()? {
                let entry = entry?;
                let header = entry.header();
                let name = entry.path()?.into_owned();
                let mode = header.mode().ok();
                let kind = match header.entry_type() {
                    tar::EntryType::Directory => MemberKind::Directory,
                    tar::EntryType::Regular | tar::EntryType::Continuous => MemberKind::File { size: header.size()? },
                    tar::EntryType::Symlink => {
                        let target = entry.link_name()?.ok_or_else(|| invalid("a symlink without a target"))?;
                        MemberKind::Symlink { target: target.into_owned() }
                    }
                    tar::EntryType::XGlobalHeader => continue,
                    tar::EntryType::Link => return Err(refused(dir, &name, "is a hard link, which converge does not extract")),
                    other => return Err(refused(dir, &name, &format!("is a special entry ({other:?})"))),
                };
                checker.add(&name, kind, mode)?;
            }
        }
    }
    Ok(checker.members)
}

/// Checks members one by one, remembering the symlinks met.
struct Checker<'a> {
    dir: &'a Path,
    links: HashSet<PathBuf>,
    members: Vec<Member>,
}

impl Checker<'_> {
    fn add(&mut self, name: &Path, kind: MemberKind, mode: Option<u32>) -> io::Result<()> {
        let Some(path) = inside(name).map_err(|why| refused(self.dir, name, why))? else { return Ok(()) };
        if let Some(link) = path.ancestors().skip(1).find(|a| self.links.contains(*a)) {
            let why = format!("lies below `{}`, a symlink of the archive", link.display());
            return Err(refused(self.dir, name, &why));
        }
        if let MemberKind::Symlink { target } = &kind {
            if !link_stays_inside(&path, target) {
                let why = format!("is a symlink to `{}`, which is outside {}", target.display(), self.dir.display());
                return Err(refused(self.dir, name, &why));
            }
            self.links.insert(path.clone());
        }
        let default = if kind == MemberKind::Directory { 0o755 } else { 0o644 };
        let mode = mode.map(|m| m & 0o777).unwrap_or(default);
        self.members.push(Member { path, kind, mode });
        Ok(())
    }
}

/// A member's path below the directory: its normal components (`./` dropped); None for the
/// directory itself; an error for an absolute path or `..`.
fn inside(name: &Path) -> Result<Option<PathBuf>, &'static str> {
    let mut path = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(Some(path).filter(|p| !p.as_os_str().is_empty()))
}

/// Whether a symlink at `path` (below the directory) pointing at `target` stays inside it.
fn link_stays_inside(path: &Path, target: &Path) -> bool {
    let mut depth = path.components().count() - 1;
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth == 0 => return false,
            Component::ParentDir => depth -= 1,
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// The second pass: writes the members into the directory through `host/`.
struct Writer<'a> {
    host: &'a Host,
    dir: &'a Path,
    owner: (u32, u32),
    /// Directories below `dir` known to be directories (made, or found as one).
    checked: HashSet<PathBuf>,
}

impl Writer<'_> {
    fn tar(&mut self, stream: Box<dyn Read>, members: &[Member]) -> io::Result<()> {
        let mut tar = tar::Archive::new(stream);
        let mut members = members.iter();
        for entry in tar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            if entry.header().entry_type() == tar::EntryType::XGlobalHeader || inside(&path).ok().flatten().is_none() {
                continue;
            }
            let member = members.next().ok_or_else(|| invalid("the archive changed while it was extracted"))?;
            self.write(member, &mut entry)?;
        }
        Ok(())
    }

    fn zip(&mut self, file: std::fs::File, members: &[Member]) -> io::Result<()> {
        let mut zip = zip::ZipArchive::new(file).map_err(io::Error::other)?;
        let mut members = members.iter();
        for index in 0..zip.len() {
            let mut entry = zip.by_index(index).map_err(io::Error::other)?;
            let name = PathBuf::from(entry.name().map_err(io::Error::other)?.as_ref());
            if inside(&name).ok().flatten().is_none() {
                continue;
            }
            let member = members.next().ok_or_else(|| invalid("the archive changed while it was extracted"))?;
            self.write(member, &mut entry)?;
        }
        Ok(())
    }

    fn write(&mut self, member: &Member, content: &mut dyn Read) -> io::Result<()> {
        let path = self.dir.join(&member.path);
        self.parents(&member.path)?;
        match &member.kind {
            MemberKind::Directory => {
                make_dir(self.host, &path, member.mode, self.owner)?;
                self.checked.insert(member.path.clone());
                Ok(())
            }
            MemberKind::File { .. } => {
                self.host.write_atomic_from(&path, content, Mode(member.mode), self.owner, &|_| Ok(())).map(drop)
            }
            MemberKind::Symlink { target } => self.host.symlink(target, &path, self.owner.0, self.owner.1),
        }
    }

    /// Makes the directories a member lies in, and refuses to pass through anything else (a
    /// symlink on the host, which could lead anywhere).
    fn parents(&mut self, path: &Path) -> io::Result<()> {
        let mut parents: Vec<&Path> = path.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty()).collect();
        parents.reverse();
        for parent in parents {
            if self.checked.contains(parent) {
                continue;
            }
            make_dir(self.host, &self.dir.join(parent), 0o755, self.owner)?;
            self.checked.insert(parent.to_owned());
        }
        Ok(())
    }
}

/// Makes a directory unless there is one; anything else there (a symlink) is refused.
fn make_dir(host: &Host, path: &Path, mode: u32, (uid, gid): (u32, u32)) -> io::Result<()> {
    match host.stat(path)? {
        None => host.create_dir(path, Mode(mode), uid, gid),
        Some(stat) if stat.kind == FileKind::Directory => Ok(()),
        Some(stat) => Err(invalid(format!(
            "refused {}: it is {}, where the archive has a directory; converge never extracts through it",
            path.display(),
            stat.kind.name()
        ))),
    }
}

fn refused(dir: &Path, name: &Path, why: &str) -> io::Error {
    invalid(format!(
        "refused the archive: its entry `{}` {why}; nothing was extracted into {}",
        name.display(),
        dir.display()
    ))
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_stay_inside() {
        assert_eq!(inside(Path::new("./app/bin/x")), Ok(Some(PathBuf::from("app/bin/x"))));
        assert_eq!(inside(Path::new("./")), Ok(None));
        assert!(inside(Path::new("../etc/passwd")).is_err());
        assert!(inside(Path::new("app/../../x")).is_err());
        assert!(inside(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn symlinks_stay_inside() {
        assert!(link_stays_inside(Path::new("app/current"), Path::new("v2")));
        assert!(link_stays_inside(Path::new("app/lib/x.so"), Path::new("../other/x.so")));
        assert!(!link_stays_inside(Path::new("app/x"), Path::new("../../etc")));
        assert!(!link_stays_inside(Path::new("x"), Path::new("/etc/passwd")));
        assert!(!link_stays_inside(Path::new("x"), Path::new("..")));
    }

    #[test]
    fn a_member_below_a_symlink_of_the_archive_is_refused() {
        let mut checker = Checker { dir: Path::new("/opt/app"), links: HashSet::new(), members: Vec::new() };
        checker.add(Path::new("lib"), MemberKind::Symlink { target: "lib64".into() }, None).unwrap();
        let err = checker.add(Path::new("lib/evil"), MemberKind::File { size: 1 }, None).unwrap_err();
        assert!(err.to_string().contains("below `lib`, a symlink"), "{err}");
    }

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        assert_eq!(Format::of(&[0x1f, 0x8b, 8, 0]), Some(Format::TarGz));
        assert_eq!(Format::of(b"\xfd7zXZ\0"), Some(Format::TarXz));
        assert_eq!(Format::of(b"PK\x03\x04"), Some(Format::Zip));
        assert_eq!(Format::of(b"<html>"), None);
    }
}
