//! Which program makes the venv and installs into it: uv when it is there (`installer: auto`, the
//! default), pip otherwise; `installer: pip` or `installer: uv` forces one. Either way the venv
//! is the same to the observation (pyvenv.cfg, the METADATA of its distributions), so a later
//! run with the other installer finds it converged.
//!
//! uv is `uv: PATH`, else `uv` on the PATH of the run, and must be executable by the venv's
//! owner. pip's options map to uv's: `index_url`,
//! `extra_index_urls`, `find_links` and `no_index` are the same flags, and `pip_args` are
//! translated by [`UV_ARGS`]; a pip argument uv has no equivalent for makes `auto` choose pip
//! (and `installer: uv` an error at its line).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use super::Virtualenv;
use crate::error::{Error, PlaybookErrors, Result, Source};
use crate::host::Host;
use crate::kinds::resource::Resource;
use crate::playbook::attrs::Attrs;
use crate::playbook::yaml_node::Span;

/// `installer:` as the playbook asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Installer {
    /// uv when it is found, pip otherwise.
    #[default]
    Auto,
    Pip,
    Uv,
}

impl Installer {
    const WORDS: &[&str] = &["auto", "pip", "uv"];
}

/// The program that will make the venv and install into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tool {
    /// `python -m venv` and the venv's pip.
    Pip,
    /// This uv: `uv venv`, `uv pip`.
    Uv(PathBuf),
}

impl Tool {
    /// Its name in messages: pip or uv.
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Pip => "pip",
            Tool::Uv(_) => "uv",
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tool::Pip => f.write_str("pip"),
            Tool::Uv(path) => write!(f, "uv ({})", path.display()),
        }
    }
}

/// Where the playbook chose the installer (`installer:` or `uv:`), for an error at that line
/// when the host has no uv. Not kept in saved plans; equal whatever it holds.
#[derive(Debug, Clone, Default)]
pub struct ChosenAt(Option<(Source, Span)>);

impl PartialEq for ChosenAt {
    fn eq(&self, _: &ChosenAt) -> bool {
        true
    }
}

/// pip's arguments that uv takes, and uv's spelling of them (flags whose value follows as the
/// next argument or after `=` keep it). Any other makes the arguments pip's alone.
pub const UV_ARGS: &[(&str, &str)] = &[
    ("--no-deps", "--no-deps"),
    ("--pre", "--prerelease=allow"),
    ("--upgrade", "--upgrade"),
    ("-U", "--upgrade"),
    ("--force-reinstall", "--reinstall"),
    ("--no-build-isolation", "--no-build-isolation"),
    ("--require-hashes", "--require-hashes"),
    ("--no-binary", "--no-binary"),
    ("--only-binary", "--only-binary"),
    ("--constraint", "--constraint"),
    ("-c", "--constraint"),
    ("--no-cache-dir", "--no-cache"),
    ("--compile", "--compile-bytecode"),
    ("--index-url", "--index-url"),
    ("-i", "--index-url"),
    ("--extra-index-url", "--extra-index-url"),
    ("--find-links", "--find-links"),
    ("-f", "--find-links"),
    ("--no-index", "--no-index"),
];

/// The flags of [`UV_ARGS`] whose value is the next argument.
const TAKES_VALUE: &[&str] =
    &["--no-binary", "--only-binary", "--constraint", "-c", "--index-url", "-i", "--extra-index-url", "--find-links", "-f"];

/// `pip_args` as uv's arguments; the first that uv has no equivalent for otherwise.
pub fn uv_args(pip_args: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut args = pip_args.iter();
    while let Some(arg) = args.next() {
        let (flag, value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with('-') => (flag, Some(value)),
            _ => (arg.as_str(), None),
        };
        let Some((_, uv)) = UV_ARGS.iter().find(|(pip, _)| *pip == flag) else { return Err(arg.clone()) };
        match value {
            Some(value) => out.push(format!("{uv}={value}")),
            None => out.push((*uv).to_owned()),
        }
        if value.is_none() && TAKES_VALUE.contains(&flag) {
            out.extend(args.next().cloned());
        }
    }
    Ok(out)
}

