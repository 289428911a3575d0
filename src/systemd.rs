//! TEMPORARY STUB: replaced by the zbus client (helper) — same API.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("{0}")]
    Other(String),
}
pub struct Systemd;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Start,
    Stop,
    Restart,
    Reload,
}
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitStatus {
    pub name: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub unit_file_state: String,
    pub need_daemon_reload: bool,
    pub triggered_by: Vec<String>,
    pub triggers: Vec<String>,
    pub invocation_id: String,
    pub can_reload: bool,
    pub fragment_path: String,
    pub runtime_directory: Vec<String>,
    pub runtime_directory_preserve: String,
    pub listen: Vec<(String, String)>,
}
impl Systemd {
    pub fn connect() -> Result<Option<Systemd>, SystemdError> {
        Ok(None)
    }
    pub fn units(&self, _names: &[String]) -> Result<Vec<UnitStatus>, SystemdError> {
        todo!()
    }
    pub fn daemon_reload(&self) -> Result<(), SystemdError> {
        todo!()
    }
    pub fn run_jobs(&self, _jobs: &[(JobAction, String)]) -> Result<(), SystemdError> {
        todo!()
    }
    pub fn enable(&self, _units: &[String]) -> Result<(), SystemdError> {
        todo!()
    }
    pub fn disable(&self, _units: &[String]) -> Result<(), SystemdError> {
        todo!()
    }
    pub fn mask(&self, _units: &[String]) -> Result<(), SystemdError> {
        todo!()
    }
    pub fn unmask(&self, _units: &[String]) -> Result<(), SystemdError> {
        todo!()
    }
}
