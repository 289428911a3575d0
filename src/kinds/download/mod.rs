//! `download`: a file fetched from a URL and checked against its sha256, optionally extracted.
//!
//! What it does: when the file is missing or its sha256 is not `sha256:`, fetches `url`
//! (`http://`, `https://` or `file://`, host/fetch.rs) into a temporary file beside it, checks
//! the sha256 of what came, and only then renames it in; a mismatch is refused, naming both
//! digests, and nothing is written. Then sets owner, group and mode as `file` does. With
//! `extract: DIR`, unpacks the archive (tar.gz, tar.xz or zip) into DIR (extract.rs).
//! Why: a no-op reads the file's digest (and stats what was extracted) and makes no request; the
//! sha256 is required, so what lands on the host is always what the playbook names.

pub mod extract;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};
use crate::kinds::file::{DEFAULT_MODE, apply_attributes};
use crate::kinds::resource::{Attr, Change, Need, Ownership, Resource, ownership_changes};
use crate::kinds::{Kind, observe_owner, owner_ids, ownership_needs, path_needs};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{GROUP, MODE, OWNER, Table, Type, attr};
use crate::playbook::yaml_node::{Node, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Download {
    pub path: PathBuf,
    pub url: String,
    /// The sha256 of what the URL must give, lowercase hex.
    pub sha256: String,
    pub ownership: Ownership,
    pub mode: Option<Mode>,
    /// The directory the archive is extracted into.
    pub extract: Option<PathBuf>,
}

/// The file on the host, and what was extracted from it.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadActual {
    pub file: Option<FileFacts>,
    /// None without `extract:`.
    pub extracted: Option<Extracted>,
}

/// A downloaded file's facts.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFacts {
    pub sha256: String,
    pub mode: Mode,
    pub owner: String,
    pub group: String,
}

/// What the directory of `extract:` holds, by its manifest (extract.rs).
#[derive(Debug, Clone, PartialEq)]
pub enum Extracted {
    /// This archive, and every member is still there.
    Done,
    /// Nothing was extracted there.
    Nothing,
    /// Another archive, by its sha256.
    Other(String),
    /// This archive, but members have gone or changed since.
    Changed,
}

impl Extracted {
    /// What a plan shows as the extraction's `from`.
    fn shown(&self) -> Option<String> {
        match self {
            Extracted::Done | Extracted::Nothing => None,
            Extracted::Other(sha256) => Some(format!("sha256:{}", short(sha256))),
            Extracted::Changed => Some("changed since it was extracted".into()),
        }
    }
}

/// The first 12 digits of a digest, for plans.
fn short(sha256: &str) -> &str {
    &sha256[..sha256.len().min(12)]
}

impl Resource for Download {
    type Actual = DownloadActual;

    const KIND: Kind = Kind::Download;

    const TABLE: Table = Table {
        names: Type::Path,
        doc: "a file downloaded from a URL, checked by its sha256, optionally extracted",
        attrs: &[
            attr("url", Type::String, "http://, https:// or file:/// URL to download from"),
            attr("sha256", Type::String, "the sha256 of the file (64 hex digits); required"),
            attr("extract", Type::Path, "a directory to unpack the archive into (tar.gz, tar.xz or zip)"),
            OWNER,
            GROUP,
            MODE,
        ],
    };

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<Download> {
        let path = attrs.managed_path(Self::KIND.name(), name);
        let url = read_url(attrs);
        let sha256 = read_sha256(attrs);
        let extract = attrs.node("extract").and_then(|node| attrs.managed_path("extract", node));
        require(attrs, url.is_some(), "url", name, "`url: https://example.org/app.tar.gz`");
        require(attrs, sha256.is_some(), "sha256", name, "`sha256:` with the digest `sha256sum FILE` prints");
        let ownership = attrs.ownership();
        let mode = attrs.mode("mode");
        Some(Download { path: path?, url: url?, sha256: sha256?, ownership, mode, extract })
    }

    fn name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn needs(&self) -> Vec<Need> {
        let mut needs = path_needs(&self.path, true);
        needs.extend(self.extract.iter().flat_map(|dir| path_needs(dir, true)));
        needs.extend(ownership_needs(&self.ownership));
        needs
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn slow_step(&self) -> Option<&'static str> {
        Some("downloading")
    }

