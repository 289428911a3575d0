//! `apt`: Debian packages, installed or removed.
//!
//! What it does: reads the dpkg status database (/var/lib/dpkg/status) to see what is installed,
//! so a converged list runs no apt process at all; installs only the missing packages with
//! `apt-get install -y --no-install-recommends` under `DEBIAN_FRONTEND=noninteractive` (after
//! `apt-get update` when `update_cache` asks for it and something is to be installed);
//! `state: absent` removes them (`apt-get remove`). `version` pins one package (`name=version`).
//! A package that does not exist is an error that names it. Under `--root`, apt-get runs inside
//! the root (chroot).

use std::path::Path;
use std::time::{Duration, SystemTime};

pub mod forecast;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::kinds::Kind;
use crate::kinds::resource::{self, Attr, Change, Need, Overlap, PackageTo, Provide, Resource, State};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{STATE, Table, Type, attr};
use crate::playbook::yaml_node::{Node, Span, Value};

const STATUS: &str = "/var/lib/dpkg/status";
/// Rewritten by every `apt-get update`; missing on an image whose lists were never fetched. (The
/// lists directory's own mtime does not change when files inside are replaced.)
const PKGCACHE: &str = "/var/cache/apt/pkgcache.bin";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Apt {
    pub packages: Vec<String>,
    pub state: State,
    /// Only with a single package.
    pub version: Option<String>,
    pub update_cache: UpdateCache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateCache {
    Never,
    Always,
    /// When the package lists are older than this.
    OlderThan(Duration),
}

/// Installed versions of the wanted packages (None: not installed), in order; and whether the
/// package lists are stale for `update_cache`.
#[derive(Debug, Clone, PartialEq)]
pub struct AptActual {
    pub installed: Vec<Option<String>>,
}

impl Apt {
    fn build(name: &Node, attrs: &mut Attrs) -> Option<Apt> {
        let packages: Vec<String> = match &name.value {
            Value::Seq(items) => items.iter().filter_map(|item| attrs.render_string(Self::KIND.name(), item)).collect(),
            _ => attrs.render_string(Self::KIND.name(), name).into_iter().collect(),
        };
        let state = attrs.state();
        let version = attrs.node("version").and_then(|node| {
            let version = attrs.render_string("version", node)?;
            if !is_debian_version(&version) {
                let shown = crate::error::escape(&version).into_owned();
                attrs.error(
                    node.span,
                    format!("`{shown}` is not a Debian version"),
                    "not a version",
                    "a version is [epoch:]upstream[-revision], starting with a digit, of letters, digits and . + ~ - : (such as 1.22.1-9)",
                );
                return None;
            }
            Some(version)
        });
        let update_cache = match attrs.node("update_cache") {
            None | Some(Node { value: Value::Bool(false), .. }) => UpdateCache::Never,
            Some(Node { value: Value::Bool(true), .. }) => UpdateCache::Always,
            Some(Node { value: Value::Int(seconds), .. }) if *seconds >= 0 => {
                UpdateCache::OlderThan(Duration::from_secs(*seconds as u64))
            }
            Some(node) => {
                attrs.error(
                    node.span,
                    "`update_cache` must be true, false or a number of seconds",
                    "expected true or seconds",
                    "write `update_cache: true`, or `update_cache: 3600` to update lists older than an hour",
                );
                UpdateCache::Never
            }
        };
        for (package, span) in packages.iter().zip(spans(name)) {
            let valid = package.len() >= 2
                && package.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && package.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
            if !valid {
                let package = crate::error::escape(package);
                attrs.error(
                    span,
                    format!("`{package}` is not a Debian package name"),
                    "not a package name",
                    "package names are lowercase letters, digits and + - . (such as python3-venv)",
                );
            }
        }
        if packages.is_empty() {
            attrs.error(
                name.span,
                "`apt` names no package",
                "empty",
                "write `apt: nginx` or `apt: [nginx, python3-venv]`",
            );
        }
        if version.is_some() && packages.len() != 1 {
            attrs.error(
                name.span,
                "`version` needs a single package",
                "several packages",
                "give the pinned package an entry of its own",
            );
        }
        Some(Apt { packages, state, version, update_cache })
    }

    fn lists_stale(&self, host: &Host) -> bool {
        match self.update_cache {
            UpdateCache::Never => false,
            UpdateCache::Always => true,
            UpdateCache::OlderThan(max) => {
                let modified = host.stat(Path::new(PKGCACHE)).ok().flatten().map(|s| s.mtime);
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
                modified.is_none_or(|m| now.saturating_sub(m) > max.as_secs() as i64)
            }
        }
    }

    fn apt_get(&self, host: &Host, args: &[&str]) -> Result<()> {
        self.run_apt_get(host, args, &format!("apt-get {}", args.join(" ")))
    }

    /// Fetches the lists of the sources an `apt_repository` of this run changed, each alone:
    /// the other sources' lists are neither fetched nor cleaned up, and apt's binary caches are
    /// not written (pkgcache.bin keeps the age of the last full update, for `update_cache`).
    fn fetch_stale_lists(&self, host: &Host) -> Result<()> {
        for sources in host.take_stale_lists() {
            let list = format!("Dir::Etc::SourceList={}", sources.display());
            let mut args = vec!["update", "-q", "-o", &list, "-o", "Dir::Etc::SourceParts=-"];
            args.extend(["-o", "APT::Get::List-Cleanup=0"]);
            args.extend(forecast::NO_CACHE_FILES);
            let name = sources.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            self.run_apt_get(host, &args, &format!("apt-get update of repository {name} ({})", sources.display()))?;
        }
        Ok(())
    }

    /// Runs apt-get with `args`; an error calls it `shown`.
    fn run_apt_get(&self, host: &Host, args: &[&str], shown: &str) -> Result<()> {
        let mut argv = vec!["apt-get"];
        argv.extend_from_slice(args);
        let mut command =
            host.program(&argv).env("DEBIAN_FRONTEND", "noninteractive").env("LC_ALL", "C").network(true).command();
        command.stdin(std::process::Stdio::null());
        // With -v on a terminal, apt-get's own output streams (to stderr: stdout is converge's).
        if host.streams_tool_output() {
            use std::os::fd::AsFd;
            let cannot = |e| Error::resource_io(self.id(), "cannot run apt-get", e);
            let stderr = std::io::stderr().as_fd().try_clone_to_owned().map_err(cannot)?;
            let status = command
                .stdout(std::process::Stdio::from(stderr))
                .stderr(std::process::Stdio::inherit())
                .status()
                .map_err(cannot)?;
            if status.success() {
                return Ok(());
            }
            return Err(Error::resource(
                self.id(),
                format!("{shown} failed ({status}); its output is above"),
            ));
        }
        let output = command.output().map_err(|e| Error::resource_io(self.id(), "cannot run apt-get", e))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let missing: Vec<&str> =
            stderr.lines().filter_map(|l| l.strip_prefix("E: Unable to locate package ")).collect();
        let unsigned = stderr.lines().any(|l| l.starts_with("E: The repository") && l.ends_with("is not signed."));
        let hint = match unsigned {
            true => "\napt refused a repository it cannot verify: the `key:` of its apt_repository must be the key \
                     that signs its Release file (converge never marks a repository trusted)",
            false => "",
        };
        let message = match missing[..] {
            [] => format!("{shown} failed ({}):\n{}{hint}", output.status, stderr.trim()),
            _ => format!(
                "no such package: {} (apt-get: Unable to locate package; check the name, or add `update_cache: true`)",
                missing.join(", ")
            ),
        };
        Err(Error::resource(self.id(), message))
    }
}

/// A version as deb-version(7) spells it: `[epoch:]upstream_version[-debian_revision]`.
fn is_debian_version(version: &str) -> bool {
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) => (Some(epoch), rest),
        None => (None, version),
    };
    let epoch_ok = epoch.is_none_or(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()));
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((upstream, revision)) => (upstream, Some(revision)),
        None => (rest, None),
    };
    let upstream_ok = upstream.starts_with(|c: char| c.is_ascii_digit())
        && upstream.chars().all(|c| c.is_ascii_alphanumeric() || ".+~-:".contains(c));
    let revision_ok =
        revision.is_none_or(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || "+.~".contains(c)));
    epoch_ok && upstream_ok && revision_ok
}

