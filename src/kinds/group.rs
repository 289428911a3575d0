//! `group`: a group account, created and changed with the shadow tools (groupadd, groupmod,
//! groupdel), which take `--root` for an offline root.

use crate::error::{Error, Result};
use crate::host::{GroupEntry, Host};
use crate::kinds::resource::{Attr, Change, Overlap, Resource, State};
use crate::kinds::user::account_name;
use crate::kinds::{Kind, run_tool};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{STATE, Table, Type, attr};
use crate::playbook::yaml_node::Node;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub name: String,
    pub state: State,
    pub gid: Option<u32>,
    pub system: bool,
}

impl Resource for Group {
    type Actual = Option<GroupEntry>;

    const KIND: Kind = Kind::Group;

    const TABLE: Table = Table {
        names: Type::String,
        doc: "a group (groupadd, groupmod, groupdel)",
        attrs: &[
            STATE,
            attr("gid", Type::Uint, "the group id"),
            attr("system", Type::Bool, "a system group (default false)"),
        ],
    };

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<Group> {
        let name = account_name(Self::KIND, name, attrs);
        let state = attrs.state();
        let gid = attrs.u32("gid");
        let system = attrs.bool("system").unwrap_or(false);
        Some(Group { name: name?, state, gid, system })
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn not_restored(&self) -> Option<&'static str> {
        Some("a group is not restored")
    }

    /// An account: beside long work, in the playbook's order.
    fn overlap(&self) -> Overlap {
        Overlap::Beside
    }

    fn observe(&self, host: &Host) -> Result<Option<GroupEntry>> {
        host.group(&self.name).map_err(|e| Error::resource_io(self.id(), "cannot look it up", e))
    }

    fn diff(&self, actual: &Option<GroupEntry>) -> Vec<Change> {
        match (self.state, actual) {
            (State::Absent, None) => vec![],
            (State::Absent, Some(_)) => vec![Change::Remove],
            (State::Present, None) => {
                let mut changes = vec![Change::Create];
                changes.extend(self.gid.map(|gid| Change::set_to(Attr::Gid, gid)));
                changes
            }
            (State::Present, Some(found)) => match self.gid {
                Some(gid) if gid != found.gid => {
                    vec![Change::set(Attr::Gid, Some(found.gid), gid)]
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
        let done = run_tool(host, program, &args).map_err(|message| Error::resource(self.id(), message));
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
        assert_eq!(group(Some(991)).diff(&found), vec![Change::set(Attr::Gid, Some(990), 991)]);
        assert_eq!(group(None).diff(&None), vec![Change::Create]);
        let mut absent = group(None);
        absent.state = State::Absent;
        assert_eq!(absent.diff(&found), vec![Change::Remove]);
        assert_eq!(absent.diff(&None), vec![]);
    }
}