    fn observe(&self, host: &Host) -> Result<DownloadActual> {
        let io = |e| Error::resource_io(self.id(), "cannot read it", e);
        let file = match host.stat(&self.path).map_err(io)? {
            None => None,
            Some(stat) if stat.kind != FileKind::File => {
                return Err(Error::resource(
                    self.id(),
                    format!("{} is {}, not a file; remove it first", self.path.display(), stat.kind.name()),
                ));
            }
            Some(stat) => {
                let (_, sha256) = host.digest(&self.path).map_err(io)?;
                let (owner, group) = observe_owner(host, &stat).map_err(io)?;
                Some(FileFacts { sha256, mode: stat.mode, owner, group })
            }
        };
        let extracted = match &self.extract {
            Some(dir) => Some(self.observe_extracted(host, dir).map_err(io)?),
            None => None,
        };
        Ok(DownloadActual { file, extracted })
    }

    fn diff(&self, actual: &DownloadActual) -> Vec<Change> {
        let mut changes = Vec::new();
        let fetched = match &actual.file {
            None => {
                changes.push(Change::Create);
                changes.push(Change::set_to(Attr::Sha256, self.sha256.as_str()));
                changes.push(Change::set_to(Attr::Mode, self.mode.unwrap_or(DEFAULT_MODE)));
                changes.extend(ownership_changes(&self.ownership, "", ""));
                true
            }
            Some(facts) => {
                let stale = facts.sha256 != self.sha256;
                if stale {
                    changes.push(Change::set(Attr::Sha256, Some(facts.sha256.as_str()), self.sha256.as_str()));
                }
                if let Some(want) = self.mode.filter(|m| *m != facts.mode) {
                    changes.push(Change::set(Attr::Mode, Some(facts.mode), want));
                }
                changes.extend(ownership_changes(&self.ownership, &facts.owner, &facts.group));
                stale
            }
        };
        if let (Some(dir), Some(extracted)) = (&self.extract, &actual.extracted)
            && (fetched || *extracted != Extracted::Done)
        {
            let to = dir.to_string_lossy().into_owned();
            changes.push(Change::set(Attr::Extract, extracted.shown(), to));
        }
        changes
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let id = self.id();
        let fetch = changes.iter().any(|c| *c == Change::Create || c.sets(Attr::Sha256));
        let current = host.stat(&self.path).map_err(|e| Error::resource_io(&id, "cannot read it", e))?;
        let (uid, gid) = owner_ids(host, &self.ownership, current.as_ref())
            .map_err(|e| Error::resource_io(&id, "cannot resolve its owner", e))?;
        if fetch {
            let mode = self.mode.or(current.as_ref().map(|s| s.mode)).unwrap_or(DEFAULT_MODE);
            self.fetch(host, mode, (uid, gid))?;
        } else {
            apply_attributes(host, &self.path, changes, &self.ownership, self.mode)
                .map_err(|e| Error::resource_io(&id, "cannot change its attributes", e))?;
        }
        if let Some(dir) = self.extract.as_ref().filter(|_| changes.iter().any(|c| c.sets(Attr::Extract))) {
            extract::extract(host, &self.path, &self.sha256, dir, (uid, gid))
                .map_err(|e| Error::resource_io(&id, format!("cannot extract it into {}", dir.display()), e))?;
        }
        Ok(())
    }
}

impl Download {
    /// Downloads the URL into a temporary file beside the path, renamed in only when its
    /// sha256 is the playbook's.
    fn fetch(&self, host: &Host, mode: Mode, owner: (u32, u32)) -> Result<()> {
        let id = self.id();
        let parent = self.path.parent().unwrap_or(&self.path);
        if host.stat(parent).map_err(|e| Error::resource_io(&id, "cannot read its directory", e))?.is_none() {
            return Err(Error::resource(
                &id,
                format!("its directory {} does not exist; add a `directory:` resource for it", parent.display()),
            ));
        }
        let mut stream = host.fetch(&self.url).map_err(|e| Error::resource_io(&id, "cannot download it", e))?;
        let accept = |got: &str| match got == self.sha256 {
            true => Ok(()),
            false => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} has sha256 {got}, not {} as `sha256:` says; nothing was written (fix `sha256:` if the file \
                     was meant to change)",
                    self.url, self.sha256
                ),
            )),
        };
        host.write_atomic_from(&self.path, &mut stream, mode, owner, &accept)
            .map_err(|e| Error::resource_io(&id, "refused the download", e))?;
        Ok(())
    }

    /// What the manifest of `dir` says, checked against the host.
    fn observe_extracted(&self, host: &Host, dir: &std::path::Path) -> std::io::Result<Extracted> {
        let Some(manifest) = extract::read_manifest(host, dir)? else { return Ok(Extracted::Nothing) };
        if manifest.archive_sha256 != self.sha256 {
            return Ok(Extracted::Other(manifest.archive_sha256));
        }
        Ok(if extract::intact(host, &manifest)? { Extracted::Done } else { Extracted::Changed })
    }
}

