//! `virtualenv`: a Python virtual environment with the packages a playbook asks for.
//!
//! What it does: creates the venv with `python -m venv` as its owner, then installs what is missing
//! or does not satisfy its specifier with the venv's own pip, as the owner too (never a root-owned
//! file in a user's venv); `exact: true` also uninstalls what nothing asks for; `state: absent`
//! removes it. It is recreated only when its interpreter changed or it is broken.
//! Why: a converged venv costs no process at all. Observation reads `pyvenv.cfg` and the
//! `*.dist-info/METADATA` files of site-packages directly (names normalised per PEP 503, versions
//! compared with PEP 440 specifiers by `pep440_rs`, requirements parsed by `pep508_rs`), where
//! `pip freeze` starts an interpreter and imports pip for every check.
//!
//! The parts, one job each:
//!
//! ```text
//! mod.rs           the resource: its attributes, and observe / diff / apply
//! requirements.rs  `packages` and requirements files; PEP 508 markers, PEP 440 versions
//! metadata.rs      what a venv says about itself: pyvenv.cfg, the METADATA of its distributions
//! observe.rs       a venv on disk, and the interpreter `python` names, found without running it
//! diff.rs          what must change: the steps for its packages, and the changes shown for them
//! create.rs        making (or remaking) the venv, put back as it was when that fails
//! pip.rs           the venv's programs, run as its owner: `python -m venv`, pip (un)install
//! ```

mod create;
mod diff;
mod metadata;
mod observe;
mod pip;
mod requirements;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::host::Host;
use crate::kinds::resource::{Change, Ownership, Resource, State};
use crate::playbook::attrs::Attrs;

pub use metadata::{Installed, normalize, parse_metadata};
pub use observe::{Observed, Platform, VenvActual, WantedPython};
pub use requirements::Wanted;

/// A `virtualenv:` resource as the playbook asks for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Virtualenv {
    pub path: PathBuf,
    pub state: State,
    /// The interpreter that creates it, as written: a name looked up on PATH, or a path.
    pub python: String,
    pub ownership: Ownership,
    /// `packages`, then the lines of `requirements`, in order.
    pub requirements: Vec<Wanted>,
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    pub find_links: Vec<String>,
    pub no_index: bool,
    pub pip_args: Vec<String>,
    /// Uninstall what nothing asks for.
    pub exact: bool,
}

impl Virtualenv {
    /// Reads its attributes; None (with every mistake reported) when one is wrong.
    pub fn from_attrs(path: PathBuf, attrs: &mut Attrs) -> Option<Virtualenv> {
        let state = attrs.state();
        // Every attribute is read before a mistake returns None, so that all are reported.
        let python = python(attrs);
        let ownership = attrs.ownership();
        let requirements = requirements::from_attrs(attrs);
        let index_url = attrs.string("index_url");
        let extra_index_urls = attrs.strings("extra_index_urls").into_iter().map(|(url, _)| url).collect();
        let find_links = find_links(attrs);
        let no_index = attrs.bool("no_index").unwrap_or(false);
        let pip_args = attrs.argv("pip_args").unwrap_or_default();
        let exact = attrs.bool("exact").unwrap_or(false);
        Some(Virtualenv {
            path,
            state,
            python: python?,
            ownership,
            requirements,
            index_url,
            extra_index_urls,
            find_links,
            no_index,
            pip_args,
            exact,
        })
    }

    fn id(&self) -> String {
        format!("virtualenv:{}", self.path.display())
    }

    fn cfg_path(&self) -> PathBuf {
        self.path.join("pyvenv.cfg")
    }
}

/// `python`: a program name or an absolute path; `python3` when not given.
fn python(attrs: &mut Attrs) -> Option<String> {
    let Some(node) = attrs.node("python") else { return Some("python3".to_owned()) };
    attrs.render_string("python", node).inspect(|python| {
        if python.is_empty()
            || python.contains(char::is_whitespace)
            || (python.contains('/') && !python.starts_with('/'))
        {
            attrs.error(
                node.span,
                format!("`{python}` is not an interpreter"),
                "expected a program name or an absolute path",
                "write a name found on PATH, such as python3.11, or a full path, such as /usr/bin/python3",
            );
        }
    })
}

/// `find_links`: URLs and absolute paths as written; a relative path is the playbook
/// directory's.
fn find_links(attrs: &mut Attrs) -> Vec<String> {
    let dir = attrs.templates().dir().to_path_buf();
    attrs
        .strings("find_links")
        .into_iter()
        .map(|(link, _)| match link.contains("://") || link.starts_with('/') {
            true => link,
            false => std::path::absolute(dir.join(&link)).unwrap_or_else(|_| dir.join(&link)).display().to_string(),
        })
        .collect()
}

impl Resource for Virtualenv {
    type Actual = VenvActual;

    fn observe(&self, host: &Host) -> Result<VenvActual> {
        observe::observe(self, host)
    }

    fn diff(&self, actual: &VenvActual) -> Vec<Change> {
        match (self.state, actual) {
            (State::Absent, VenvActual::Absent) => vec![],
            (State::Absent, VenvActual::Present(_)) => vec![Change::Remove],
            (State::Present, VenvActual::Absent) => self.create_changes(None, ("", "")),
            (State::Present, VenvActual::Present(venv)) => match self.recreate_reason(venv) {
                Some(reason) => self.create_changes(Some(reason), (&venv.owner, &venv.group)),
                None => {
                    let mut changes = self.ownership.diff(&venv.owner, &venv.group);
                    changes.extend(self.package_changes(venv));
                    changes
                }
            },
        }
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let id = self.id();
        if changes.contains(&Change::Remove) {
            return host.remove(&self.path).map_err(|e| Error::resource_io(&id, "cannot remove it", e));
        }
        let owner = self.owner(host)?;
        if changes.contains(&Change::Create) {
            return self.create(host, &owner);
        }
        if changes.iter().any(|c| matches!(c, Change::Set { attr: "owner" | "group", .. })) {
            create::chown_tree(host, &self.path, owner.uid, owner.gid)
                .map_err(|e| Error::resource_io(&id, "cannot change the owner of its files", e))?;
        }
        let VenvActual::Present(venv) = self.observe(host)? else {
            return Err(Error::Drift { id });
        };
        self.pip(host, &owner, &venv)
    }
}

/// Entries of a directory (under the root), sorted by name.
fn list_dir(host: &Host, dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> =
        host.read_dir(dir)?.into_iter().map(|(name, _)| name.to_string_lossy().into_owned()).collect();
    names.sort();
    Ok(names)
}
