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

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{ExtraName, MarkerEnvironment, MarkerEnvironmentBuilder, Requirement, VersionOrUrl};

use crate::error::{Error, Result, Source};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};
use crate::kinds::observe_owner;
use crate::kinds::resource::{Change, Ownership, Resource, State};
use crate::playbook::attrs::Attrs;
use crate::playbook::yaml_node::{Node, Span};

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

/// One requirement: the string pip is given, exactly as written, and what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub text: String,
    pub requirement: Requirement,
}

impl Wanted {
    pub fn parse(text: &str) -> Result<Wanted, pep508_rs::Pep508Error> {
        let text = text.trim();
        Ok(Wanted { text: text.to_owned(), requirement: text.parse()? })
    }

    fn name(&self) -> &str {
        self.requirement.name.as_ref()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum VenvActual {
    /// Nothing there, or an empty directory.
    Absent,
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

/// One installed distribution, from its METADATA.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    /// The name as the distribution spells it.
    pub name: String,
    pub version: String,
    /// `Requires-Dist` lines, as written.
    pub requires: Vec<String>,
}

/// Distributions that pip and venv put there themselves; never extraneous (`pip freeze` leaves
/// them out for the same reason).
const TOOLING: &[&str] = &["pip", "setuptools", "wheel", "distribute"];

impl Virtualenv {
    pub fn from_attrs(path: PathBuf, attrs: &mut Attrs) -> Option<Virtualenv> {
        let state = attrs.state();
        // Every attribute is read before a mistake returns None, so that all are reported.
        let python = match attrs.node("python") {
            Some(node) => attrs.render_string("python", node).inspect(|python| {
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
            }),
            None => Some("python3".to_owned()),
        };
        let ownership = attrs.ownership();
        let mut requirements = Vec::new();
        for (text, span) in attrs.strings("packages") {
            match Wanted::parse(&text) {
                Ok(wanted) => requirements.push(wanted),
                Err(e) => {
                    let at = narrow(attrs.templates().source(), span, &text, &e);
                    attrs.error(
                        at,
                        format!("`{}` is not a valid requirement: {}", text.trim(), e.message),
                        "here",
                        REQUIREMENT_HELP,
                    );
                }
            }
        }
        if let Some(node) = attrs.node("requirements")
            && let Some(relative) = attrs.render_string("requirements", node)
        {
            let file = attrs.templates().dir().join(&relative);
            let mut seen = Vec::new();
            requirements_file(&file, node, attrs, &mut seen, &mut requirements);
        }
        let index_url = attrs.string("index_url");
        let extra_index_urls = attrs.strings("extra_index_urls").into_iter().map(|(url, _)| url).collect();
        let dir = attrs.templates().dir().to_path_buf();
        let find_links = attrs
            .strings("find_links")
            .into_iter()
            .map(|(link, _)| match link.contains("://") || link.starts_with('/') {
                true => link,
                false => std::path::absolute(dir.join(&link)).unwrap_or_else(|_| dir.join(&link)).display().to_string(),
            })
            .collect();
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

    /// What must change in the packages of an existing, usable venv.
    fn steps<'a>(&'a self, venv: &'a Observed) -> Vec<Step<'a>> {
        let env = marker_environment(venv);
        let applies = |requirement: &Requirement, extras: &[ExtraName]| {
            requirement.marker.evaluate_optional_environment(env.as_ref(), extras)
        };
        let mut steps = Vec::new();
        let mut needed: BTreeSet<&str> = BTreeSet::new();
        // Names already planned, so that none is planned twice.
        let mut stepped: BTreeSet<String> = BTreeSet::new();
        // Requirements that hold, whose own dependencies must hold too: (name, extras).
        let mut satisfied: Vec<(&str, Vec<ExtraName>)> = Vec::new();
        for wanted in self.requirements.iter().filter(|w| applies(&w.requirement, &[])) {
            needed.insert(wanted.name());
            match venv.packages.get(wanted.name()) {
                None => {
                    if stepped.insert(wanted.name().to_owned()) {
                        steps.push(Step::Install(wanted));
                    }
                }
                Some(installed) => match unsatisfied(&wanted.requirement, installed) {
                    Some(direction) => {
                        if stepped.insert(wanted.name().to_owned()) {
                            steps.push(Step::Replace { wanted, installed, direction });
                        }
                    }
                    None => satisfied.push((wanted.name(), wanted.requirement.extras.clone())),
                },
            }
        }
        // Their dependencies, through the Requires-Dist of what is installed.
        let mut visited: BTreeSet<(&str, Vec<ExtraName>)> = BTreeSet::new();
        while let Some((name, extras)) = satisfied.pop() {
            let Some((key, installed)) = venv.packages.get_key_value(name) else { continue };
            if !visited.insert((key.as_str(), extras.clone())) {
                continue;
            }
            for line in &installed.requires {
                let Ok(dependency) = line.parse::<Requirement>() else { continue };
                if !applies(&dependency, &extras) {
                    continue;
                }
                let Some((dep_key, dep)) = venv.packages.get_key_value(dependency.name.as_ref()) else {
                    if stepped.insert(dependency.name.to_string()) {
                        steps.push(Step::Dependency {
                            requirement: plain(&dependency),
                            of: installed,
                            installed: None,
                        });
                    }
                    continue;
                };
                needed.insert(dep_key);
                if unsatisfied(&dependency, dep).is_some() {
                    if stepped.insert(dep_key.clone()) {
                        steps.push(Step::Dependency {
                            requirement: plain(&dependency),
                            of: installed,
                            installed: Some(dep),
                        });
                    }
                } else {
                    satisfied.push((dep_key, dependency.extras.clone()));
                }
            }
        }
        for (key, installed) in &venv.packages {
            if !needed.contains(key.as_str()) && !TOOLING.contains(&key.as_str()) {
                steps.push(Step::Extraneous(installed));
            }
        }
        steps
    }

    /// The requirement strings to give `pip install`, and the names to give `pip uninstall`.
    fn pip_work(&self, venv: &Observed) -> (Vec<String>, Vec<String>) {
        let mut install = Vec::new();
        let mut uninstall = Vec::new();
        for step in self.steps(venv) {
            match step {
                Step::Install(wanted) | Step::Replace { wanted, .. } => install.push(wanted.text.clone()),
                Step::Dependency { requirement, .. } => install.push(requirement),
                Step::Extraneous(installed) if self.exact => uninstall.push(installed.name.clone()),
                Step::Extraneous(_) => {}
            }
        }
        (install, uninstall)
    }

    /// Why the venv must be made anew, if it must.
    fn recreate_reason(&self, venv: &Observed) -> Option<String> {
        if let Some(broken) = &venv.broken {
            return Some(format!("it is broken: {broken}"));
        }
        let (WantedPython::Binary(wanted), Some(current)) = (&venv.wanted_python, &venv.interpreter) else {
            return None;
        };
        (wanted != current).then(|| {
            let version = venv.python_version.as_deref().map(|v| format!(" ({v})")).unwrap_or_default();
            format!(
                "the interpreter changed: {}{version} -> {} (`python: {}`)",
                current.display(),
                wanted.display(),
                self.python
            )
        })
    }

    fn package_changes(&self, venv: &Observed) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut extraneous = Vec::new();
        let mut uninstall = Vec::new();
        for step in self.steps(venv) {
            let change = match step {
                Step::Install(wanted) => Change::Set { attr: "install", from: None, to: wanted.text.clone() },
                Step::Replace { wanted, installed, direction } => Change::Set {
                    attr: direction,
                    from: Some(format!("{} {}", installed.name, installed.version)),
                    to: wanted.text.clone(),
                },
                Step::Dependency { requirement, of, installed } => Change::Set {
                    attr: "install",
                    from: installed.map(|i| format!("{} {}", i.name, i.version)),
                    to: format!("{requirement} (a dependency of {} {})", of.name, of.version),
                },
                Step::Extraneous(installed) if self.exact => {
                    uninstall.push(format!("{} {}", installed.name, installed.version));
                    continue;
                }
                Step::Extraneous(installed) => {
                    extraneous.push(Change::Set {
                        attr: "extraneous",
                        from: None,
                        to: format!(
                            "{} {} (left alone; `exact: true` uninstalls it)",
                            installed.name, installed.version
                        ),
                    });
                    continue;
                }
            };
            changes.push(change);
        }
        // With `exact`, what the installs bring along is kept: it is decided after them.
        let note = if changes.is_empty() { "" } else { " (unless what is installed now needs it)" };
        changes.extend(uninstall.into_iter().map(|to| Change::Set { attr: "uninstall", from: None, to: to + note }));
        // Extraneous packages are shown alongside real changes only: on their own they are no
        // difference, or a converged venv would never plan empty.
        if !changes.is_empty() {
            changes.extend(extraneous);
        }
        changes
    }
}

/// One thing to do to the packages of a venv.
#[derive(Debug)]
enum Step<'a> {
    /// A requirement whose distribution is not installed.
    Install(&'a Wanted),
    /// Installed, but its version does not satisfy the requirement.
    Replace { wanted: &'a Wanted, installed: &'a Installed, direction: &'static str },
    /// A dependency of a satisfied requirement that is missing or does not satisfy it.
    Dependency { requirement: String, of: &'a Installed, installed: Option<&'a Installed> },
    /// Installed, and nothing asks for it.
    Extraneous(&'a Installed),
}

/// `name[extras]specifiers`: a dependency as pip is given it, its marker already evaluated.
fn plain(requirement: &Requirement) -> String {
    let mut text = requirement.name.to_string();
    if !requirement.extras.is_empty() {
        let extras: Vec<String> = requirement.extras.iter().map(ToString::to_string).collect();
        text += &format!("[{}]", extras.join(","));
    }
    match &requirement.version_or_url {
        Some(VersionOrUrl::VersionSpecifier(specifiers)) => text += &specifiers.to_string(),
        Some(VersionOrUrl::Url(url)) => text += &format!(" @ {url}"),
        None => {}
    }
    text
}

/// Whether `installed` fails `requirement`, and which way it must move: None when it satisfies it.
/// A URL requirement is satisfied by any installed version of its name.
fn unsatisfied(requirement: &Requirement, installed: &Installed) -> Option<&'static str> {
    let Some(VersionOrUrl::VersionSpecifier(specifiers)) = &requirement.version_or_url else {
        return None;
    };
    let Ok(version) = Version::from_str(&installed.version) else {
        return Some("replace");
    };
    direction(specifiers, &version)
}

/// None when `version` satisfies every specifier; else "upgrade" when it is below all that it
/// fails, "downgrade" when above, "replace" otherwise (`!=1.0` with 1.0 installed).
fn direction(specifiers: &VersionSpecifiers, version: &Version) -> Option<&'static str> {
    let failing: Vec<_> = specifiers.iter().filter(|s| !s.contains(version)).collect();
    if failing.is_empty() {
        None
    } else if failing.iter().all(|s| version < s.version()) {
        Some("upgrade")
    } else if failing.iter().all(|s| version > s.version()) {
        Some("downgrade")
    } else {
        Some("replace")
    }
}

/// The marker environment of the venv's interpreter, from pyvenv.cfg and the kernel: None when
/// the version is unknown, and then markers about the environment count as true.
fn marker_environment(venv: &Observed) -> Option<MarkerEnvironment> {
    let full = venv.python_version.as_deref()?;
    let short: Vec<&str> = full.split('.').take(2).collect();
    let short = short.join(".");
    let implementation = venv.implementation.as_deref().unwrap_or("CPython");
    let name = implementation.to_ascii_lowercase();
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: &name,
        implementation_version: full,
        os_name: "posix",
        platform_machine: &venv.platform.machine,
        platform_python_implementation: implementation,
        platform_release: &venv.platform.release,
        platform_system: "Linux",
        platform_version: &venv.platform.version,
        python_full_version: full,
        python_version: &short,
        sys_platform: "linux",
    })
    .ok()
}

