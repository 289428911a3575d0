//! Running the venv's programs as its owner (never a root-owned file in a user's venv):
//! `python -m venv`, and the venv's own pip to install and uninstall.

use std::ffi::OsString;

use super::Virtualenv;
use super::observe::{Observed, VenvActual};
use crate::error::{Error, Result};
use crate::host::{Account, Failure, Host};
use crate::kinds::resource::{Change, Resource};

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

    /// `pip install` what is missing, then `pip uninstall` what is extraneous (`exact`): what
    /// is extraneous is decided again after the install, as a new version may depend on it.
    pub(super) fn pip(&self, host: &Host, owner: &Account, venv: &Observed) -> Result<()> {
        let (install, mut uninstall) = self.pip_work(venv);
        if !install.is_empty() {
            run(host, owner, &self.install_argv(&install), false)
                .map_err(|m| Error::resource(self.id(), format!("pip install failed {m}")))?;
            if self.exact {
                uninstall = match self.observe(host)? {
                    VenvActual::Present(venv) => self.pip_work(&venv).1,
                    VenvActual::Absent => Vec::new(),
                };
            }
        }
        if !uninstall.is_empty() {
            let mut argv = self.pip_argv("uninstall");
            argv.push("--yes".into());
            argv.push("--".into());
            argv.extend(uninstall.iter().map(OsString::from));
            run(host, owner, &argv, false)
                .map_err(|m| Error::resource(self.id(), format!("pip uninstall failed {m}")))?;
        }
        if install.is_empty() && uninstall.is_empty() {
            return Ok(());
        }
        self.check_pip(host)
    }

    /// `bin/python -m pip COMMAND`, quiet about its own version and never asking.
    fn pip_argv(&self, command: &str) -> Vec<OsString> {
        let python = self.path.join("bin/python").into_os_string();
        let quiet = [OsString::from("--disable-pip-version-check"), "--no-input".into()];
        let mut argv = vec![python, "-m".into(), "pip".into(), command.into()];
        argv.extend(quiet);
        argv
    }

    /// `pip install` with the index options, then the requirements.
    fn install_argv(&self, install: &[String]) -> Vec<OsString> {
        let mut argv = self.pip_argv("install");
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
        argv.extend(self.pip_args.iter().map(OsString::from));
        argv.push("--".into());
        argv.extend(install.iter().map(OsString::from));
        argv
    }

    /// pip succeeded; what it did must be what the next plan sees, or every run would install
    /// again (a marker pip judged otherwise, a name the distribution does not have).
    fn check_pip(&self, host: &Host) -> Result<()> {
        let VenvActual::Present(venv) = self.observe(host)? else { return Ok(()) };
        let left: Vec<String> = self
            .package_changes(&venv)
            .into_iter()
            .filter_map(|c| match c {
                Change::Set { attr: "extraneous", .. } => None,
                Change::Set { attr, from, to } => Some(match from {
                    Some(from) => format!("{attr}: {from} -> {to}"),
                    None => format!("{attr}: {to}"),
                }),
                _ => None,
            })
            .collect();
        match left.is_empty() {
            true => Ok(()),
            false => Err(Error::resource(
                self.id(),
                format!("pip succeeded, but the venv still differs from the playbook: {}", left.join("; ")),
            )),
        }
    }
}
