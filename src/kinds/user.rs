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
use crate::kinds::resource::{Change, Resource, State};
use crate::kinds::{check_account_name, run_tool};
use crate::playbook::attrs::Attrs;

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

impl User {
    pub fn from_attrs(name: String, attrs: &mut Attrs) -> Option<User> {
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
        Some(User { name, state, uid, group, groups, append, home, shell, system, create_home })
    }
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

impl Resource for User {
    type Actual = Option<UserActual>;

    fn observe(&self, host: &Host) -> Result<Option<UserActual>> {
        let io = |e| Error::resource_io(format!("user:{}", self.name), "cannot look it up", e);
        let Some(entry) = host.user(&self.name).map_err(io)? else {
            return Ok(None);
        };
        let group = host.group_name(entry.gid).map_err(io)?;
        let groups = host.groups_of(&self.name).map_err(io)?;
        Ok(Some(UserActual { entry, group, groups }))
    }

    fn diff(&self, actual: &Option<UserActual>) -> Vec<Change> {
        let set =
            |attr, from: Option<&str>, to: &str| Change::Set { attr, from: from.map(str::to_owned), to: to.to_owned() };
        match (self.state, actual) {
            (State::Absent, None) => vec![],
            (State::Absent, Some(_)) => vec![Change::Remove],
            (State::Present, None) => {
                let mut changes = vec![Change::Create];
                changes.extend(self.uid.map(|uid| set("uid", None, &uid.to_string())));
                changes.extend(self.group.as_deref().map(|g| set("group", None, g)));
                if !self.groups.is_empty() {
                    changes.push(set("groups", None, &self.groups.join(",")));
                }
                changes.extend(self.home.as_deref().map(|h| set("home", None, h)));
                changes.extend(self.shell.as_deref().map(|s| set("shell", None, s)));
                changes
            }
            (State::Present, Some(actual)) => {
                let mut changes = Vec::new();
                if let Some(uid) = self.uid.filter(|uid| *uid != actual.entry.uid) {
                    changes.push(set("uid", Some(&actual.entry.uid.to_string()), &uid.to_string()));
                }
                if let Some(group) = self.group.as_deref().filter(|g| *g != actual.group) {
                    changes.push(set("group", Some(&actual.group), group));
                }
                let missing = self.groups.iter().any(|g| !actual.groups.contains(g));
                let extra = !self.append && actual.groups.iter().any(|g| !self.groups.contains(g));
                if missing || extra {
                    let mut all: Vec<String> = actual.groups.clone();
                    if !self.append {
                        all.retain(|g| self.groups.contains(g));
                    }
                    all.extend(self.groups.iter().filter(|g| !actual.groups.contains(g)).cloned());
                    changes.push(set("groups", Some(&actual.groups.join(",")), &all.join(",")));
                }
                if let Some(home) = self.home.as_deref().filter(|h| *h != actual.entry.home) {
                    changes.push(set("home", Some(&actual.entry.home), home));
                }
                if let Some(shell) = self.shell.as_deref().filter(|s| *s != actual.entry.shell) {
                    changes.push(set("shell", Some(&actual.entry.shell), shell));
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
            if let Change::Set { attr, .. } = change {
                match *attr {
                    "uid" => args.extend(["--uid".into(), self.uid.unwrap_or_default().to_string()]),
                    "group" => args.extend(["--gid".into(), self.group.clone().unwrap_or_default()]),
                    "groups" if program == "usermod" && self.append => {
                        args.extend(["--append".into(), "--groups".into(), self.groups.join(",")])
                    }
                    "groups" => args.extend(["--groups".into(), self.groups.join(",")]),
                    "home" => args.extend(["--home".into(), self.home.clone().unwrap_or_default()]),
                    "shell" => args.extend(["--shell".into(), self.shell.clone().unwrap_or_default()]),
                    _ => {}
                }
            }
        }
        // useradd spells it --home-dir; usermod --home.
        if program == "useradd" {
            args.iter_mut().filter(|a| *a == "--home").for_each(|a| *a = "--home-dir".into());
        }
        // Options end here: the name is an operand, whatever it looks like.
        args.push("--".into());
        args.push(self.name.clone());
        let done =
            run_tool(host, program, &args).map_err(|message| Error::resource(format!("user:{}", self.name), message));
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
                Change::Set { attr: "groups", from: Some("adm".into()), to: "adm,sudo".into() },
                Change::Set { attr: "shell", from: Some("/bin/sh".into()), to: "/bin/bash".into() },
            ]
        );
    }

    #[test]
    fn append_false_makes_the_list_exact() {
        let exact = User { append: false, ..user() };
        assert_eq!(exact.diff(&actual("www-data", &["sudo"], "/bin/bash")), vec![]);
        assert_eq!(
            exact.diff(&actual("www-data", &["adm", "sudo", "docker"], "/bin/bash")),
            vec![Change::Set { attr: "groups", from: Some("adm,sudo,docker".into()), to: "sudo".into() }]
        );
        assert_eq!(
            exact.diff(&actual("www-data", &["adm"], "/bin/bash")),
            vec![Change::Set { attr: "groups", from: Some("adm".into()), to: "sudo".into() }]
        );
    }

    #[test]
    fn created_and_removed() {
        let changes = user().diff(&None);
        assert_eq!(changes[0], Change::Create);
        assert!(changes.contains(&Change::Set { attr: "group", from: None, to: "www-data".into() }));
        let mut gone = user();
        gone.state = State::Absent;
        assert_eq!(gone.diff(&actual("www-data", &[], "/bin/bash")), vec![Change::Remove]);
        assert_eq!(gone.diff(&None), vec![]);
    }
}
