//! A venv as it is on disk, read without starting a process: its pyvenv.cfg, where its
//! interpreter leads, its site-packages; and what the playbook's `python` is on the host now.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Virtualenv;
use super::installer::Tool;
use super::metadata::{Installed, installed, parse_cfg};
use crate::error::{Error, Result};
use crate::host::{FileKind, Host, Stat};
use crate::kinds::observe_owner;
use crate::kinds::resource::Resource;
use crate::kinds::resource::State;

/// What observing a venv reads: the venv, and the program that would make its changes (none
/// for a venv to remove).
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub venv: VenvActual,
    pub tool: Option<Tool>,
}

/// A venv path as observed.
#[derive(Debug, Clone, PartialEq)]
pub enum VenvActual {
    /// Nothing there, or an empty directory.
    Absent,
    /// A venv (an empty `Observed` when it is to be removed: nothing more is read).
    Present(Box<Observed>),
}

/// What a venv on disk says about itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    pub owner: String,
    pub group: String,
    /// `version` of pyvenv.cfg (3.11.7).
    pub python_version: Option<String>,
    /// `implementation` of pyvenv.cfg when a tool wrote one (uv does); CPython otherwise.
    pub implementation: Option<String>,
    /// The real file of its interpreter: pyvenv.cfg's `executable`, else where bin/python leads.
    pub interpreter: Option<PathBuf>,
    /// Why it cannot be used as it is, if it cannot.
    pub broken: Option<String>,
    /// What the playbook's `python` is on this host now.
    pub wanted_python: WantedPython,
    pub platform: Platform,
    /// Installed distributions by normalised name.
    pub packages: BTreeMap<String, Installed>,
}

/// What `python` names, found without running it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum WantedPython {
    /// An interpreter binary: its real path (all symlinks followed).
    Binary(PathBuf),
    /// A script (a wrapper, a pyenv shim): what it runs cannot be known without running it.
    Script(PathBuf),
    #[default]
    NotFound,
}

/// The machine facts that environment markers (`platform_machine == "x86_64"`) ask about.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Platform {
    pub machine: String,
    pub release: String,
    pub version: String,
}

impl Platform {
    /// This machine's (also under `--root`, where the venv's programs run on it).
    fn of(host: &Host) -> Platform {
        let (release, version) = host.kernel();
        Platform { machine: std::env::consts::ARCH.to_owned(), release, version }
    }
}

/// The venv at `venv.path`: absent, or what it holds and whether it is broken.
pub(super) fn observe(venv: &Virtualenv, host: &Host) -> Result<VenvActual> {
    let Some((stat, cfg)) = venv.read_cfg(host)? else {
        return Ok(VenvActual::Absent);
    };
    if venv.state == State::Absent {
        return Ok(VenvActual::Present(Box::default()));
    }
    let id = venv.id();
    let (owner, group) = observe_owner(host, &stat).map_err(|e| Error::resource_io(&id, "cannot read its owner", e))?;
    let mut observed = Observed {
        owner,
        group,
        python_version: cfg.get("version").or_else(|| cfg.get("version_info")).cloned(),
        implementation: cfg.get("implementation").cloned(),
        wanted_python: venv.wanted_python(host)?,
        platform: Platform::of(host),
        ..Observed::default()
    };
    (observed.broken, observed.interpreter) = venv.interpreter(host, &cfg)?;
    match venv.site_packages(host, observed.python_version.as_deref())? {
        Ok(site) => observed.packages = installed(host, &site, &id)?,
        Err(broken) => {
            observed.broken.get_or_insert(broken);
        }
    }
    Ok(VenvActual::Present(Box::new(observed)))
}

