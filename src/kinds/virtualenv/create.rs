//! Making a venv, or making it anew: `python -m venv` or `uv venv` as its owner, then its
//! packages; a failed attempt leaves the path as it found it.

use std::path::{Path, PathBuf};

use super::installer::Tool;
use super::observe::{VenvActual, WantedPython, observe};
use super::{Virtualenv, list_dir, pip};
use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{Account, Host};
use crate::kinds::resource::Resource;

/// What was at the venv's path before it was made.
struct Before {
    /// Where an old venv is moved while the new one is made.
    aside: PathBuf,
    /// A venv was there (it is now at `aside`).
    had_cfg: bool,
    /// A directory is there now: an empty one, or the one the old venv was not moved out of.
    existed: bool,
}

impl Virtualenv {
    /// Creates (or recreates) the venv and installs its packages. A venv being replaced is moved
    /// aside first and put back if anything fails; a new one that fails is removed again, so a
    /// failed run leaves the path as it found it.
    pub(super) fn create(&self, host: &Host, owner: &Account, tool: &Tool) -> Result<()> {
        let id = self.id();
        let before = self.move_aside(host)?;
        match self.make(host, owner, tool, before.existed) {
            Ok(()) if before.had_cfg => {
                host.remove(&before.aside).map_err(|e| Error::resource_io(&id, "cannot remove the old venv", e))
            }
            Ok(()) => Ok(()),
            Err(error) => match self.put_back(host, &before) {
                Ok(()) => Err(error),
                Err(e) => Err(Error::resource_io(&id, format!("{error}; and cleaning up after it failed"), e)),
            },
        }
    }

    /// Checks that its directory exists, and moves an old venv out of the way.
    fn move_aside(&self, host: &Host) -> Result<Before> {
        let id = self.id();
        let io = |what: &'static str| {
            let id = id.clone();
            move |e| Error::resource_io(id, what, e)
        };
        let parent = self.path.parent().unwrap_or(Path::new("/"));
        if host.stat(parent).map_err(io("cannot read its directory"))?.is_none() {
            return Err(Error::resource(
                &id,
                format!("its directory {} does not exist; add a `directory:` resource for it", parent.display()),
            ));
        }
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let aside = parent.join(format!(".{name}.converge-old"));
        let had_cfg = host.stat(&self.cfg_path()).map_err(io("cannot read it"))?.is_some();
        if had_cfg {
            host.remove(&aside).map_err(io("cannot clear the place to move the old venv to"))?;
            host.rename(&self.path, &aside).map_err(io("cannot move the old venv aside"))?;
        }
        let existed = host.stat(&self.path).map_err(io("cannot read it"))?.is_some();
        Ok(Before { aside, had_cfg, existed })
    }

    /// Makes the venv in its (empty or missing) directory with `python -m venv` or `uv venv` as
    /// its owner, checks that it is what the playbook asks for, and installs its packages.
    fn make(&self, host: &Host, owner: &Account, tool: &Tool, existed: bool) -> Result<()> {
        let id = self.id();
        if existed {
            host.chown(&self.path, Some(owner.uid), Some(owner.gid))
                .map_err(|e| Error::resource_io(&id, "cannot chown it", e))?;
        } else {
            host.create_dir(&self.path, Mode(0o755), owner.uid, owner.gid)
                .map_err(|e| Error::resource_io(&id, "cannot create it", e))?;
        }
        let python = self.creator(host, owner)?;
        let (argv, what) = match tool {
            Tool::Pip => {
                let argv = [python.into_os_string(), "-m".into(), "venv".into(), self.path.clone().into_os_string()];
                (argv.to_vec(), "python -m venv")
            }
            Tool::Uv(uv) => {
                let mut argv = self.uv_argv(uv, &["venv", "--quiet"]);
                argv.extend(["--python".into(), python.into_os_string(), self.path.clone().into_os_string()]);
                (argv, "uv venv")
            }
        };
        pip::run(host, owner, &argv, true).map_err(|failure| Error::resource(&id, format!("{what} failed {failure}")))?;
        let venv = match observe(self, host)? {
            VenvActual::Present(venv) => venv,
            VenvActual::Absent => return Err(Error::resource(&id, format!("{what} made no pyvenv.cfg"))),
        };
        // Else every later run would recreate it again.
        if let Some(reason) = self.recreate_reason(&venv) {
            return Err(Error::resource(
                &id,
                format!(
                    "the new virtualenv does not match the playbook: {reason}; give `python` the interpreter itself"
                ),
            ));
        }
        self.install(host, owner, tool, &venv)
    }

    /// The interpreter that makes the venv: found, and one its owner can execute.
    fn creator(&self, host: &Host, owner: &Account) -> Result<PathBuf> {
        let id = self.id();
        let python = match self.wanted_python(host)? {
            WantedPython::Binary(path) | WantedPython::Script(path) => path,
            WantedPython::NotFound => {
                return Err(Error::resource(
                    &id,
                    format!("`{}` is not found: no such interpreter on PATH or at that path", self.python),
                ));
            }
        };
        let Some(why) =
            host.cannot_execute(&python, owner).map_err(|e| Error::resource_io(&id, "cannot check its python", e))?
        else {
            return Ok(python);
        };
        let named = match Path::new(&self.python) == python {
            true => format!("`python: {}` is that file", self.python),
            false => format!("`python: {}` is {}", self.python, python.display()),
        };
        let who =
            if owner.name.is_empty() { format!("uid {}", owner.uid) } else { format!("its owner {}", owner.name) };
        Err(Error::resource(
            &id,
            format!(
                "{named}, which {who} cannot execute ({why}); a virtualenv's interpreter runs as the venv's owner: \
                 give it one every user can run, such as `python: /usr/bin/python3`"
            ),
        ))
    }

    /// Puts the path back as it was: the old venv, an empty directory, or nothing.
    fn put_back(&self, host: &Host, before: &Before) -> std::io::Result<()> {
        if before.had_cfg || !before.existed {
            host.remove(&self.path)?;
        } else {
            for entry in list_dir(host, &self.path)? {
                host.remove(&self.path.join(entry))?;
            }
        }
        if before.had_cfg {
            host.rename(&before.aside, &self.path)?;
        }
        Ok(())
    }
}
