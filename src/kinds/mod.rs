//! The kinds of resource a playbook can name, and what the engine needs to know of each: how to
//! build it from its attributes, what it needs first (for ordering), and how to plan and apply it.
//! Each kind lives in a file of its own and implements [`Resource`].

pub mod apt;
pub mod command;
pub mod directory;
pub mod file;
pub mod group;
pub mod nginx_site;
pub mod notify;
pub mod resource;
pub mod schema;
pub mod symlink;
pub mod table;
pub mod tmpfiles;
pub mod unit;
pub mod user;
pub mod virtualenv;

use std::path::Path;

use crate::error::Result;
use crate::host::systemd::JobAction;
use crate::host::{Host, Stat};
use crate::kinds::notify::Notify;
use crate::kinds::resource::{Change, Ownership, Resource, ResourceId};
use crate::playbook::attrs::Attrs;
use crate::playbook::yaml_node::Node;

pub use apt::Apt;
pub use command::Command;
pub use directory::Directory;
pub use file::File;
pub use group::Group;
pub use nginx_site::NginxSite;
pub use symlink::Symlink;
pub use tmpfiles::Tmpfiles;
pub use unit::Unit;
pub use user::User;
pub use virtualenv::Virtualenv;

/// Every kind key a playbook entry can start with (the names of `kinds::KINDS`).
pub const KINDS: &[&str] = &crate::kinds::table::names::<{ crate::kinds::table::KINDS.len() }>();

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AnyResource {
    File(File),
    Directory(Directory),
    Symlink(Symlink),
    User(User),
    Group(Group),
    Command(Command),
    Unit(Unit),
    Apt(Apt),
    NginxSite(NginxSite),
    Virtualenv(Virtualenv),
    Tmpfiles(Tmpfiles),
}

/// Calls the same method on whichever kind it is.
macro_rules! each_kind {
    ($value:expr, $r:ident => $body:expr) => {
        match $value {
            AnyResource::File($r) => $body,
            AnyResource::Directory($r) => $body,
            AnyResource::Symlink($r) => $body,
            AnyResource::User($r) => $body,
            AnyResource::Group($r) => $body,
            AnyResource::Command($r) => $body,
            AnyResource::Unit($r) => $body,
            AnyResource::Apt($r) => $body,
            AnyResource::NginxSite($r) => $body,
            AnyResource::Virtualenv($r) => $body,
            AnyResource::Tmpfiles($r) => $body,
        }
    };
}

impl AnyResource {
    /// Builds a resource of `kind` from its entry; errors go into `attrs`.
    pub fn from_attrs(kind: &'static str, name: &Node, attrs: &mut Attrs) -> Option<(ResourceId, AnyResource)> {
        // The kind's attributes are read even when its name is wrong, so that every mistake
        // of the entry is reported, and none of its keys is taken for an unknown one.
        let resource = match kind {
            "command" => {
                let argv = attrs.argv("command");
                AnyResource::Command(Command::from_attrs(argv, name.span, attrs)?)
            }
            "file" | "directory" | "symlink" => {
                let path = attrs.managed_path(kind, name);
                let at = name.span;
                let placeholder = path.clone().unwrap_or_default();
                let resource = match kind {
                    "file" => AnyResource::File(File::from_attrs(placeholder, at, attrs)?),
                    "directory" => AnyResource::Directory(Directory::from_attrs(placeholder, attrs)?),
                    _ => AnyResource::Symlink(Symlink::from_attrs(placeholder, at, attrs)?),
                };
                path.map(|_| resource)?
            }
            "user" | "group" => {
                let account = attrs.render_string(kind, name);
                let account = account.and_then(|n| check_account_name(attrs, kind, &n, name.span).then_some(n));
                let placeholder = account.clone().unwrap_or_default();
                let resource = match kind {
                    "user" => AnyResource::User(User::from_attrs(placeholder, attrs)?),
                    _ => AnyResource::Group(Group::from_attrs(placeholder, attrs)?),
                };
                account.map(|_| resource)?
            }
            "unit" => {
                let unit = attrs.render_string(kind, name);
                let resource = Unit::from_attrs(unit.clone().unwrap_or_default(), name.span, attrs)?;
                unit.map(|_| AnyResource::Unit(resource))?
            }
            "apt" => AnyResource::Apt(Apt::from_attrs(name, attrs)?),
            "nginx_site" => {
                let site = attrs.render_string(kind, name);
                let resource = NginxSite::from_attrs(site.clone().unwrap_or_default(), name.span, attrs)?;
                site.map(|_| AnyResource::NginxSite(resource))?
            }
            "virtualenv" => {
                let path = attrs.managed_path(kind, name);
                let resource = Virtualenv::from_attrs(path.clone().unwrap_or_default(), attrs)?;
                path.map(|_| AnyResource::Virtualenv(resource))?
            }
            "tmpfiles" => {
                let config = attrs.render_string(kind, name);
                let resource = Tmpfiles::from_attrs(config.clone().unwrap_or_default(), name.span, attrs)?;
                config.map(|_| AnyResource::Tmpfiles(resource))?
            }
            _ => unreachable!("unknown kind {kind}"),
        };
        Some((resource.id(), resource))
    }

