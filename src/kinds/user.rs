//! `user`: a user account, created and changed with the shadow tools (useradd, usermod, userdel),
//! which take `--root` for an offline root; observed through NSS (nix) or DIR/etc/passwd.
//!
//! `groups` lists supplementary groups the user must be in. With `append: true` (the default, as
//! Ansible's `append`) the groups it is in besides those are left alone (`usermod --append`), so
//! a playbook never takes `sudo` away by omission; with `append: false` the list is exact and
//! converge removes the user from the others (`usermod --groups`). The plan shows both.
//! `state: absent` removes the account but keeps its home directory.

use crate::error::{Error, Result};
use crate::host::{Host, UserEntry};
use crate::kinds::resource::{Attr, Change, Need, Overlap, Resource, State, Value};
use crate::kinds::{Kind, check_account_name, run_tool};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{STATE, Table, Type, attr};
use crate::playbook::yaml_node::Node;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub name: String,
    pub state: State,
    pub uid: Option<u32>,
    /// The primary group.
    pub group: Option<String>,
    pub groups: Vec<String>,
    /// Add `groups` to the user's others (true), or make them exactly `groups` (false).
    pub append: bool,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub system: bool,
    pub create_home: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserActual {
    pub entry: UserEntry,
    pub group: String,
    pub groups: Vec<String>,
}

/// `home` or `shell`: an absolute path that fits in a passwd(5) field (no `:`, no newline).
fn passwd_path(attrs: &mut Attrs, key: &'static str) -> Option<String> {
    let node = attrs.node(key)?;
    let path = attrs.render_string(key, node)?;
    if !path.starts_with('/') || path.contains(':') || path.chars().any(char::is_control) {
        let shown = crate::error::escape(&path).into_owned();
        attrs.error(
            node.span,
            format!("`{shown}` is not a valid {key}"),
            "expected an absolute path without `:`",
            format!("write the full path, such as {}", if key == "home" { "/home/app" } else { "/bin/bash" }),
        );
        return None;
    }
    Some(path)
}

/// A user or group name (the kind key's value), checked as useradd(8) would.
pub fn account_name(kind: Kind, name: &Node, attrs: &mut Attrs) -> Option<String> {
    let account = attrs.render_string(kind.name(), name)?;
    check_account_name(attrs, kind.name(), &account, name.span).then_some(account)
}

impl Resource for User {
    type Actual = Option<UserActual>;

    const KIND: Kind = Kind::User;

    const TABLE: Table = Table {
        names: Type::String,
        doc: "a user account (useradd, usermod, userdel)",
        attrs: &[
            STATE,
            attr("uid", Type::Uint, "the user id"),
            attr("group", Type::String, "the primary group"),
            attr("groups", Type::Strings, "supplementary groups"),
            attr(
                "append",
                Type::Bool,
                "true (default): add `groups` and leave the user's other groups alone; false: make the list exact",
            ),
            attr("home", Type::String, "the home directory"),
            attr("shell", Type::String, "the login shell"),
            attr("system", Type::Bool, "a system account (default false)"),
            attr("create_home", Type::Bool, "create the home directory (default: true unless system)"),
        ],
    };

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<User> {
        let name = account_name(Self::KIND, name, attrs);
        let state = attrs.state();
        let uid = attrs.u32("uid");
        let group = attrs.node("group").and_then(|node| {
            let group = attrs.render_string("group", node)?;
            check_account_name(attrs, "group", &group, node.span).then_some(group)
        });
        let groups = attrs
            .strings("groups")
            .into_iter()
            .filter(|(g, span)| check_account_name(attrs, "group", g, *span))
            .map(|(g, _)| g)
            .collect();
        let home = passwd_path(attrs, "home");
        let shell = passwd_path(attrs, "shell");
        let append = attrs.bool("append").unwrap_or(true);
        let system = attrs.bool("system").unwrap_or(false);
        let create_home = attrs.bool("create_home").unwrap_or(!system);
        Some(User { name: name?, state, uid, group, groups, append, home, shell, system, create_home })
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn needs(&self) -> Vec<Need> {
        self.group.iter().chain(&self.groups).map(|g| Need::Group(g.clone())).collect()
    }

    fn not_restored(&self) -> Option<&'static str> {
        Some("a user account is not restored (its removal could orphan files)")
    }

    /// An account: beside long work, in the playbook's order.
    fn overlap(&self) -> Overlap {
        Overlap::Beside
    }

    fn observe(&self, host: &Host) -> Result<Option<UserActual>> {
        let io = |e| Error::resource_io(self.id(), "cannot look it up", e);
        let Some(entry) = host.user(&self.name).map_err(io)? else {
            return Ok(None);
        };
        let group = host.group_name(entry.gid).map_err(io)?;
        let groups = host.groups_of(&self.name).map_err(io)?;
        Ok(Some(UserActual { entry, group, groups }))
    }

