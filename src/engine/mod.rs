//! The engine: a resolved playbook planned against the host and applied, and what the changes
//! set off. `resolve` builds typed resources and `graph` orders them, `plan` observes and diffs
//! them, `apply` changes only what differs, `trigger` and `journal` carry daemon-reloads and
//! restarts across runs, `on_change` decides the commands that follow a change, `saved` and `runs` keep reviewed plans and what each run changed (for rollback), `lock`
//! keeps two runs apart and `stop` lets SIGTERM end a run between steps.
//!
//! It uses the kinds, the playbook layer and the Host; it never imports output/, remote/ or the
//! command line, and must not print: it reports records (`record`) to a `record::Sink`, which
//! output/ implements.

pub mod apply;
pub mod graph;
pub mod journal;
pub mod lock;
pub mod on_change;
pub mod plan;
pub mod record;
pub mod resolve;
pub mod rollback;
pub mod runs;
pub mod saved;
pub mod stop;
pub mod trigger;