    pub fn id(&self) -> ResourceId {
        match self {
            AnyResource::File(r) => ResourceId::new("file", &r.path.to_string_lossy()),
            AnyResource::Directory(r) => ResourceId::new("directory", &r.path.to_string_lossy()),
            AnyResource::Symlink(r) => ResourceId::new("symlink", &r.path.to_string_lossy()),
            AnyResource::User(r) => ResourceId::new("user", &r.name),
            AnyResource::Group(r) => ResourceId::new("group", &r.name),
            AnyResource::Command(r) => ResourceId(r.id()),
            AnyResource::Unit(r) => r.id(),
            AnyResource::Apt(r) => r.id(),
            AnyResource::NginxSite(r) => r.id(),
            AnyResource::Virtualenv(r) => ResourceId::new("virtualenv", &r.path.to_string_lossy()),
            AnyResource::Tmpfiles(r) => r.id(),
        }
    }

    /// The text it writes (a file's, a site's, a unit's), for what `sensitive` hides.
    pub fn content(&self) -> Option<String> {
        let content = match self {
            AnyResource::File(r) => r.content.as_ref(),
            AnyResource::NginxSite(r) => r.content.as_ref(),
            AnyResource::Unit(r) => r.content.as_ref(),
            _ => None,
        }?;
        Some(String::from_utf8_lossy(content.bytes()).into_owned())
    }

    /// The path it manages, for "parent directory first" ordering.
    pub fn path(&self) -> Option<&Path> {
        match self {
            AnyResource::File(r) => Some(&r.path),
            AnyResource::Directory(r) => Some(&r.path),
            AnyResource::Symlink(r) => Some(&r.path),
            AnyResource::Command(r) => r.creates.as_deref(),
            AnyResource::Virtualenv(r) => Some(&r.path),
            AnyResource::User(_)
            | AnyResource::Group(_)
            | AnyResource::Unit(_)
            | AnyResource::Apt(_)
            | AnyResource::NginxSite(_)
            | AnyResource::Tmpfiles(_) => None,
        }
    }

    /// The directory that must exist before it can be applied (files and symlinks; a
    /// `directory` makes its missing parents itself).
    pub fn parent_needed(&self) -> Option<&Path> {
        match self {
            AnyResource::File(File { path, state: crate::kinds::resource::State::Present, .. })
            | AnyResource::Symlink(Symlink { path, state: crate::kinds::resource::State::Present, .. })
            | AnyResource::Virtualenv(Virtualenv { path, state: crate::kinds::resource::State::Present, .. }) => {
                path.parent()
            }
            _ => None,
        }
    }

    /// The users and groups it needs to exist, by id (`user:NAME`, `group:NAME`).
    pub fn needs(&self) -> Vec<ResourceId> {
        let ownership = |o: &Ownership| {
            let users = o.owner.iter().map(|u| ResourceId::new("user", u));
            users.chain(o.group.iter().map(|g| ResourceId::new("group", g))).collect()
        };
        match self {
            AnyResource::File(r) => ownership(&r.ownership),
            AnyResource::Directory(r) => ownership(&r.ownership),
            AnyResource::Virtualenv(r) => ownership(&r.ownership),
            AnyResource::User(r) => r.group.iter().chain(&r.groups).map(|g| ResourceId::new("group", g)).collect(),
            AnyResource::Tmpfiles(r) => r.needs(),
            AnyResource::Symlink(_)
            | AnyResource::Group(_)
            | AnyResource::Command(_)
            | AnyResource::Unit(_)
            | AnyResource::Apt(_)
            | AnyResource::NginxSite(_) => Vec::new(),
        }
    }