/// Reads `installer` and `uv`; reports an unknown installer, and `installer: uv` with a pip
/// argument uv cannot take.
pub(super) fn from_attrs(attrs: &mut Attrs, pip_args: &[String]) -> (Installer, Option<PathBuf>, ChosenAt) {
    let source = attrs.templates().source().clone();
    let uv = attrs.path("uv");
    let uv_at = attrs.node("uv").map(|n| n.span);
    let Some(node) = attrs.node("installer") else {
        return (Installer::Auto, uv, ChosenAt(uv_at.map(|span| (source, span))));
    };
    let installer = match attrs.render_string("installer", node).as_deref() {
        Some("auto") | None => Installer::Auto,
        Some("pip") => Installer::Pip,
        Some("uv") => Installer::Uv,
        Some(other) => {
            let other = other.to_owned();
            let help = crate::error::did_you_mean(&other, Installer::WORDS.iter().copied())
                .unwrap_or_else(|| "write auto (uv when it is found), pip or uv".to_owned());
            attrs.error(node.span, format!("unknown installer `{other}`"), "expected auto, pip or uv", help);
            Installer::Auto
        }
    };
    if let (Installer::Uv, Err(arg)) = (installer, uv_args(pip_args)) {
        let at = attrs.node("pip_args").map_or(node.span, |n| n.span);
        attrs.error(
            at,
            format!("uv has no equivalent of the pip argument `{arg}`"),
            "not an argument uv takes",
            format!(
                "uv takes these of pip's arguments: {}; use `installer: pip` for the others",
                UV_ARGS.iter().map(|(pip, _)| *pip).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    (installer, uv, ChosenAt(Some((source, uv_at.unwrap_or(node.span)))))
}

impl Virtualenv {
    /// The program that will run, found without running anything: an error at the playbook's
    /// line when it asks for uv (`installer: uv`, or `uv: PATH`) and the host has none its
    /// owner can run.
    pub(super) fn tool(&self, host: &Host) -> Result<Tool> {
        if self.installer == Installer::Pip || (self.installer == Installer::Auto && uv_args(&self.pip_args).is_err()) {
            return Ok(Tool::Pip);
        }
        match self.find_uv(host)? {
            Ok(path) => Ok(Tool::Uv(path)),
            Err(_) if self.installer == Installer::Auto && self.uv.is_none() => Ok(Tool::Pip),
            Err(why) => Err(self.no_uv(why)),
        }
    }

    /// uv: `uv:`, else the first on the PATH of the run (the system PATH inside a `--root`),
    /// and one its owner can execute; why not otherwise.
    fn find_uv(&self, host: &Host) -> Result<Result<PathBuf, String>> {
        let io = |e| Error::resource_io(self.id(), "cannot look up uv", e);
        let name = self.uv.as_deref().unwrap_or(Path::new("uv")).to_string_lossy().into_owned();
        let search = match (host.root(), std::env::var("PATH")) {
            (None, Ok(path)) => path,
            _ => crate::host::PATH.to_owned(),
        };
        let Some(path) = host.find_program(&name, &search).map_err(io)? else {
            return Ok(Err(match &self.uv {
                Some(path) => format!("{} does not exist", path.display()),
                None => "no `uv` on the PATH".to_owned(),
            }));
        };
        let owner = host.account(self.ownership.owner.as_deref(), self.ownership.group.as_deref()).map_err(io)?;
        // An owner made earlier in this run is checked when the venv is made.
        let Some(owner) = owner else { return Ok(Ok(path)) };
        match host.cannot_execute(&path, &owner).map_err(io)? {
            Some(why) => Ok(Err(format!("{} cannot be run by the venv's owner ({why})", path.display()))),
            None => Ok(Ok(path)),
        }
    }

    /// The error of a playbook that asks for uv on a host without one.
    fn no_uv(&self, why: String) -> Error {
        let message = format!("{}: uv is asked for, but {why}", self.id());
        let help = "install uv (its PyPI wheel holds one static binary) where the venv's owner can run it, give its \
                    path as `uv: /path/to/uv`, or write `installer: auto` to use pip when there is no uv";
        match &self.installer_at.0 {
            Some((source, span)) => {
                let error = source.error(*span, message, "no uv on this host").help(help);
                Error::Playbook(PlaybookErrors { path: source.name.clone(), errors: vec![error] })
            }
            None => Error::resource(self.id(), format!("{message}; {help}")),
        }
    }

    /// `uv` with its arguments for this venv: no configuration files, no Python downloads, no
    /// cache (the owner may have no home; files are copied, never linked to a cache).
    pub(super) fn uv_argv(&self, uv: &Path, command: &[&str]) -> Vec<OsString> {
        let mut argv = vec![uv.as_os_str().to_owned()];
        argv.extend(command.iter().map(OsString::from));
        let quiet = ["--no-config", "--no-python-downloads", "--no-cache", "--no-progress", "--color", "never"];
        argv.extend(quiet.iter().map(OsString::from));
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn pip_arguments_map_to_uvs_or_name_the_first_that_does_not() {
        assert_eq!(
            uv_args(&args(&["--pre", "--no-binary", ":all:", "-c", "/c.txt", "--index-url=https://i/simple"])),
            Ok(args(&["--prerelease=allow", "--no-binary", ":all:", "--constraint", "/c.txt", "--index-url=https://i/simple"]))
        );
        assert_eq!(uv_args(&args(&["--no-deps", "--trusted-host", "x"])), Err("--trusted-host".to_owned()));
        assert_eq!(uv_args(&[]), Ok(vec![]));
    }

    #[test]
    fn the_tool_says_which_program_runs() {
        assert_eq!(Tool::Pip.to_string(), "pip");
        assert_eq!(Tool::Uv("/usr/local/bin/uv".into()).to_string(), "uv (/usr/local/bin/uv)");
    }
}
