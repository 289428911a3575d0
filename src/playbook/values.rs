//! Values that the playbook gives and the kinds act on: whether a thing should exist, and who
//! owns it. They live here, below the kinds, so that `attrs.rs` can read them without knowing
//! any kind.

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
