//! What the host will hold once the packages of a plan are installed: the files their `.deb`s
//! bring and their maintainer scripts make, and the units they start. The plan lays it over the
//! host (`Host::foresee`) while it observes the resources after an `apt` install, so that they
//! see what apply will find (docs/first-run.md); it is lifted again before anything is applied.
//!
//! The real host wins: a foreseen path counts only where nothing is on the host yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::FileKind;
use super::fs::Stat;
use super::mode::Mode;
use super::systemd::UnitStatus;

/// A path that a package to be installed will bring.
#[derive(Debug, Clone, PartialEq)]
pub struct Foreseen {
    /// A file, a directory, a symlink.
    pub kind: FileKind,
    /// Its permission bits, as the package ships them.
    pub mode: Mode,
    /// Its owner and group ids.
    pub uid: u32,
    pub gid: u32,
    /// Its size in bytes (a symlink: its target's length).
    pub size: u64,
    /// A file's bytes, where the forecast keeps them (configuration and unit files); None for
    /// the rest, which no resource reads.
    pub content: Option<Arc<[u8]>>,
    /// A symlink's target.
    pub target: Option<PathBuf>,
    /// Who brings it, for people: `package nginx-common`, `the postinst of package nginx-common`.
    pub origin: String,
}

impl Foreseen {
    /// What `lstat` will say of it.
    pub fn stat(&self) -> Stat {
        Stat { kind: self.kind, mode: self.mode, uid: self.uid, gid: self.gid, size: self.size, mtime: 0 }
    }
}

/// A unit that a package to be installed brings.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeseenUnit {
    /// Its name (`nginx.service`).
    pub name: String,
    /// Whether the package's postinst starts it (Debian's `deb-systemd-invoke start`), as this
    /// host's policy (`/usr/sbin/policy-rc.d`) lets it.
    pub starts: bool,
    /// Its file has `ExecReload=`.
    pub can_reload: bool,
    /// The package that brings it.
    pub package: String,
    /// Why it will or will not run after the install, for people.
    pub why: String,
}

impl ForeseenUnit {
    /// The status systemd will report once the package is installed.
    pub fn status(&self) -> UnitStatus {
        UnitStatus {
            name: self.name.clone(),
            load_state: "loaded".into(),
            active_state: if self.starts { "active" } else { "inactive" }.into(),
            sub_state: if self.starts { "running" } else { "dead" }.into(),
            can_reload: self.can_reload,
            ..UnitStatus::default()
        }
    }
}

/// What the packages of a plan will bring.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forecast {
    /// The paths the packages bring, absolute.
    pub paths: BTreeMap<PathBuf, Foreseen>,
    /// The units among them.
    pub units: Vec<ForeseenUnit>,
}

impl Forecast {
    /// Adds what `other` foresees.
    pub fn extend(&mut self, other: Forecast) {
        self.paths.extend(other.paths);
        self.units.extend(other.units);
    }

    /// What it foresees at `path`.
    pub fn at(&self, path: &Path) -> Option<&Foreseen> {
        self.paths.get(path)
    }

    /// The unit it foresees by that name.
    pub fn unit(&self, name: &str) -> Option<&ForeseenUnit> {
        self.units.iter().find(|u| u.name == name)
    }