/// A distribution name normalised per PEP 503: lowercase, runs of `-`, `_` and `.` as one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
        } else {
            if separator && !out.is_empty() {
                out.push('-');
            }
            separator = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Name, version and Requires-Dist of a METADATA (or PKG-INFO) file: RFC 822 headers up to the
/// first blank line; the body (the long description) is not read.
pub fn parse_metadata(text: &str) -> Option<Installed> {
    let mut name = None;
    let mut version = None;
    let mut requires = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key {
            "Name" => name = Some(value.to_owned()),
            "Version" => version = Some(value.to_owned()),
            "Requires-Dist" => requires.push(value.to_owned()),
            _ => {}
        }
    }
    Some(Installed { name: name?, version: version?, requires })
}

/// `key = value` lines of pyvenv.cfg.
fn parse_cfg(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

const REQUIREMENT_HELP: &str =
    "write a PEP 508 requirement, such as `requests>=2.31`, `Django~=5.0` or `name @ https://host/name.whl`";

/// The part of a YAML string that a requirement error points at, when the string is written as
/// it is parsed (no template); else the whole value.
fn narrow(source: &Source, span: Span, text: &str, error: &pep508_rs::Pep508Error) -> Span {
    let written = source.text.get(span.offset..span.offset + span.len).unwrap_or("");
    let (inner, skip) = match written.chars().next() {
        Some(q @ ('"' | '\'')) if written.len() >= 2 && written.ends_with(q) => (&written[1..written.len() - 1], 1),
        _ => (written, 0),
    };
    let lead = text.len() - text.trim_start().len();
    if inner != text || error.start > error.input.len() {
        return span;
    }
    let len = error.len.max(1).min(error.input.len().saturating_sub(error.start).max(1));
    Span { offset: span.offset + skip + lead + error.start, len }
}

/// Reads a requirements file (and the files its `-r` lines include) into `out`; mistakes point
/// into the file, at their line.
fn requirements_file(file: &Path, node: &Node, attrs: &mut Attrs, seen: &mut Vec<PathBuf>, out: &mut Vec<Wanted>) {
    if seen.contains(&file.to_path_buf()) {
        return;
    }
    seen.push(file.to_path_buf());
    let text = match crate::host::read_input_text(file) {
        Ok(text) => text,
        Err(e) => {
            let reason =
                if e.kind() == std::io::ErrorKind::NotFound { "no such file".to_owned() } else { e.to_string() };
            let help = format!("paths are relative to the playbook's directory, {}", attrs.templates().dir().display());
            attrs.error(node.span, format!("cannot read `{}`: {reason}", file.display()), "this file", help);
            return;
        }
    };
    let source = Source::new(file.display().to_string(), text.as_str());
    // Logical lines: a trailing backslash continues a line.
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\n', '\r']);
        let (start, mut joined) = pending.take().unwrap_or((offset, String::new()));
        offset += raw.len();
        match line.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(line);
                logical.push((start, joined));
            }
        }
    }
    logical.extend(pending);
    for (start, line) in logical {
        // A comment starts at `#` at the start of the line or after whitespace.
        let content = match line
            .char_indices()
            .find(|&(i, c)| c == '#' && (i == 0 || line[..i].ends_with(char::is_whitespace)))
        {
            Some((i, _)) => &line[..i],
            None => line.as_str(),
        };
        let trimmed = content.trim();
        if trimmed.is_empty() {
            continue;
        }
        let lead = content.len() - content.trim_start().len();
        let at = Span { offset: start + lead, len: trimmed.len() };
        if let Some(option) = trimmed.strip_prefix('-') {
            let include = option
                .strip_prefix("r ")
                .or_else(|| option.strip_prefix("-requirement "))
                .or_else(|| option.strip_prefix("-requirement="));
            match include {
                Some(path) => {
                    let path = file.parent().unwrap_or(Path::new(".")).join(path.trim());
                    requirements_file(&path, node, attrs, seen, out);
                }
                None => attrs.errors.push(
                    source
                        .error(at, format!("converge does not read `{trimmed}` in a requirements file"), "an option")
                        .help("requirements files may hold requirements and `-r FILE`; give index options as attributes: `index_url`, `extra_index_urls`, `find_links`, `no_index`, `pip_args`"),
                ),
            }
            continue;
        }
        match Wanted::parse(trimmed) {
            Ok(wanted) => out.push(wanted),
            Err(e) => {
                let start_at = at.offset + e.start.min(trimmed.len());
                let len = e.len.max(1).min(trimmed.len().saturating_sub(e.start).max(1));
                attrs.errors.push(
                    source
                        .error(
                            Span { offset: start_at, len },
                            format!("`{trimmed}` is not a valid requirement: {}", e.message),
                            "here",
                        )
                        .help(REQUIREMENT_HELP),
                );
            }
        }
    }
}

