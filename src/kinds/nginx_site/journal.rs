//! The nginx site journal: an `nginx_site` that is written but not yet accepted by `nginx -t`
//! (docs/triggers.md, "The nginx site in test"). It belongs to the kind, not to the engine: the
//! site saves it before its write, clears it after nginx's verdict, and finishes what an
//! interrupted run left ([`super::finish_interrupted`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host::Host;
use crate::host::mode::Mode;

/// Where the journal is. It is saved before the site is written, with what was there before
/// (bytes, mode, owner, link targets), and removed once nginx accepted the site or the old one
/// was put back. A run killed in between (during `nginx -t`, say) leaves it behind, and the next
/// `apply` finishes the job first: it runs `nginx -t` and keeps the site, or puts the recorded
/// one back. Unlike the trigger journal it is kept under `--root` too (inside the root), since an
/// image's nginx configuration can be left half tested just the same.
pub const SITE_PATH: &str = "/var/lib/converge/nginx-site-in-test.json";

/// A site between its write and nginx's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteInTest {
    /// The site's name (sites-available/NAME).
    pub site: String,
    /// nginx rejected it and the previous state is being put back: the next run finishes that
    /// without asking nginx again.
    pub rolling_back: bool,
    /// What was there before: sites-available/NAME, sites-enabled/NAME, and
    /// sites-enabled/default when the site removes it (`remove_default`).
    pub available: Entry,
    pub enabled: Entry,
    #[serde(default)]
    pub default: Option<Entry>,
}

/// What a path held before a site was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Entry {
    Absent,
    File {
        content: Bytes,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A symlink; its target as bytes, since a path need not be UTF-8.
    Link {
        target: Bytes,
        uid: u32,
        gid: u32,
    },
}

/// File content in JSON: text when it is UTF-8 (as nginx configuration is), else its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bytes {
    Text(String),
    Raw(Vec<u8>),
}

impl Bytes {
    pub fn new(bytes: Vec<u8>) -> Bytes {
        String::from_utf8(bytes).map(Bytes::Text).unwrap_or_else(|e| Bytes::Raw(e.into_bytes()))
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Text(text) => text.as_bytes(),
            Bytes::Raw(bytes) => bytes,
        }
    }
}

/// The site an interrupted run left untested, if any.
pub fn load_site(host: &Host) -> Result<Option<SiteInTest>> {
    match host.read(Path::new(SITE_PATH)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::resource(
                SITE_PATH,
                format!("cannot understand the nginx site journal ({e}); check the site by hand, then remove it"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Read { path: SITE_PATH.into(), source: e }),
    }
}

/// Records a site before it is written (durably: written, fsynced, renamed in).
pub fn save_site(host: &Host, site: &SiteInTest) -> std::io::Result<()> {
    let path = Path::new(SITE_PATH);
    host.create_dirs(path.parent().expect("a directory"))?;
    let json = serde_json::to_vec_pretty(site).expect("plain data serializes");
    host.write_system_file(path, &json, Mode(0o600))
}

pub fn clear_site(host: &Host) -> std::io::Result<()> {
    host.remove(Path::new(SITE_PATH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_journal_round_trips_text_and_bytes() {
        let site = SiteInTest {
            site: "mysite".into(),
            rolling_back: false,
            available: Entry::File { content: Bytes::new(b"server {}\n".to_vec()), mode: 0o640, uid: 33, gid: 4 },
            enabled: Entry::Link { target: Bytes::new(b"../sites-available/mysite".to_vec()), uid: 0, gid: 0 },
            default: Some(Entry::File { content: Bytes::new(vec![0xff, 0, 1]), mode: 0o600, uid: 0, gid: 0 }),
        };
        let json = serde_json::to_string(&site).unwrap();
        assert!(json.contains(r#""content":"server {}\n""#), "{json}");
        let back: SiteInTest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, site);
        let Some(Entry::File { content, .. }) = &back.default else { panic!() };
        assert_eq!(content.as_slice(), [0xff, 0, 1]);
        let absent: Entry = serde_json::from_str(r#"{"kind":"absent"}"#).unwrap();
        assert_eq!(absent, Entry::Absent);
    }
}