    /// The names of what it foresees directly inside `dir`, with their kinds.
    pub fn children(&self, dir: &Path) -> Vec<(std::ffi::OsString, FileKind)> {
        self.paths
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .filter_map(|(path, f)| Some((path.file_name()?.to_owned(), f.kind)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Foreseen {
        Foreseen {
            kind: FileKind::Directory,
            mode: Mode(0o755),
            uid: 0,
            gid: 0,
            size: 0,
            content: None,
            target: None,
            origin: "nginx-common".into(),
        }
    }

    #[test]
    fn lists_children_and_units() {
        let mut forecast = Forecast::default();
        forecast.paths.insert("/etc/nginx".into(), dir());
        forecast.paths.insert("/etc/nginx/sites-enabled".into(), dir());
        forecast.paths.insert("/etc/nginx/sites-enabled/x/y".into(), dir());
        let names: Vec<_> = forecast.children(Path::new("/etc/nginx")).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["sites-enabled"]);
        forecast.units.push(ForeseenUnit {
            name: "nginx.service".into(),
            starts: true,
            can_reload: true,
            package: "nginx-common".into(),
            why: String::new(),
        });
        let status = forecast.unit("nginx.service").unwrap().status();
        assert_eq!((status.load_state.as_str(), status.active_state.as_str()), ("loaded", "active"));
        assert!(forecast.unit("ssh.service").is_none());
    }

    fn foreseen(kind: FileKind, content: Option<&str>, target: Option<&str>) -> Foreseen {
        Foreseen {
            kind,
            content: content.map(|c| Arc::from(c.as_bytes())),
            size: content.map_or(0, |c| c.len() as u64),
            target: target.map(PathBuf::from),
            ..dir()
        }
    }

    /// The host reads the forecast where it has nothing, its own files first, and tells which
    /// foreseen paths were read; lifted, the forecast is gone.
    #[test]
    fn the_host_reads_the_forecast_where_it_has_nothing() {
        let root = tempfile::tempdir().unwrap();
        let host = crate::host::Host::new(Some(root.path().to_owned()));
        host.create_dirs(Path::new("/etc/nginx/sites-available")).unwrap();
        let (uid, gid) = host.system_owner();
        host.write_atomic(Path::new("/etc/nginx/sites-available/default"), b"mine\n", Mode(0o600), uid, gid).unwrap();
        let mut forecast = Forecast::default();
        forecast.paths.insert("/etc/nginx/sites-enabled".into(), dir());
        forecast.paths.insert("/etc/nginx/conf.d".into(), dir());
        let link = foreseen(FileKind::Symlink, None, Some("/etc/nginx/sites-available/default"));
        forecast.paths.insert("/etc/nginx/sites-enabled/default".into(), link);
        forecast.paths.insert("/etc/nginx/nginx.conf".into(), foreseen(FileKind::File, Some("events {}\n"), None));
        forecast
            .paths
            .insert("/etc/nginx/sites-available/default".into(), foreseen(FileKind::File, Some("theirs"), None));
        forecast.paths.insert("/usr/sbin/nginx".into(), foreseen(FileKind::File, None, None));
        host.foresee(forecast);

        let enabled = Path::new("/etc/nginx/sites-enabled/default");
        assert_eq!(host.stat(enabled).unwrap().map(|s| s.kind), Some(FileKind::Symlink));
        assert_eq!(host.read_link(enabled).unwrap(), Path::new("/etc/nginx/sites-available/default"));
        assert_eq!(host.read(Path::new("/etc/nginx/nginx.conf")).unwrap(), b"events {}\n");
        assert_eq!(host.digest(Path::new("/etc/nginx/nginx.conf")).unwrap().0, 10);
        assert_eq!(host.read(Path::new("/etc/nginx/sites-available/default")).unwrap(), b"mine\n", "the host wins");
        assert!(host.read(Path::new("/usr/sbin/nginx")).is_err(), "content not kept: no bytes made up");
        let mut names: Vec<_> = host.read_dir(Path::new("/etc/nginx")).unwrap().into_iter().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(names, ["conf.d", "nginx.conf", "sites-available", "sites-enabled"]);
        assert_eq!(host.read_dir(Path::new("/etc/nginx/conf.d")).unwrap(), vec![], "a foreseen empty directory");
        let read: Vec<PathBuf> = host.foreseen_reads().into_iter().map(|(path, _)| path).collect();
        assert!(
            read.contains(&enabled.to_path_buf()) && read.contains(&PathBuf::from("/etc/nginx/nginx.conf")),
            "{read:?}"
        );
        assert!(!read.contains(&PathBuf::from("/etc/nginx/sites-available/default")), "{read:?}");

        assert_eq!(host.read_dir(Path::new("/etc/nginx/sites-enabled")).unwrap().len(), 1);
        host.forget_forecast();
        assert_eq!(host.stat(enabled).unwrap(), None);
        assert!(host.read_dir(Path::new("/etc/nginx/sites-enabled")).is_err());
    }
}