/// Follows symlinks of `path` inside the host's root (absolute targets resolve inside it too),
/// component by component as the kernel does: `Err(missing)` names the first path on the way
/// that does not exist.
fn real_path(host: &Host, path: &Path) -> std::io::Result<Result<PathBuf, PathBuf>> {
    let mut resolved = PathBuf::from("/");
    let mut rest: Vec<OsString> = path.components().rev().map(|c| c.as_os_str().to_owned()).collect();
    let mut hops = 0;
    while let Some(part) = rest.pop() {
        match part.to_str() {
            Some("/") | Some(".") => continue,
            Some("..") => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let next = resolved.join(&part);
        match host.stat(&next)? {
            None => return Ok(Err(rest.iter().rev().fold(next, |path, part| path.join(part)))),
            Some(stat) if stat.kind == FileKind::Symlink => {
                hops += 1;
                if hops > 40 {
                    return Err(std::io::Error::other(format!(
                        "too many levels of symbolic links at {}",
                        next.display()
                    )));
                }
                let target = host.read_link(&next)?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                rest.extend(target.components().rev().map(|c| c.as_os_str().to_owned()));
            }
            Some(_) => resolved = next,
        }
    }
    Ok(Ok(resolved))
}

/// What `python` is, without running it: a path, or the first executable of that name on
/// `search` (a PATH; inside the root under `--root`, where chroot would look).
fn find_python(host: &Host, python: &str, search: &str) -> std::io::Result<WantedPython> {
    let candidates: Vec<PathBuf> = if python.starts_with('/') {
        vec![PathBuf::from(python)]
    } else {
        search.split(':').filter(|d| d.starts_with('/')).map(|d| Path::new(d).join(python)).collect()
    };
    for candidate in candidates {
        let Ok(real) = real_path(host, &candidate)? else { continue };
        match host.stat(&real)? {
            Some(stat) if stat.kind == FileKind::File && stat.mode.0 & 0o111 != 0 => {}
            _ => continue,
        }
        // Only the first bytes: an interpreter binary is megabytes.
        let head = host.head(&real, 2)?;
        return Ok(if head == b"#!" { WantedPython::Script(real) } else { WantedPython::Binary(real) });
    }
    Ok(WantedPython::NotFound)
}

/// Entries of a directory (under the root), sorted by name.
fn list_dir(host: &Host, dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> =
        host.read_dir(dir)?.into_iter().map(|(name, _)| name.to_string_lossy().into_owned()).collect();
    names.sort();
    Ok(names)
}

impl Resource for Virtualenv {
    type Actual = VenvActual;

    fn observe(&self, host: &Host) -> Result<VenvActual> {
        let id = self.id();
        let io = |what: &'static str| {
            let id = id.clone();
            move |e| Error::resource_io(id, what, e)
        };
        let Some(stat) = host.stat(&self.path).map_err(io("cannot read it"))? else {
            return Ok(VenvActual::Absent);
        };
        if stat.kind != FileKind::Directory {
            return Err(Error::resource(
                &id,
                format!("{} is {}, not a virtualenv directory; remove it first", self.path.display(), stat.kind.name()),
            ));
        }
        let cfg = match host.read(&self.cfg_path()) {
            Ok(bytes) => parse_cfg(&String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if list_dir(host, &self.path).map_err(io("cannot read it"))?.is_empty() {
                    return Ok(VenvActual::Absent);
                }
                return Err(Error::resource(
                    &id,
                    format!(
                        "{} is a directory with files but no pyvenv.cfg, so it is not a virtualenv; converge does not \
                         overwrite it: move it away or choose another path",
                        self.path.display()
                    ),
                ));
            }
            Err(e) => return Err(io("cannot read its pyvenv.cfg")(e)),
        };
        if self.state == State::Absent {
            return Ok(VenvActual::Present(Box::default()));
        }
        let (owner, group) = observe_owner(host, &stat).map_err(io("cannot read its owner"))?;
        let mut venv = Observed {
            owner,
            group,
            python_version: cfg.get("version").or_else(|| cfg.get("version_info")).cloned(),
            implementation: cfg.get("implementation").cloned(),
            wanted_python: find_python(host, &self.python, &self.search_path(host))
                .map_err(io("cannot look up its python"))?,
            platform: {
                let (release, version) = host.kernel();
                Platform { machine: std::env::consts::ARCH.to_owned(), release, version }
            },
            ..Observed::default()
        };
        let bin_python = self.path.join("bin/python");
        let link_end = real_path(host, &bin_python).map_err(io("cannot read bin/python"))?;
        // `executable` is realpath() as Python saw it; resolved again, it compares with `python`.
        let executable = match cfg.get("executable") {
            Some(path) => Some(real_path(host, Path::new(path)).map_err(io("cannot read its interpreter"))?),
            None => None,
        };
        venv.broken = match (&link_end, &executable) {
            (Err(missing), _) if *missing == bin_python => Some("bin/python is missing".to_owned()),
            (Err(missing), _) => Some(format!("bin/python leads to {}, which does not exist", missing.display())),
            (Ok(_), Some(Err(missing))) => Some(format!("its interpreter {} does not exist", missing.display())),
            (Ok(_), _) => None,
        };
        venv.interpreter = match executable {
            Some(resolved) => Some(resolved.unwrap_or_else(|missing| missing)),
            None => link_end.ok(),
        };
        let site = venv.python_version.as_deref().map(|v| {
            let short: Vec<&str> = v.split('.').take(2).collect();
            self.path.join(format!("lib/python{}/site-packages", short.join(".")))
        });
        let site = match site {
            Some(site) if host.stat(&site).map_err(io("cannot read site-packages"))?.is_some() => site,
            Some(site) => {
                venv.broken.get_or_insert_with(|| format!("{} is missing", site.display()));
                return Ok(VenvActual::Present(Box::new(venv)));
            }
            None => {
                venv.broken.get_or_insert_with(|| "its pyvenv.cfg has no version".to_owned());
                return Ok(VenvActual::Present(Box::new(venv)));
            }
        };
        for entry in list_dir(host, &site).map_err(io("cannot list site-packages"))? {
            let metadata = if entry.ends_with(".dist-info") {
                site.join(&entry).join("METADATA")
            } else if entry.ends_with(".egg-info") {
                let path = site.join(&entry);
                match host.stat(&path).map_err(io("cannot read site-packages"))? {
                    Some(s) if s.kind == FileKind::Directory => path.join("PKG-INFO"),
                    _ => path,
                }
            } else {
                continue;
            };
            let text = match host.read(&metadata) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                // A half-removed distribution: pip would not see it either.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("cannot read a METADATA file")(e)),
            };
            if let Some(installed) = parse_metadata(&text) {
                venv.packages.entry(normalize(&installed.name)).or_insert(installed);
            }
        }
        Ok(VenvActual::Present(Box::new(venv)))
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
        let runner = Runner::new(self, host)?;
        if changes.contains(&Change::Create) {
            return self.create(host, &runner);
        }
        if changes.iter().any(|c| matches!(c, Change::Set { attr: "owner" | "group", .. })) {
            chown_tree(host, &self.path, runner.uid, runner.gid)
                .map_err(|e| Error::resource_io(&id, "cannot change the owner of its files", e))?;
        }
        let VenvActual::Present(venv) = self.observe(host)? else {
            return Err(Error::Drift { id });
        };
        self.pip(host, &runner, &venv)
    }
}

