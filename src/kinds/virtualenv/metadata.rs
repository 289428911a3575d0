//! What a venv says about itself, read from its files: `pyvenv.cfg`, and the installed
//! distributions of its site-packages (`*.dist-info/METADATA`, `*.egg-info`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::host::{FileKind, Host};

/// One installed distribution, from its METADATA.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    /// The name as the distribution spells it.
    pub name: String,
    pub version: String,
    /// `Requires-Dist` lines, as written.
    pub requires: Vec<String>,
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
pub(super) fn parse_cfg(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// The distributions installed in a site-packages directory, by normalised name (the first of
/// a name, in the order of the entries, when there are several). Errors are the resource `id`'s.
pub(super) fn installed(host: &Host, site: &Path, id: &str) -> Result<BTreeMap<String, Installed>> {
    let io = |what: &'static str| move |e| Error::resource_io(id, what, e);
    let mut packages = BTreeMap::new();
    for entry in super::list_dir(host, site).map_err(io("cannot list site-packages"))? {
        let Some(metadata) = metadata_file(host, site, &entry).map_err(io("cannot read site-packages"))? else {
            continue;
        };
        let text = match host.read(&metadata) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            // A half-removed distribution: pip would not see it either.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("cannot read a METADATA file")(e)),
        };
        if let Some(installed) = parse_metadata(&text) {
            packages.entry(normalize(&installed.name)).or_insert(installed);
        }
    }
    Ok(packages)
}

/// The metadata file of an entry of site-packages: `X.dist-info/METADATA`, `X.egg-info/PKG-INFO`
/// or an `X.egg-info` file itself; None for anything else.
fn metadata_file(host: &Host, site: &Path, entry: &str) -> std::io::Result<Option<PathBuf>> {
    let path = site.join(entry);
    Ok(if entry.ends_with(".dist-info") {
        Some(path.join("METADATA"))
    } else if entry.ends_with(".egg-info") {
        match host.stat(&path)? {
            Some(s) if s.kind == FileKind::Directory => Some(path.join("PKG-INFO")),
            _ => Some(path),
        }
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::super::Wanted;
    use super::*;

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
}
