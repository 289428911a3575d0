//! `group`: a group account, created and changed with the shadow tools (groupadd, groupmod,
//! groupdel), which take `--root` for an offline root.

use crate::error::{Error, Result};
use crate::host::{GroupEntry, Host};
use crate::kinds::resource::{Change, Resource, State};
use crate::kinds::run_tool;
use crate::playbook::attrs::Attrs;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub name: String,
    pub state: State,
    pub gid: Option<u32>,
    pub system: bool,
}

impl Group {
    pub fn from_attrs(name: String, attrs: &mut Attrs) -> Option<Group> {
        let state = attrs.state();
        let gid = attrs.u32("gid");
        let system = attrs.bool("system").unwrap_or(false);
        Some(Group { name, state, gid, system })
    }
}

impl Resource for Group {
    type Actual = Option<GroupEntry>;

    fn observe(&self, host: &Host) -> Result<Option<GroupEntry>> {
        host.group(&self.name).map_err(|e| Error::resource_io(format!("group:{}", self.name), "cannot look it up", e))
    }

    fn diff(&self, actual: &Option<GroupEntry>) -> Vec<Change> {
        match (self.state, actual) {
            (State::Absent, None) => vec![],
            (State::Absent, Some(_)) => vec![Change::Remove],
            (State::Present, None) => {
                let mut changes = vec![Change::Create];
                changes.extend(self.gid.map(|gid| Change::Set { attr: "gid", from: None, to: gid.to_string() }));
                changes
            }
            (State::Present, Some(found)) => match self.gid {
                Some(gid) if gid != found.gid => {
                    vec![Change::Set { attr: "gid", from: Some(found.gid.to_string()), to: gid.to_string() }]
                }
                _ => vec![],
            },
        }
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let mut args: Vec<String> = Vec::new();
        let program = if changes.contains(&Change::Remove) {
            "groupdel"
        } else if changes.contains(&Change::Create) {
            if self.system {
                args.push("--system".into());
            }
            "groupadd"
        } else {
            "groupmod"
        };
        if let (true, Some(gid)) = (program != "groupdel", self.gid) {
            args.extend(["--gid".into(), gid.to_string()]);
        }
        // Options end here: the name is an operand, whatever it looks like.
        args.push("--".into());
        args.push(self.name.clone());
        let done =
            run_tool(host, program, &args).map_err(|message| Error::resource(format!("group:{}", self.name), message));
        host.forget_accounts();
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(gid: Option<u32>) -> Group {
        Group { name: "app".into(), state: State::Present, gid, system: true }
    }

    #[test]
    fn diffs() {
        let found = Some(GroupEntry { name: "app".into(), gid: 990, members: vec![] });
        assert_eq!(group(None).diff(&found), vec![]);
        assert_eq!(group(Some(990)).diff(&found), vec![]);
        assert_eq!(
            group(Some(991)).diff(&found),
            vec![Change::Set { attr: "gid", from: Some("990".into()), to: "991".into() }]
        );
        assert_eq!(group(None).diff(&None), vec![Change::Create]);
        let mut absent = group(None);
        absent.state = State::Absent;
        assert_eq!(absent.diff(&found), vec![Change::Remove]);
        assert_eq!(absent.diff(&None), vec![]);
    }
}
