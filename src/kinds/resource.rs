//! The resource contract: the core of converge.
//!
//! A resource is one thing on the host that a playbook describes (a file, a user, a unit). It is
//! converged in three separate steps, so that what is read, what is compared and what is written
//! never mix (mgmt's `CheckApply(apply bool)` does all three in one function):
//!
//! - `observe` reads the host and nothing else;
//! - `diff` compares the desired state with an observation: pure, so it is unit-tested with
//!   hand-built observations and no filesystem;
//! - `apply` makes exactly the changes that `diff` returned.
//!
//! A resource is converged when `diff(observe())` is empty, and that holds right after `apply`.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::host::Host;

pub trait Resource {
    /// What `observe` found on the host.
    type Actual: fmt::Debug;

    /// Reads the host; never writes.
    fn observe(&self, host: &Host) -> Result<Self::Actual>;

    /// The changes that would bring `actual` to the desired state; empty when converged.
    fn diff(&self, actual: &Self::Actual) -> Vec<Change>;

    /// Makes `changes` (which `diff` returned) on the host.
    fn apply(&self, changes: &[Change], host: &Host) -> Result<()>;
}

/// What a resource is called in plans, in `after:` and in triggers: `kind:name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ResourceId(pub String);

impl ResourceId {
    pub fn new(kind: &str, name: &str) -> ResourceId {
        ResourceId(format!("{kind}:{name}"))
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One difference between the host and the playbook.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The thing does not exist and will be created with the desired attributes.
    Create,
    /// The thing exists and will be removed.
    Remove,
    /// The content differs (`from` is None when there is none yet). `file` names the file when
    /// the resource has several (a unit's drop-ins); None is the resource's own path.
    Content { file: Option<std::path::PathBuf>, from: Option<Content>, to: Content },
    /// A named attribute differs: mode, owner, shell, symlink target, ...
    Set { attr: &'static str, from: Option<String>, to: String },
    /// A command will run, and why.
    Run { reason: String },
}

/// File content, shared cheaply between the desired state, the observation and the plan; or,
/// for a file on the host too big to read into memory, only its size and sha256 (it can never
/// equal content of the playbook, which is read into memory).
#[derive(Clone, PartialEq, Eq)]
pub enum Content {
    Bytes(Arc<[u8]>),
    Large { len: u64, sha256: String },
}

impl Content {
    /// The bytes (none for a large file known by its digest).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Content::Bytes(bytes) => bytes,
            Content::Large { .. } => &[],
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::Large { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn sha256(&self) -> String {
        match self {
            Content::Bytes(bytes) => crate::host::hex(&Sha256::digest(bytes)),
            Content::Large { sha256, .. } => sha256.clone(),
        }
    }

    /// Text that a unified diff can show: UTF-8, no NUL bytes, not too big.
    pub fn as_text(&self) -> Option<&str> {
        const LIMIT: usize = 256 * 1024;
        let Content::Bytes(bytes) = self else { return None };
        if bytes.len() > LIMIT || bytes.contains(&0) {
            return None;
        }
        std::str::from_utf8(bytes).ok()
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_text() {
            Some(text) if text.len() < 80 => write!(f, "Content({text:?})"),
            _ => write!(f, "Content({} bytes)", self.len()),
        }
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Content {
        Content::Bytes(Arc::from(text.as_bytes()))
    }
}

impl From<Vec<u8>> for Content {
    fn from(bytes: Vec<u8>) -> Content {
        Content::Bytes(Arc::from(bytes))
    }
}

/// Whether a resource should exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Present,
    Absent,
}

/// Owner and group by name, as the playbook gives them (compared by name so that a plan can
/// speak of a user that an earlier resource will create).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ownership {
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl Ownership {
    /// `Set` changes for the owner and group that differ from what was observed.
    pub fn diff(&self, owner: &str, group: &str) -> Vec<Change> {
        let mut changes = Vec::new();
        if let Some(want) = self.owner.as_deref().filter(|w| *w != owner) {
            changes.push(Change::Set { attr: "owner", from: Some(owner.into()), to: want.into() });
        }
        if let Some(want) = self.group.as_deref().filter(|w| *w != group) {
            changes.push(Change::Set { attr: "group", from: Some(group.into()), to: want.into() });
        }
        changes
    }
}