impl Virtualenv {
    fn create_changes(&self, reason: Option<String>, (owner, group): (&str, &str)) -> Vec<Change> {
        let mut changes = vec![Change::Create];
        match reason {
            Some(reason) => changes.push(Change::Set { attr: "recreate", from: None, to: reason }),
            None => changes.push(Change::Set { attr: "python", from: None, to: self.python.clone() }),
        }
        changes.extend(self.ownership.diff(owner, group));
        changes.extend(self.requirements.iter().map(|w| Change::Set {
            attr: "install",
            from: None,
            to: w.text.clone(),
        }));
        changes
    }

    /// Creates (or recreates) the venv and installs its packages. A venv being replaced is moved
    /// aside first and put back if anything fails; a new one that fails is removed again, so a
    /// failed run leaves the path as it found it.
    fn create(&self, host: &Host, runner: &Runner) -> Result<()> {
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
        let made = (|| {
            if existed {
                host.chown(&self.path, Some(runner.uid), Some(runner.gid)).map_err(io("cannot chown it"))?;
            } else {
                host.create_dir(&self.path, Mode(0o755), runner.uid, runner.gid).map_err(io("cannot create it"))?;
            }
            let python = match self.wanted_python(host)? {
                WantedPython::Binary(path) | WantedPython::Script(path) => path,
                WantedPython::NotFound => {
                    return Err(Error::resource(
                        &id,
                        format!("`{}` is not found: no such interpreter on PATH or at that path", self.python),
                    ));
                }
            };
            if let Some(why) = runner.cannot_execute(&python).map_err(io("cannot check its python"))? {
                return Err(Error::resource(
                    &id,
                    format!(
                        "{}, which {} cannot execute ({why}); a virtualenv's interpreter runs as the venv's \
                         owner: give it one every user can run, such as `python: /usr/bin/python3`",
                        match Path::new(&self.python) == python {
                            true => format!("`python: {}` is that file", self.python),
                            false => format!("`python: {}` is {}", self.python, python.display()),
                        },
                        runner.who(),
                    ),
                ));
            }
            let argv = [python.into_os_string(), "-m".into(), "venv".into(), self.path.clone().into_os_string()];
            runner
                .run(&argv, true)
                .map_err(|message| Error::resource(&id, format!("python -m venv failed {message}")))?;
            let venv = match self.observe(host)? {
                VenvActual::Present(venv) => venv,
                VenvActual::Absent => return Err(Error::resource(&id, "python -m venv made no pyvenv.cfg")),
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
            self.pip(host, runner, &venv)
        })();
        match made {
            Ok(()) => {
                if had_cfg {
                    host.remove(&aside).map_err(io("cannot remove the old venv"))?;
                }
                Ok(())
            }
            Err(error) => {
                // Put the path back as it was: the old venv, an empty directory, or nothing.
                let undo = (|| -> std::io::Result<()> {
                    if had_cfg || !existed {
                        host.remove(&self.path)?;
                    } else {
                        for entry in list_dir(host, &self.path)? {
                            host.remove(&self.path.join(entry))?;
                        }
                    }
                    if had_cfg {
                        host.rename(&aside, &self.path)?;
                    }
                    Ok(())
                })();
                match undo {
                    Ok(()) => Err(error),
                    Err(e) => Err(Error::resource_io(&id, format!("{error}; and cleaning up after it failed"), e)),
                }
            }
        }
    }

    fn wanted_python(&self, host: &Host) -> Result<WantedPython> {
        find_python(host, &self.python, &self.search_path(host))
            .map_err(|e| Error::resource_io(self.id(), "cannot look up its python", e))
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

    /// `pip install` what is missing, then `pip uninstall` what is extraneous (`exact`): what
    /// is extraneous is decided again after the install, as a new version may depend on it.
    fn pip(&self, host: &Host, runner: &Runner, venv: &Observed) -> Result<()> {
        let python = self.path.join("bin/python").into_os_string();
        let base = [python, "-m".into(), "pip".into()];
        let quiet = [OsString::from("--disable-pip-version-check"), "--no-input".into()];
        let (install, mut uninstall) = self.pip_work(venv);
        if !install.is_empty() {
            let mut argv: Vec<OsString> = base.to_vec();
            argv.push("install".into());
            argv.extend(quiet.iter().cloned());
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
            runner.run(&argv, false).map_err(|m| Error::resource(self.id(), format!("pip install failed {m}")))?;
            if self.exact {
                uninstall = match self.observe(host)? {
                    VenvActual::Present(venv) => self.pip_work(&venv).1,
                    VenvActual::Absent => Vec::new(),
                };
            }
        }
        if !uninstall.is_empty() {
            let mut argv: Vec<OsString> = base.to_vec();
            argv.push("uninstall".into());
            argv.extend(quiet.iter().cloned());
            argv.push("--yes".into());
            argv.push("--".into());
            argv.extend(uninstall.iter().map(OsString::from));
            runner.run(&argv, false).map_err(|m| Error::resource(self.id(), format!("pip uninstall failed {m}")))?;
        }
        if install.is_empty() && uninstall.is_empty() {
            return Ok(());
        }
        // pip succeeded; what it did must be what the next plan sees, or every run would
        // install again (a marker pip judged otherwise, a name the distribution does not have).
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

/// Runs the venv's processes as its owner: `uid`/`gid` on the live host, `chroot --userspec`
/// inside an offline root; with the owner's HOME, never through a shell.
struct Runner<'h> {
    host: &'h Host,
    uid: u32,
    gid: u32,
    user: String,
    home: String,
}

impl<'h> Runner<'h> {
    fn new(venv: &Virtualenv, host: &'h Host) -> Result<Runner<'h>> {
        let id = venv.id();
        let io = |e| Error::resource_io(&id, "cannot look up its owner", e);
        let me = nix::unistd::geteuid().as_raw();
        let user = match &venv.ownership.owner {
            Some(name) => Some(
                host.user(name)
                    .map_err(io)?
                    .ok_or_else(|| Error::resource(&id, format!("user `{name}` does not exist")))?,
            ),
            None => None,
        };
        let uid = user.as_ref().map(|u| u.uid).unwrap_or(me);
        let gid = match &venv.ownership.group {
            Some(name) => host.gid(name).map_err(io)?,
            None => user.as_ref().map(|u| u.gid).unwrap_or_else(|| nix::unistd::getegid().as_raw()),
        };
        let entry = match user {
            Some(user) => Some(user),
            None => host.user(&host.user_name(uid).map_err(io)?).map_err(io)?,
        };
        let (user, home) = entry.map(|u| (u.name, u.home)).unwrap_or_else(|| (String::new(), "/".into()));
        Ok(Runner { host, uid, gid, user, home })
    }

    /// The owner as the messages name it.
    fn who(&self) -> String {
        if self.user.is_empty() { format!("uid {}", self.uid) } else { format!("its owner {}", self.user) }
    }

    /// Why this runner cannot execute `program` (a path under the root), or None when it can: every
    /// directory on the way needs search (x) permission and the file execute permission, for
    /// the runner's uid and gid (the processes it starts have no supplementary groups).
    fn cannot_execute(&self, program: &Path) -> std::io::Result<Option<String>> {
        let mut paths: Vec<&Path> = program.ancestors().skip(1).collect();
        paths.reverse();
        paths.push(program);
        for path in paths {
            let Some(stat) = self.host.stat(path)? else {
                return Ok(Some(format!("{} does not exist", path.display())));
            };
            let bits = match () {
                _ if self.uid == 0 => {
                    if stat.kind == FileKind::Directory || stat.mode.0 & 0o111 != 0 {
                        continue;
                    }
                    0
                }
                _ if stat.uid == self.uid => (stat.mode.0 >> 6) & 7,
                _ if stat.gid == self.gid => (stat.mode.0 >> 3) & 7,
                _ => stat.mode.0 & 7,
            };
            if bits & 1 == 0 {
                let what = if stat.kind == FileKind::Directory { "search" } else { "execute" };
                let owner = crate::kinds::observe_owner(self.host, &stat)
                    .map(|(u, g)| format!("{u}:{g}"))
                    .unwrap_or_else(|_| format!("{}:{}", stat.uid, stat.gid));
                return Ok(Some(format!("no {what} permission on {} ({owner}, {})", path.display(), stat.mode)));
            }
        }
        Ok(None)
    }

    /// Runs `argv`. pip's progress is shown when stderr is a terminal (on stderr: stdout may be
    /// JSON); otherwise its output is kept and the failure carries it. `quiet`: always keep it.
    fn run(&self, argv: &[OsString], quiet: bool) -> Result<(), String> {
        // A clean environment (process.rs): nothing of the operator's PIP_* or PYTHON* settings.
        let mut command = self
            .host
            .program(argv)
            .user(self.uid, self.gid, &self.user, &self.home)
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .network(true)
            .command();
        command.stdin(Stdio::null());
        let shown = shell_words::join(argv.iter().map(|a| a.to_string_lossy()));
        let cannot = |e: std::io::Error| format!(": cannot run `{shown}`: {e}");
        // With secrets about, pip's output is kept and shown only through the printer, which
        // hides them (pip would print an index URL's token, or a requirement given as a secret).
        if !quiet && !crate::playbook::redact::any() && self.host.streams_tool_output() {
            let stderr = std::io::stderr().as_fd().try_clone_to_owned().map_err(cannot)?;
            let status = command.stdout(Stdio::from(stderr)).stderr(Stdio::inherit()).status().map_err(cannot)?;
            return if status.success() { Ok(()) } else { Err(format!("({status}); its output is above")) };
        }
        let output = command.output().map_err(cannot)?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let said = if stderr.trim().is_empty() { stdout.trim() } else { stderr.trim() };
        // A traceback can be long; its end says what went wrong.
        let lines: Vec<&str> = said.lines().collect();
        let said = match lines.len() {
            n if n > 30 => format!("[{} lines before]\n{}", n - 20, lines[n - 20..].join("\n")),
            _ => said.to_owned(),
        };
        Err(format!("({}):\n{said}", output.status))
    }
}

/// Gives every file of the tree to `uid`:`gid` (symlinks themselves, never their targets).
fn chown_tree(host: &Host, path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    host.chown(path, Some(uid), Some(gid))?;
    if host.stat(path)?.is_some_and(|s| s.kind == FileKind::Directory) {
        for entry in list_dir(host, path)? {
            chown_tree(host, &path.join(entry), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venv(packages: &[&str]) -> Virtualenv {
        Virtualenv {
            path: "/srv/venv".into(),
            state: State::Present,
            python: "python3".into(),
            ownership: Ownership { owner: Some("app".into()), group: None },
            requirements: packages.iter().map(|p| Wanted::parse(p).unwrap()).collect(),
            index_url: None,
            extra_index_urls: vec![],
            find_links: vec![],
            no_index: false,
            pip_args: vec![],
            exact: false,
        }
    }

    fn installed(name: &str, version: &str, requires: &[&str]) -> (String, Installed) {
        let requires = requires.iter().map(|r| r.to_string()).collect();
        (normalize(name), Installed { name: name.into(), version: version.into(), requires })
    }

    fn observed(packages: Vec<(String, Installed)>) -> VenvActual {
        let mut all = vec![installed("pip", "24.0", &[]), installed("setuptools", "65.5.0", &[])];
        all.extend(packages);
        VenvActual::Present(Box::new(Observed {
            owner: "app".into(),
            group: "app".into(),
            python_version: Some("3.11.7".into()),
            interpreter: Some("/usr/bin/python3.11".into()),
            wanted_python: WantedPython::Binary("/usr/bin/python3.11".into()),
            platform: Platform { machine: "x86_64".into(), release: "6.1.0".into(), version: "#1 SMP".into() },
            packages: all.into_iter().collect(),
            ..Observed::default()
        }))
    }

    fn set(attr: &'static str, from: Option<&str>, to: &str) -> Change {
        Change::Set { attr, from: from.map(str::to_owned), to: to.to_owned() }
    }

    #[test]
    fn names_are_normalised_per_pep_503() {
        for (name, want) in [
            ("Django", "django"),
            ("zope.interface", "zope-interface"),
            ("typing_extensions", "typing-extensions"),
            ("Foo.-_Bar", "foo-bar"),
            ("ruamel.yaml.clib", "ruamel-yaml-clib"),
        ] {
            assert_eq!(normalize(name), want, "{name}");
            // The same as pep508_rs normalises a requirement's name to.
            assert_eq!(Wanted::parse(name).unwrap().name(), want, "{name}");
        }
    }

    #[test]
    fn metadata_headers_are_read_up_to_the_body() {
        let text = "Metadata-Version: 2.1\nName: Demo_Pkg\nVersion: 1.0.post1\nSummary: a demo\n  that continues\n\
                    Requires-Dist: idna (>=2.5)\nRequires-Dist: PySocks!=1.5.7; extra == \"socks\"\n\n\
                    Name: not-a-header\nRequires-Dist: nope\n";
        let parsed = parse_metadata(text).unwrap();
        assert_eq!(parsed.name, "Demo_Pkg");
        assert_eq!(parsed.version, "1.0.post1");
        assert_eq!(parsed.requires, ["idna (>=2.5)", "PySocks!=1.5.7; extra == \"socks\""]);
        assert_eq!(parse_metadata("Metadata-Version: 2.1\nName: only-a-name\n"), None);
    }

    #[test]
    fn pyvenv_cfg_is_key_value() {
        let cfg = parse_cfg(
            "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\nexecutable = /usr/bin/python3.11\ncommand = /usr/bin/python3 -m venv /srv/venv\n",
        );
        assert_eq!(cfg["version"], "3.11.2");
        assert_eq!(cfg["executable"], "/usr/bin/python3.11");
        assert_eq!(cfg["command"], "/usr/bin/python3 -m venv /srv/venv");
    }

    #[test]
    fn a_new_venv_is_created_with_every_requirement() {
        let changes = venv(&["demo==1.0", "idna>=3"]).diff(&VenvActual::Absent);
        assert_eq!(
            changes,
            [
                Change::Create,
                set("python", None, "python3"),
                set("owner", Some(""), "app"),
                set("install", None, "demo==1.0"),
                set("install", None, "idna>=3"),
            ]
        );
    }

    #[test]
    fn a_converged_venv_has_no_changes() {
        let actual = observed(vec![
            installed("Demo_Pkg", "1.0", &["idna (>=2.5)", "PySocks; extra == \"socks\""]),
            installed("idna", "3.7", &[]),
        ]);
        // Names match whatever their spelling; idna is a dependency, pip and setuptools are
        // tooling: nothing is extraneous, even with `exact`.
        let mut v = venv(&["demo-pkg>=1,<2"]);
        assert_eq!(v.diff(&actual), vec![]);
        v.exact = true;
        assert_eq!(v.diff(&actual), vec![]);
        assert_eq!(
            v.pip_work(match &actual {
                VenvActual::Present(o) => o,
                VenvActual::Absent => unreachable!(),
            }),
            (vec![], vec![])
        );
    }

    #[test]
    fn versions_that_fail_their_specifier_are_upgraded_or_downgraded() {
        let actual = observed(vec![installed("demo", "1.0", &[]), installed("idna", "3.7", &[])]);
        assert_eq!(
            venv(&["demo==2.0", "idna<3"]).diff(&actual),
            [set("upgrade", Some("demo 1.0"), "demo==2.0"), set("downgrade", Some("idna 3.7"), "idna<3")]
        );
        assert_eq!(venv(&["demo!=1.0", "idna"]).diff(&actual), [set("replace", Some("demo 1.0"), "demo!=1.0")]);
    }

    #[test]
    fn extraneous_packages_are_listed_beside_changes_and_removed_only_when_exact() {
        let actual = observed(vec![installed("demo", "1.0", &[]), installed("left-over", "0.3", &[])]);
        assert_eq!(venv(&["demo"]).diff(&actual), vec![], "extraneous alone is no change");
        assert_eq!(
            venv(&["demo", "idna"]).diff(&actual),
            [
                set("install", None, "idna"),
                set("extraneous", None, "left-over 0.3 (left alone; `exact: true` uninstalls it)"),
            ]
        );
        let mut exact = venv(&["demo"]);
        exact.exact = true;
        assert_eq!(exact.diff(&actual), [set("uninstall", None, "left-over 0.3")]);
        let VenvActual::Present(o) = &actual else { unreachable!() };
        assert_eq!(exact.pip_work(o), (vec![], vec!["left-over".to_owned()]));
        // Beside an install, the new version may need it: that is decided after the install.
        exact.requirements.push(Wanted::parse("idna").unwrap());
        assert_eq!(
            exact.diff(&actual),
            [
                set("install", None, "idna"),
                set("uninstall", None, "left-over 0.3 (unless what is installed now needs it)"),
            ]
        );
    }

    #[test]
    fn missing_dependencies_of_a_satisfied_requirement_are_installed() {
        let actual =
            observed(vec![installed("demo", "1.0", &["idna>=3", "chardet<5"]), installed("chardet", "5.2", &[])]);
        assert_eq!(
            venv(&["demo"]).diff(&actual),
            [
                set("install", None, "idna>=3 (a dependency of demo 1.0)"),
                set("install", Some("chardet 5.2"), "chardet<5 (a dependency of demo 1.0)"),
            ]
        );
        let VenvActual::Present(o) = &actual else { unreachable!() };
        assert_eq!(venv(&["demo"]).pip_work(o).0, ["idna>=3", "chardet<5"]);
    }

    #[test]
    fn markers_and_extras_are_evaluated_for_the_venvs_interpreter() {
        let actual =
            observed(vec![installed("demo", "1.0", &["pysocks; extra == \"socks\"", "old; python_version < \"3\""])]);
        // A requirement for another Python does not apply; an extra's dependency only with it.
        assert_eq!(venv(&["demo", "futures; python_version < \"3\""]).diff(&actual), vec![]);
        assert_eq!(venv(&["demo[socks]"]).diff(&actual), [set("install", None, "pysocks (a dependency of demo 1.0)")]);
        assert_eq!(
            venv(&["uvloop; sys_platform == \"linux\" and python_version >= \"3.8\""]).diff(&actual)[0],
            set("install", None, "uvloop; sys_platform == \"linux\" and python_version >= \"3.8\"")
        );
    }

    #[test]
    fn recreated_only_when_the_interpreter_changed_or_it_is_broken() {
        let with = |f: &dyn Fn(&mut Observed)| {
            let VenvActual::Present(mut o) = observed(vec![installed("demo", "1.0", &[])]) else { unreachable!() };
            f(&mut o);
            VenvActual::Present(o)
        };
        let v = venv(&["demo"]);
        let changes = v.diff(&with(&|o| o.wanted_python = WantedPython::Binary("/opt/py/bin/python3.12".into())));
        assert_eq!(changes[0], Change::Create);
        assert_eq!(
            changes[1],
            set(
                "recreate",
                None,
                "the interpreter changed: /usr/bin/python3.11 (3.11.7) -> /opt/py/bin/python3.12 (`python: python3`)"
            )
        );
        assert_eq!(changes[2], set("install", None, "demo"));
        // A wrapper or a shim cannot be seen through without running it: no recreate.
        assert_eq!(v.diff(&with(&|o| o.wanted_python = WantedPython::Script("/usr/local/bin/py".into()))), vec![]);
        assert_eq!(v.diff(&with(&|o| o.wanted_python = WantedPython::NotFound)), vec![]);
        let broken =
            v.diff(&with(&|o| o.broken = Some("bin/python leads to /usr/bin/python3.9, which does not exist".into())));
        assert_eq!(
            broken[..2],
            [
                Change::Create,
                set("recreate", None, "it is broken: bin/python leads to /usr/bin/python3.9, which does not exist")
            ]
        );
    }

    #[test]
    fn owner_drift_and_absent() {
        let VenvActual::Present(mut o) = observed(vec![]) else { unreachable!() };
        o.owner = "root".into();
        assert_eq!(venv(&[]).diff(&VenvActual::Present(o)), [set("owner", Some("root"), "app")]);
        let mut gone = venv(&[]);
        gone.state = State::Absent;
        assert_eq!(gone.diff(&observed(vec![])), [Change::Remove]);
        assert_eq!(gone.diff(&VenvActual::Absent), vec![]);
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("srv/venv/bin")).unwrap();
        std::fs::write(root.join("usr/bin/python3.11"), "\x7fELF").unwrap();
        std::os::unix::fs::symlink("python3.11", root.join("usr/bin/python3")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3", root.join("srv/venv/bin/python3")).unwrap();
        std::os::unix::fs::symlink("python3", root.join("srv/venv/bin/python")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/python2", root.join("srv/venv/bin/old")).unwrap();
        let host = Host::new(Some(root.to_path_buf()));
        let real = real_path(&host, Path::new("/srv/venv/bin/python")).unwrap();
        assert_eq!(real, Ok(PathBuf::from("/usr/bin/python3.11")));
        assert_eq!(real_path(&host, Path::new("/srv/venv/bin/old")).unwrap(), Err(PathBuf::from("/usr/bin/python2")));
    }
}