/// Reports `key` missing (when it is not there at all: a wrong one is reported already).
fn require(attrs: &mut Attrs, found: bool, key: &'static str, name: &Node, example: &str) {
    if !found && attrs.node(key).is_none() {
        attrs.error(name.span, format!("a download needs `{key}`"), format!("no `{key}`"), format!("add {example}"));
    }
}

/// `url:`: a URL converge can download from.
fn read_url(attrs: &mut Attrs) -> Option<String> {
    let node = attrs.node("url")?;
    let url = attrs.render_string("url", node)?;
    if !crate::host::can_fetch(&url) {
        let shown = crate::error::escape(&url).into_owned();
        attrs.error(
            node.span,
            format!("`{shown}` is not a URL converge can download from"),
            "not http://, https:// or file:///",
            "write a URL such as `https://example.org/app.tar.gz`, or `file:///srv/files/app.tar.gz` for a file of the host",
        );
        return None;
    }
    Some(url)
}

/// `sha256:`: 64 hex digits (a `sha256:` prefix and upper case are taken too).
fn read_sha256(attrs: &mut Attrs) -> Option<String> {
    let node = attrs.node("sha256")?;
    // A digest of digits only is a number to YAML: taken as written.
    let text = match &node.value {
        Value::Int(_) | Value::Float(_) => node.source(&attrs.templates().source().text).to_owned(),
        _ => attrs.render_string("sha256", node)?,
    };
    let digest = text.trim().trim_start_matches("sha256:").to_ascii_lowercase();
    if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
        let shown = crate::error::escape(&text).into_owned();
        attrs.error(
            node.span,
            format!("`{shown}` is not a sha256"),
            "not 64 hex digits",
            "write the file's digest as `sha256sum FILE` prints it: 64 hex digits",
        );
        return None;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn download(extract: bool) -> Download {
        Download {
            path: "/opt/app.tar.gz".into(),
            url: "http://127.0.0.1/app.tar.gz".into(),
            sha256: A.into(),
            ownership: Ownership::default(),
            mode: None,
            extract: extract.then(|| "/opt/app".into()),
        }
    }

    fn present(sha256: &str) -> Option<FileFacts> {
        Some(FileFacts { sha256: sha256.into(), mode: Mode(0o644), owner: "root".into(), group: "root".into() })
    }

    #[test]
    fn a_file_with_the_digest_and_its_tree_is_converged() {
        let actual = DownloadActual { file: present(A), extracted: Some(Extracted::Done) };
        assert_eq!(download(true).diff(&actual), vec![]);
    }

    #[test]
    fn a_missing_file_is_downloaded_and_extracted() {
        let changes = download(true).diff(&DownloadActual { file: None, extracted: Some(Extracted::Nothing) });
        assert_eq!(changes[0], Change::Create);
        assert!(changes.contains(&Change::set_to(Attr::Sha256, A)));
        assert_eq!(changes.last(), Some(&Change::set_to(Attr::Extract, "/opt/app")));
    }

    #[test]
    fn another_digest_downloads_again() {
        let changes = download(false).diff(&DownloadActual { file: present(B), extracted: None });
        assert_eq!(changes, vec![Change::set(Attr::Sha256, Some(B), A)]);
    }

    #[test]
    fn a_tree_changed_since_is_extracted_again() {
        let actual = DownloadActual { file: present(A), extracted: Some(Extracted::Changed) };
        assert_eq!(
            download(true).diff(&actual),
            vec![Change::set(Attr::Extract, Some("changed since it was extracted"), "/opt/app")]
        );
        let actual = DownloadActual { file: present(A), extracted: Some(Extracted::Other(B.into())) };
        assert_eq!(
            download(true).diff(&actual),
            vec![Change::set(Attr::Extract, Some("sha256:bbbbbbbbbbbb"), "/opt/app")]
        );
    }
}