/// The spans of the package names, for errors.
fn spans(name: &Node) -> Vec<Span> {
    match &name.value {
        Value::Seq(items) => items.iter().map(|i| i.span).collect(),
        _ => vec![name.span],
    }
}

/// The installed version of each package in the dpkg status database (deb-control(5) stanzas;
/// installed means `Status: install ok installed`).
pub fn installed_versions(status: &str, packages: &[String]) -> Vec<Option<String>> {
    let mut found: Vec<Option<String>> = vec![None; packages.len()];
    for stanza in status.split("\n\n") {
        let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        let (Some(package), Some(state), Some(version)) = (field("Package:"), field("Status:"), field("Version:"))
        else {
            continue;
        };
        if state == "install ok installed"
            && let Some(i) = packages.iter().position(|p| p == package)
        {
            found[i] = Some(version.to_owned());
        }
    }
    found
}

impl Resource for Apt {
    type Actual = AptActual;

    const KIND: Kind = Kind::Apt;

    const TABLE: Table = Table {
        names: Type::Strings,
        doc: "Debian packages, installed or removed with apt-get",
        attrs: &[
            STATE,
            attr("version", Type::String, "the exact version to install"),
            attr(
                "update_cache",
                Type::BoolOrSeconds,
                "apt-get update first: true, or when the lists are older than N s",
            ),
        ],
    };

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<Apt> {
        Apt::build(name, attrs)
    }