    /// Triggers a change of this resource always sets off, besides its `notify:`: a changed
    /// nginx site reloads nginx, or starts it when it is not running.
    pub fn implicit_notify(&self) -> Vec<Notify> {
        match self {
            AnyResource::NginxSite(_) => [JobAction::Reload, JobAction::Start]
                .into_iter()
                .map(|action| Notify { action, unit: "nginx.service".into() })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The packages an `apt` resource installs, for "packages before what uses them" ordering.
    pub fn packages(&self) -> &[String] {
        match self {
            AnyResource::Apt(apt) if apt.state == crate::kinds::resource::State::Present => &apt.packages,
            _ => &[],
        }
    }

    /// Packages this resource needs installed first: `nginx` for a site.
    pub fn needs_packages(&self) -> &'static [&'static str] {
        match self {
            AnyResource::NginxSite(_) => &["nginx", "nginx-light", "nginx-full", "nginx-extras"],
            AnyResource::Virtualenv(_) => &["python3", "python3-venv", "python3-pip"],
            _ => &[],
        }
    }

    /// Observes the host and diffs against it: the resource's planned changes.
    pub fn plan(&self, host: &Host) -> Result<Vec<Change>> {
        each_kind!(self, r => Ok(r.diff(&r.observe(host)?)))
    }

    pub fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        each_kind!(self, r => r.apply(changes, host))
    }
}

/// Owner and group names of what `stat` describes.
pub fn observe_owner(host: &Host, stat: &Stat) -> std::io::Result<(String, String)> {
    Ok((host.user_name(stat.uid)?, host.group_name(stat.gid)?))
}

/// The uid and gid to give a file: the desired ones by name, else what it has, else ours.
pub fn owner_ids(host: &Host, ownership: &Ownership, current: Option<&Stat>) -> std::io::Result<(u32, u32)> {
    let uid = match &ownership.owner {
        Some(name) => host.uid(name)?,
        None => current.map(|s| s.uid).unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
    };
    let gid = match &ownership.group {
        Some(name) => host.gid(name)?,
        None => current.map(|s| s.gid).unwrap_or_else(|| nix::unistd::getegid().as_raw()),
    };
    Ok((uid, gid))
}

/// Whether `name` can be a user or group name as useradd(8) and groupadd(8) accept it on
/// Debian (NAME_REGEX `^[a-z_][a-z0-9_-]*[$]?$`, at most 32 characters): never empty, never an
/// option (`-ou0`), never a list (`a,b`) or a path.
pub fn account_name_problem(name: &str) -> Option<&'static str> {
    let body = name.strip_suffix('$').unwrap_or(name);
    if name.is_empty() {
        Some("a name cannot be empty")
    } else if name.len() > 32 {
        Some("a name has at most 32 characters")
    } else if !body.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        Some("a name starts with a lowercase letter or _")
    } else if !body.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        Some("a name holds only lowercase letters, digits, _ and - (and may end with $)")
    } else {
        None
    }
}

/// Reports `name` (of a user or group, for `what`) when it is not a valid account name.
pub fn check_account_name(attrs: &mut Attrs, what: &str, name: &str, span: crate::playbook::yaml_node::Span) -> bool {
    let Some(problem) = account_name_problem(name) else { return true };
    let shown = crate::error::escape(name);
    attrs.error(
        span,
        format!("`{shown}` is not a valid {what} name"),
        problem,
        "user and group names follow useradd(8): lowercase letters, digits, _ and -, starting with a letter or _ (such as `app` or `www-data`)",
    );
    false
}

/// Runs a shadow tool (useradd, groupmod, ...), with `--root` for an offline root; the error is
/// the tool's own message.
pub fn run_tool(host: &Host, program: &str, args: &[String]) -> Result<(), String> {
    let mut command = host.tool(&[program]).env("LC_ALL", "C").command();
    if let Some(root) = host.root() {
        command.arg("--root").arg(root);
    }
    let output = command.args(args).output().map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!("{program} {} failed ({}): {}", shell_words::join(args), output.status, stderr.trim()))
}
