//! Running the installer's programs as the venv's owner (never a root-owned file in a user's
//! venv): the venv's own pip, or uv, to install and uninstall.

use std::ffi::OsString;
use std::path::Path;

use super::Virtualenv;
use super::installer::{Tool, uv_args};
use super::observe::{Observed, VenvActual, observe};
use crate::error::{Error, Result};
use crate::host::{Account, Failure, Host};
use crate::kinds::resource::{Attr, Resource, Shown};

/// Runs `argv` as `owner` through the Host (an argv and a clean environment: nothing of the
/// operator's PIP_* or PYTHON* settings), with the network, pip's warning about root off. pip's
/// progress streams with `-v` on a terminal unless `quiet`; with secrets about, its output is
/// kept and shown only through the printer, which hides them (pip would print an index URL's
/// token, or a requirement given as a secret).
pub(super) fn run(host: &Host, owner: &Account, argv: &[OsString], quiet: bool) -> Result<(), Failure> {
    let stream = !quiet && !crate::playbook::redact::any() && host.streams_tool_output();
    host.program(argv).user(owner).env("PIP_ROOT_USER_ACTION", "ignore").network(true).run(stream)
}

impl Virtualenv {
    /// The account its programs run as: its owner and group, else whoever runs converge.
    pub(super) fn owner(&self, host: &Host) -> Result<Account> {
        let id = self.id();
        let owner = self.ownership.owner.as_deref();
        host.account(owner, self.ownership.group.as_deref())
            .map_err(|e| Error::resource_io(&id, "cannot look up its owner", e))?
            .ok_or_else(|| Error::resource(&id, format!("user `{}` does not exist", owner.unwrap_or_default())))
    }

    /// Installs what is missing, then uninstalls what is extraneous (`exact`): what is
    /// extraneous is decided again after the install, as a new version may depend on it.
    pub(super) fn install(&self, host: &Host, owner: &Account, tool: &Tool, venv: &Observed) -> Result<()> {
        let (install, mut uninstall) = self.pip_work(venv);
        if !install.is_empty() {
            if *tool == Tool::Pip && !venv.packages.contains_key("pip") {
                // A venv uv made has no pip of its own.
                let python = self.path.join("bin/python").into_os_string();
                run(host, owner, &[python, "-m".into(), "ensurepip".into(), "--default-pip".into()], true)
                    .map_err(|m| Error::resource(self.id(), format!("python -m ensurepip failed {m}")))?;
            }
            run(host, owner, &self.install_argv(tool, &install), false)
                .map_err(|m| Error::resource(self.id(), format!("{} install failed {m}", tool.name())))?;
            if self.exact {
                uninstall = match observe(self, host)? {
                    VenvActual::Present(venv) => self.pip_work(&venv).1,
                    VenvActual::Absent => Vec::new(),
                };
            }
        }
        if !uninstall.is_empty() {
            let mut argv = match tool {
                Tool::Pip => [self.pip_argv("uninstall"), vec!["--yes".into()]].concat(),
                Tool::Uv(uv) => self.uv_pip_argv(uv, "uninstall"),
            };
            argv.push("--".into());
            argv.extend(uninstall.iter().map(OsString::from));
            run(host, owner, &argv, false)
                .map_err(|m| Error::resource(self.id(), format!("{} uninstall failed {m}", tool.name())))?;
        }
        if install.is_empty() && uninstall.is_empty() {
            return Ok(());
        }
        self.check_installed(host, tool)
    }

    /// `uv pip COMMAND` for the venv's interpreter.
    fn uv_pip_argv(&self, uv: &Path, command: &str) -> Vec<OsString> {
        let mut argv = self.uv_argv(uv, &["pip", command]);
        argv.extend(["--python".into(), self.path.join("bin/python").into_os_string()]);
        argv
    }

    /// `bin/python -m pip COMMAND`, quiet about its own version and never asking.
    fn pip_argv(&self, command: &str) -> Vec<OsString> {
        let python = self.path.join("bin/python").into_os_string();
        let quiet = [OsString::from("--disable-pip-version-check"), "--no-input".into()];
        let mut argv = vec![python, "-m".into(), "pip".into(), command.into()];
        argv.extend(quiet);
        argv
    }

    /// `pip install` or `uv pip install` with the index options, then the requirements.
    fn install_argv(&self, tool: &Tool, install: &[String]) -> Vec<OsString> {
        let (mut argv, extra) = match tool {
            Tool::Pip => (self.pip_argv("install"), self.pip_args.clone()),
            // The files are the venv's own: copied, never linked to a cache.
            Tool::Uv(uv) => {
                let argv = [self.uv_pip_argv(uv, "install"), vec!["--link-mode".into(), "copy".into()]].concat();
                (argv, uv_args(&self.pip_args).unwrap_or_default())
            }
        };
        if let Some(url) = &self.index_url {
            argv.extend(["--index-url".into(), url.into()]);
        }
        for url in &self.extra_index_urls {
            argv.extend(["--extra-index-url".into(), url.into()]);
        }
        for link in &self.find_links {
            argv.extend(["--find-links".into(), link.into()]);
        }
        if self.no_index {
            argv.push("--no-index".into());
        }
        argv.extend(extra.iter().map(OsString::from));
        argv.push("--".into());
        argv.extend(install.iter().map(OsString::from));
        argv
    }

    /// The installer succeeded; what it did must be what the next plan sees, or every run would
    /// install again (a marker pip judged otherwise, a name the distribution does not have).
    fn check_installed(&self, host: &Host, tool: &Tool) -> Result<()> {
        let VenvActual::Present(venv) = observe(self, host)? else { return Ok(()) };
        let left: Vec<String> = self
            .package_changes(&venv)
            .into_iter()
            .filter(|c| !c.sets(Attr::Extraneous))
            .filter_map(|c| c.shown())
            .map(|Shown { attr, from, to }| match from {
                Some(from) => format!("{attr}: {from} -> {to}"),
                None => format!("{attr}: {to}"),
            })
            .collect();
        match left.is_empty() {
            true => Ok(()),
            false => Err(Error::resource(
                self.id(),
                format!("{} succeeded, but the venv still differs from the playbook: {}", tool.name(), left.join("; ")),
            )),
        }
    }
}