    /// The packages, comma-separated.
    fn name(&self) -> String {
        self.packages.join(",")
    }

    /// An install comes after the apt sources (`apt_repository`) written before it.
    fn needs(&self) -> Vec<Need> {
        match self.state {
            State::Present => vec![Need::AptSources],
            State::Absent => Vec::new(),
        }
    }

    /// The packages it installs, for "packages before what uses them".
    fn provides(&self) -> Vec<Provide> {
        match self.state {
            State::Present => self.packages.iter().cloned().map(Provide::Package).collect(),
            State::Absent => Vec::new(),
        }
    }

    fn not_restored(&self) -> Option<&'static str> {
        Some("packages are not uninstalled or downgraded")
    }

    fn slow_step(&self) -> Option<&'static str> {
        Some("apt-get")
    }

    /// apt-get is long, and holds dpkg's lock: never two at once.
    fn overlap(&self) -> Overlap {
        Overlap::LongExclusive
    }

    fn observe(&self, host: &Host) -> Result<AptActual> {
        let status = match host.read(Path::new(STATUS)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::resource_io(self.id(), "cannot read the dpkg status database", e)),
        };
        Ok(AptActual { installed: installed_versions(&status, &self.packages) })
    }

    fn diff(&self, actual: &AptActual) -> Vec<Change> {
        let mut changes = Vec::new();
        for (package, installed) in self.packages.iter().zip(&actual.installed) {
            let change = match (self.state, installed, &self.version) {
                (State::Present, None, version) => {
                    Some((None, version.clone().map_or(PackageTo::Install, PackageTo::Version)))
                }
                (State::Present, Some(have), Some(want)) if have != want => {
                    Some((Some(have), PackageTo::Version(want.clone())))
                }
                (State::Absent, Some(have), _) => Some((Some(have), PackageTo::Remove)),
                _ => None,
            };
            if let Some((from, to)) = change {
                changes.push(Change::set(Attr::Package, from, resource::Value::Package { name: package.clone(), to }));
            }
        }
        if self.state == State::Absent && !changes.is_empty() {
            changes.insert(0, Change::Remove);
        }
        // Installing a package creates it: `+`, not `~ (update)`.
        if self.state == State::Present && actual.installed.iter().any(Option::is_none) {
            changes.insert(0, Change::Create);
        }
        changes
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let wanted: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Set { attr: Attr::Package, to: resource::Value::Package { name, .. }, .. } => {
                    Some(name.clone())
                }
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let result = if self.state == State::Absent {
            let mut args = vec!["remove", "-y", "--"];
            args.extend(wanted.iter().map(String::as_str));
            self.apt_get(host, &args)
        } else {
            if self.lists_stale(host) {
                host.take_stale_lists();
                self.apt_get(host, &["update", "-q"])?;
            } else {
                self.fetch_stale_lists(host)?;
            }
            let specs: Vec<String> = match &self.version {
                Some(version) => wanted.iter().map(|p| format!("{p}={version}")).collect(),
                None => wanted,
            };
            let mut args = vec!["install", "-y", "-q", "--no-install-recommends", "--"];
            args.extend(specs.iter().map(String::as_str));
            self.apt_get(host, &args)
        };
        host.forget_units();
        host.forget_accounts();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_DB: &str = "Package: nginx\nStatus: install ok installed\nVersion: 1.22.1-9\n\nPackage: curl\nStatus: deinstall ok config-files\nVersion: 7.88\n\nPackage: python3-venv\nStatus: install ok installed\nVersion: 3.11.2-1\n";

    fn apt(packages: &[&str], state: State) -> Apt {
        Apt {
            packages: packages.iter().map(|p| p.to_string()).collect(),
            state,
            version: None,
            update_cache: UpdateCache::Never,
        }
    }

    #[test]
    fn debian_versions() {
        for good in ["1.22.1-9", "1:2.3", "2.0~rc1-1+deb12u1", "7"] {
            assert!(is_debian_version(good), "{good}");
        }
        for bad in ["", "-1", "a1.0", "1.0 -o", "1:", "1.0-", "1.0/2", "x:1.0"] {
            assert!(!is_debian_version(bad), "{bad}");
        }
    }

    #[test]
    fn reads_the_status_database() {
        let packages = ["nginx".to_owned(), "curl".to_owned(), "python3-venv".to_owned(), "ghost".to_owned()];
        assert_eq!(
            installed_versions(STATUS_DB, &packages),
            [Some("1.22.1-9".into()), None, Some("3.11.2-1".into()), None]
        );
    }

    #[test]
    fn only_missing_packages_are_installed() {
        let a = apt(&["nginx", "curl"], State::Present);
        let actual = AptActual { installed: vec![Some("1.22.1-9".into()), None] };
        // Installing creates: `+ apt:nginx,curl (create)`, with the package to install.
        let curl = resource::Value::Package { name: "curl".into(), to: PackageTo::Install };
        assert_eq!(a.diff(&actual), vec![Change::Create, Change::set_to(Attr::Package, curl.clone())]);
        assert_eq!(curl.to_string(), "curl: install");
        assert_eq!(a.diff(&AptActual { installed: vec![Some("1".into()), Some("2".into())] }), vec![]);
    }

    #[test]
    fn pinned_versions_and_removal() {
        let mut pinned = apt(&["nginx"], State::Present);
        pinned.version = Some("1.22.1-10".into());
        let actual = AptActual { installed: vec![Some("1.22.1-9".into())] };
        let nginx = resource::Value::Package { name: "nginx".into(), to: PackageTo::Version("1.22.1-10".into()) };
        assert_eq!(pinned.diff(&actual), vec![Change::set(Attr::Package, Some("1.22.1-9"), nginx.clone())]);
        assert_eq!(nginx.to_string(), "nginx: 1.22.1-10");
        let gone = apt(&["nginx"], State::Absent);
        assert_eq!(gone.diff(&actual)[0], Change::Remove);
        assert_eq!(gone.diff(&AptActual { installed: vec![None] }), vec![]);
    }
}