impl Virtualenv {
    /// The venv directory and its pyvenv.cfg; None when nothing is there or the directory is
    /// empty. Anything else without a pyvenv.cfg is not a venv, and converge leaves it alone.
    fn read_cfg(&self, host: &Host) -> Result<Option<(Stat, BTreeMap<String, String>)>> {
        let id = self.id();
        let io = |what: &'static str| {
            let id = id.clone();
            move |e| Error::resource_io(id, what, e)
        };
        let Some(stat) = host.stat(&self.path).map_err(io("cannot read it"))? else {
            return Ok(None);
        };
        if stat.kind != FileKind::Directory {
            return Err(Error::resource(
                &id,
                format!("{} is {}, not a virtualenv directory; remove it first", self.path.display(), stat.kind.name()),
            ));
        }
        match host.read(&self.cfg_path()) {
            Ok(bytes) => Ok(Some((stat, parse_cfg(&String::from_utf8_lossy(&bytes))))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if super::list_dir(host, &self.path).map_err(io("cannot read it"))?.is_empty() {
                    return Ok(None);
                }
                Err(Error::resource(
                    &id,
                    format!(
                        "{} is a directory with files but no pyvenv.cfg, so it is not a virtualenv; converge does not \
                         overwrite it: move it away or choose another path",
                        self.path.display()
                    ),
                ))
            }
            Err(e) => Err(io("cannot read its pyvenv.cfg")(e)),
        }
    }

    /// Why the venv's interpreter cannot run, if it cannot, and its real file: pyvenv.cfg's
    /// `executable` (realpath() as Python saw it; resolved again, it compares with `python`),
    /// else where bin/python leads.
    fn interpreter(&self, host: &Host, cfg: &BTreeMap<String, String>) -> Result<(Option<String>, Option<PathBuf>)> {
        let io = |what: &'static str| move |e| Error::resource_io(self.id(), what, e);
        let bin_python = self.path.join("bin/python");
        let link_end = host.real_path(&bin_python).map_err(io("cannot read bin/python"))?;
        let executable = match cfg.get("executable") {
            Some(path) => Some(host.real_path(Path::new(path)).map_err(io("cannot read its interpreter"))?),
            None => None,
        };
        let broken = match (&link_end, &executable) {
            (Err(missing), _) if *missing == bin_python => Some("bin/python is missing".to_owned()),
            (Err(missing), _) => Some(format!("bin/python leads to {}, which does not exist", missing.display())),
            (Ok(_), Some(Err(missing))) => Some(format!("its interpreter {} does not exist", missing.display())),
            (Ok(_), _) => None,
        };
        let interpreter = match executable {
            Some(resolved) => Some(resolved.unwrap_or_else(|missing| missing)),
            None => link_end.ok(),
        };
        Ok((broken, interpreter))
    }

    /// Its site-packages directory (`lib/pythonX.Y/site-packages`), or why it is broken without
    /// one.
    fn site_packages(&self, host: &Host, python_version: Option<&str>) -> Result<Result<PathBuf, String>> {
        let Some(version) = python_version else {
            return Ok(Err("its pyvenv.cfg has no version".to_owned()));
        };
        let short: Vec<&str> = version.split('.').take(2).collect();
        let site = self.path.join(format!("lib/python{}/site-packages", short.join(".")));
        match host.stat(&site).map_err(|e| Error::resource_io(self.id(), "cannot read site-packages", e))? {
            Some(_) => Ok(Ok(site)),
            None => Ok(Err(format!("{} is missing", site.display()))),
        }
    }

    /// What `python` is on the host now, without running it: the first executable of that name
    /// on [`Virtualenv::search_path`], or the path it is; a script when it starts with `#!`.
    pub(super) fn wanted_python(&self, host: &Host) -> Result<WantedPython> {
        let io = |e| Error::resource_io(self.id(), "cannot look up its python", e);
        let Some(real) = host.find_program(&self.python, &self.search_path(host)).map_err(io)? else {
            return Ok(WantedPython::NotFound);
        };
        // Only the first bytes: an interpreter binary is megabytes.
        let head = host.head(&real, 2).map_err(io)?;
        Ok(if head == b"#!" { WantedPython::Script(real) } else { WantedPython::Binary(real) })
    }

    /// Where a bare `python: NAME` is looked up: as its owner would find it. That is converge's
    /// own PATH only when the venv belongs to whoever runs converge; for another owner (and
    /// inside a `--root`) it is the system PATH, since a PATH such as root's with pyenv shims
    /// first names interpreters the owner cannot run.
    fn search_path(&self, host: &Host) -> String {
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map(|u| u.name);
        let another_owner = self.ownership.owner.as_ref().is_some_and(|owner| Some(owner) != me.as_ref());
        match std::env::var("PATH") {
            Ok(path) if host.root().is_none() && !another_owner => path,
            // Another user's, or inside a root: the PATH converge's programs run with.
            _ => crate::host::PATH.to_owned(),
        }
    }
}
