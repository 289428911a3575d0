//! `virtualenv`: a Python virtual environment with the packages a playbook asks for.
//!
//! What it does: creates the venv as its owner, then installs what is missing or does not satisfy
//! its specifier, as the owner too (never a root-owned file in a user's venv): with uv when it is
//! there (`uv venv`, `uv pip`: many times faster), else with `python -m venv` and the venv's own
//! pip (installer.rs); `exact: true` also uninstalls what nothing asks for; `state: absent`
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
//! installer.rs     which program runs: uv or pip (`installer:`, `uv:`), and pip's arguments as uv's
//! create.rs        making (or remaking) the venv, put back as it was when that fails
//! pip.rs           the installer's programs, run as its owner: make the venv, (un)install
//! ```

mod create;
mod diff;
mod installer;
mod metadata;
mod observe;
mod pip;
mod requirements;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::host::Host;
use crate::kinds::resource::{Attr, Change, Need, Overlap, Ownership, Resource, State, ownership_changes};
use crate::kinds::{Kind, ownership_needs, path_needs};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{GROUP, OWNER, STATE, Table, Type, attr};
use crate::playbook::yaml_node::Node;

pub use installer::{ChosenAt, Installer, Tool, UV_ARGS, uv_args};
pub use metadata::{Installed, normalize, parse_metadata};
pub use observe::{Observed, Platform, Seen, VenvActual, WantedPython};
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
    /// Which program makes it and installs into it.
    #[serde(default)]
    pub installer: Installer,
    /// Where uv is, when the playbook says.
    #[serde(default)]
    pub uv: Option<PathBuf>,
    /// Where the playbook chose the installer, for errors.
    #[serde(skip)]
    pub installer_at: ChosenAt,
}