    fn diff(&self, actual: &Option<UserActual>) -> Vec<Change> {
        let names = |names: &[String]| Value::Names(names.to_vec());
        match (self.state, actual) {
            (State::Absent, None) => vec![],
            (State::Absent, Some(_)) => vec![Change::Remove],
            (State::Present, None) => {
                let mut changes = vec![Change::Create];
                changes.extend(self.uid.map(|uid| Change::set_to(Attr::Uid, uid)));
                changes.extend(self.group.as_deref().map(|g| Change::set_to(Attr::Group, g)));
                if !self.groups.is_empty() {
                    changes.push(Change::set_to(Attr::Groups, names(&self.groups)));
                }
                changes.extend(self.home.as_deref().map(|h| Change::set_to(Attr::Home, h)));
                changes.extend(self.shell.as_deref().map(|s| Change::set_to(Attr::Shell, s)));
                changes
            }
            (State::Present, Some(actual)) => {
                let mut changes = Vec::new();
                if let Some(uid) = self.uid.filter(|uid| *uid != actual.entry.uid) {
                    changes.push(Change::set(Attr::Uid, Some(actual.entry.uid), uid));
                }
                if let Some(group) = self.group.as_deref().filter(|g| *g != actual.group) {
                    changes.push(Change::set(Attr::Group, Some(&actual.group), group));
                }
                let missing = self.groups.iter().any(|g| !actual.groups.contains(g));
                let extra = !self.append && actual.groups.iter().any(|g| !self.groups.contains(g));
                if missing || extra {
                    let mut all: Vec<String> = actual.groups.clone();
                    if !self.append {
                        all.retain(|g| self.groups.contains(g));
                    }
                    all.extend(self.groups.iter().filter(|g| !actual.groups.contains(g)).cloned());
                    changes.push(Change::set(Attr::Groups, Some(names(&actual.groups)), names(&all)));
                }
                if let Some(home) = self.home.as_deref().filter(|h| *h != actual.entry.home) {
                    changes.push(Change::set(Attr::Home, Some(&actual.entry.home), home));
                }
                if let Some(shell) = self.shell.as_deref().filter(|s| *s != actual.entry.shell) {
                    changes.push(Change::set(Attr::Shell, Some(&actual.entry.shell), shell));
                }
                changes
            }
        }
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let mut args: Vec<String> = Vec::new();
        let program = if changes.contains(&Change::Remove) {
            "userdel"
        } else if changes.contains(&Change::Create) {
            if self.system {
                args.push("--system".into());
            }
            args.push(if self.create_home { "--create-home" } else { "--no-create-home" }.into());
            if self.group.is_none() {
                args.push("--user-group".into());
            }
            "useradd"
        } else {
            "usermod"
        };
        for change in changes {
            let Change::Set { attr, .. } = change else { continue };
            match attr {
                Attr::Uid => args.extend(["--uid".into(), self.uid.unwrap_or_default().to_string()]),
                Attr::Group => args.extend(["--gid".into(), self.group.clone().unwrap_or_default()]),
                Attr::Groups if program == "usermod" && self.append => {
                    args.extend(["--append".into(), "--groups".into(), self.groups.join(",")])
                }
                Attr::Groups => args.extend(["--groups".into(), self.groups.join(",")]),
                // useradd spells it --home-dir; usermod --home.
                Attr::Home if program == "useradd" => {
                    args.extend(["--home-dir".into(), self.home.clone().unwrap_or_default()])
                }
                Attr::Home => args.extend(["--home".into(), self.home.clone().unwrap_or_default()]),
                Attr::Shell => args.extend(["--shell".into(), self.shell.clone().unwrap_or_default()]),
                _ => {}
            }
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

    fn user() -> User {
        User {
            name: "app".into(),
            state: State::Present,
            uid: None,
            group: Some("www-data".into()),
            groups: vec!["sudo".into()],
            append: true,
            home: Some("/srv/app".into()),
            shell: Some("/bin/bash".into()),
            system: true,
            create_home: false,
        }
    }

    fn names(names: &[&str]) -> Value {
        Value::Names(names.iter().map(|n| n.to_string()).collect())
    }

    fn actual(group: &str, groups: &[&str], shell: &str) -> Option<UserActual> {
        Some(UserActual {
            entry: UserEntry { name: "app".into(), uid: 999, gid: 33, home: "/srv/app".into(), shell: shell.into() },
            group: group.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
    }

    #[test]
    fn converged_user_with_extra_groups() {
        assert_eq!(user().diff(&actual("www-data", &["adm", "sudo"], "/bin/bash")), vec![]);
    }

    #[test]
    fn missing_group_and_shell() {
        let changes = user().diff(&actual("www-data", &["adm"], "/bin/sh"));
        assert_eq!(
            changes,
            vec![
                Change::set(Attr::Groups, Some(names(&["adm"])), names(&["adm", "sudo"])),
                Change::set(Attr::Shell, Some("/bin/sh"), "/bin/bash"),
            ]
        );
    }

    #[test]
    fn append_false_makes_the_list_exact() {
        let exact = User { append: false, ..user() };
        assert_eq!(exact.diff(&actual("www-data", &["sudo"], "/bin/bash")), vec![]);
        assert_eq!(
            exact.diff(&actual("www-data", &["adm", "sudo", "docker"], "/bin/bash")),
            vec![Change::set(Attr::Groups, Some(names(&["adm", "sudo", "docker"])), names(&["sudo"]))]
        );
        assert_eq!(
            exact.diff(&actual("www-data", &["adm"], "/bin/bash")),
            vec![Change::set(Attr::Groups, Some(names(&["adm"])), names(&["sudo"]))]
        );
    }

    #[test]
    fn created_and_removed() {
        let changes = user().diff(&None);
        assert_eq!(changes[0], Change::Create);
        assert!(changes.contains(&Change::set_to(Attr::Group, "www-data")));
        let mut gone = user();
        gone.state = State::Absent;
        assert_eq!(gone.diff(&actual("www-data", &[], "/bin/bash")), vec![Change::Remove]);
        assert_eq!(gone.diff(&None), vec![]);
    }
}