impl Virtualenv {
    /// Reads its attributes; None (with every mistake reported) when one is wrong.
    fn build(path: PathBuf, attrs: &mut Attrs) -> Option<Virtualenv> {
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
        let (installer, uv, installer_at) = installer::from_attrs(attrs, &pip_args);
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
            installer,
            uv,
            installer_at,
        })
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
    type Actual = Seen;

    const KIND: Kind = Kind::Virtualenv;

    const TABLE: Table = Table {
        names: Type::Path,
        doc: "a Python virtualenv with the packages uv or pip installs in it",
        attrs: &[
            STATE,
            attr("python", Type::String, "the interpreter that creates it: a name on PATH or an absolute path"),
            OWNER,
            GROUP,
            attr("packages", Type::Strings, "requirements such as gunicorn==23.0.0"),
            attr("requirements", Type::String, "a requirements file, relative to the playbook"),
            attr("index_url", Type::String, "pip's and uv's --index-url"),
            attr("extra_index_urls", Type::Strings, "pip's and uv's --extra-index-url"),
            attr("find_links", Type::Strings, "pip's and uv's --find-links (relative to the playbook)"),
            attr("no_index", Type::Bool, "pip's and uv's --no-index"),
            attr("pip_args", Type::Argv, "more arguments for pip install (uv takes their equivalents)"),
            attr("exact", Type::Bool, "remove the packages that no requirement asks for"),
            attr(
                "installer",
                Type::Word(&["auto", "pip", "uv"]),
                "what makes it and installs: uv when found (auto, the default), or pip, or uv",
            ),
            attr("uv", Type::Path, "where uv is, when not on the PATH"),
        ],
    };

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<Virtualenv> {
        let path = attrs.managed_path(Self::KIND.name(), name);
        let resource = Virtualenv::build(path.clone().unwrap_or_default(), attrs)?;
        path.map(|_| resource)
    }

    fn name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Its directory, its owner and group, and Python's packages: the interpreter, and for pip
    /// (which `installer: auto` may use) venv and pip; uv needs neither.
    fn needs(&self) -> Vec<Need> {
        let mut needs = path_needs(&self.path, self.state == State::Present);
        needs.extend(ownership_needs(&self.ownership));
        needs.push(match self.installer {
            Installer::Uv => Need::Package(&["python3"]),
            Installer::Auto | Installer::Pip => Need::Package(&["python3", "python3-venv", "python3-pip"]),
        });
        needs
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn not_restored(&self) -> Option<&'static str> {
        Some("a virtualenv's packages are not restored")
    }

    fn slow_step(&self) -> Option<&'static str> {
        Some(match self.installer {
            Installer::Auto => "uv or pip",
            Installer::Pip => "python -m venv, pip",
            Installer::Uv => "uv",
        })
    }

    /// A venv built is long work of its own.
    fn overlap(&self) -> Overlap {
        Overlap::Long
    }

    /// With uv and an interpreter that is there already, no package is waited for: uv needs
    /// neither venv nor pip.
    fn needs_now(&self, host: &Host) -> Result<Vec<Need>> {
        let mut needs = self.needs();
        let ready = self.state == State::Absent
            || (matches!(self.tool(host)?, Tool::Uv(_))
                && matches!(self.wanted_python(host)?, WantedPython::Binary(_) | WantedPython::Script(_)));
        if ready {
            needs.retain(|need| !matches!(need, Need::Package(_)));
        }
        Ok(needs)
    }

    fn observe(&self, host: &Host) -> Result<Seen> {
        let venv = observe::observe(self, host)?;
        let tool = match self.state {
            State::Present => Some(self.tool(host)?),
            State::Absent => None,
        };
        Ok(Seen { venv, tool })
    }

    /// The changes of the venv, and which installer makes them when one runs.
    fn diff(&self, seen: &Seen) -> Vec<Change> {
        let mut changes = self.venv_changes(&seen.venv);
        let installs = changes.iter().any(|c| {
            *c == Change::Create
                || [Attr::Install, Attr::Upgrade, Attr::Downgrade, Attr::Replace, Attr::Uninstall]
                    .iter()
                    .any(|&attr| c.sets(attr))
        });
        if let (true, Some(tool)) = (installs, &seen.tool) {
            changes.push(Change::set_to(Attr::Installer, tool.to_string()));
        }
        changes
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let id = self.id();
        if changes.contains(&Change::Remove) {
            return host.remove(&self.path).map_err(|e| Error::resource_io(&id, "cannot remove it", e));
        }
        let owner = self.owner(host)?;
        let tool = self.tool(host)?;
        if changes.contains(&Change::Create) {
            return self.create(host, &owner, &tool);
        }
        if changes.iter().any(|c| c.sets(Attr::Owner) || c.sets(Attr::Group)) {
            crate::kinds::chown_tree(host, &self.path, owner.uid, owner.gid)
                .map_err(|e| Error::resource_io(&id, "cannot change the owner of its files", e))?;
        }
        let VenvActual::Present(venv) = observe::observe(self, host)? else {
            return Err(Error::Drift { id: id.to_string() });
        };
        self.install(host, &owner, &tool, &venv)
    }
}

impl Virtualenv {
    /// The changes that bring the venv as observed to the playbook's.
    fn venv_changes(&self, actual: &VenvActual) -> Vec<Change> {
        match (self.state, actual) {
            (State::Absent, VenvActual::Absent) => vec![],
            (State::Absent, VenvActual::Present(_)) => vec![Change::Remove],
            (State::Present, VenvActual::Absent) => self.create_changes(None, ("", "")),
            (State::Present, VenvActual::Present(venv)) => match self.recreate_reason(venv) {
                Some(reason) => self.create_changes(Some(reason), (&venv.owner, &venv.group)),
                None => {
                    let mut changes = ownership_changes(&self.ownership, &venv.owner, &venv.group);
                    changes.extend(self.package_changes(venv));
                    changes
                }
            },
        }
    }
}

/// Entries of a directory (under the root), sorted by name.
fn list_dir(host: &Host, dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> =
        host.read_dir(dir)?.into_iter().map(|(name, _)| name.to_string_lossy().into_owned()).collect();
    names.sort();
    Ok(names)
}
