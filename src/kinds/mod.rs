//! The kinds of resource a playbook can name, and what the engine needs to know of each: how to
//! build it from its attributes, what it needs first (for ordering), and how to plan and apply it.
//! Each kind lives in a file of its own and implements [`Resource`]; the registry below names
//! them all. Adding a kind: its file (its struct, its attribute [`Table`], `impl Resource`) and
//! one line in `registry!`.
//!
//! Kinds import the playbook layer (attributes, templates) and the host; never the engine, the
//! output, remote/ or the command line.

pub mod notify;
pub mod resource;
pub mod schema;
pub mod validate;

use std::path::PathBuf;

use crate::error::Result;
use crate::host::{Host, Stat};
use crate::kinds::notify::Notify;
use crate::kinds::resource::{Change, Content, Need, Overlap, Ownership, Provide, Resource, ResourceId, Unmerged};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::Table;
use crate::playbook::yaml_node::{Node, Span};

/// The registry: one line per kind, `Variant(module::Type) = "playbook name"`, in the order
/// `converge schema` and the error messages list them. It declares the kind's module
/// (`kinds/module.rs`) and makes [`Kind`], [`AnyResource`] (which serializes with its kind's name
/// as `"kind"`) and the dispatch of [`Resource`]'s methods.
macro_rules! registry {
    ($($variant:ident($module:ident::$ty:ident) = $name:literal,)*) => {
        $(pub mod $module;)*
        $(pub use $module::$ty;)*

        /// A kind of resource, by the name a playbook gives it (`nginx_site`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($variant,)*
        }

        impl Kind {
            /// Every kind, in the registry's order.
            pub const ALL: &[Kind] = &[$(Kind::$variant,)*];

            /// Every kind's name, in the registry's order.
            pub const NAMES: &[&str] = &[$($name,)*];

            /// Its name in playbooks and ids.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// Its attributes.
            pub fn table(self) -> &'static Table {
                match self {
                    $(Kind::$variant => &<$ty as Resource>::TABLE,)*
                }
            }

            /// Builds a resource of this kind from its entry; errors go into `attrs`.
            fn build(self, name: &Node, attrs: &mut Attrs) -> Option<AnyResource> {
                match self {
                    $(Kind::$variant => <$ty as Resource>::from_attrs(name, attrs).map(AnyResource::$variant),)*
                }
            }
        }

        /// A resource of any kind.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "kind")]
        pub enum AnyResource {
            $(#[serde(rename = $name)] $variant($ty),)*
        }

        impl AnyResource {
            /// Its kind.
            pub fn kind(&self) -> Kind {
                match self {
                    $(AnyResource::$variant(_) => Kind::$variant,)*
                }
            }

            /// See [`Resource::id`].
            pub fn id(&self) -> ResourceId {
                match self {
                    $(AnyResource::$variant(r) => r.id(),)*
                }
            }

            /// See [`Resource::needs`].
            pub fn needs(&self) -> Vec<Need> {
                match self {
                    $(AnyResource::$variant(r) => r.needs(),)*
                }
            }

            /// See [`Resource::provides`].
            pub fn provides(&self) -> Vec<Provide> {
                match self {
                    $(AnyResource::$variant(r) => r.provides(),)*
                }
            }

            /// See [`Resource::merge`]; entries of two kinds never merge.
            pub fn merge(&mut self, other: &AnyResource) -> Result<(), Unmerged> {
                match (self, other) {
                    $((AnyResource::$variant(r), AnyResource::$variant(o)) => r.merge(o),)*
                    _ => Err(Unmerged::Duplicate),
                }
            }

            /// See [`Resource::names_ids`].
            pub fn names_ids(&self) -> Vec<(&ResourceId, Span)> {
                match self {
                    $(AnyResource::$variant(r) => r.names_ids(),)*
                }
            }

            /// See [`Resource::content`].
            pub fn content(&self) -> Option<&Content> {
                match self {
                    $(AnyResource::$variant(r) => Resource::content(r),)*
                }
            }

            /// See [`Resource::implicit_notify`].
            pub fn implicit_notify(&self) -> Vec<Notify> {
                match self {
                    $(AnyResource::$variant(r) => r.implicit_notify(),)*
                }
            }

            /// See [`Resource::paths`].
            pub fn paths(&self) -> Vec<PathBuf> {
                match self {
                    $(AnyResource::$variant(r) => r.paths(),)*
                }
            }

            /// What its observation found, for a saved plan: None when the facts of its paths
            /// tell all ([`Resource::PATHS_TELL_ALL`]).
            pub fn observed(&self, host: &Host) -> Result<Option<String>> {
                match self {
                    $(AnyResource::$variant(r) => match <$ty as Resource>::PATHS_TELL_ALL {
                        true => Ok(None),
                        false => Ok(Some(format!("{:?}", r.observe(host)?))),
                    },)*
                }
            }

            /// See [`Resource::not_restored`].
            pub fn not_restored(&self) -> Option<&'static str> {
                match self {
                    $(AnyResource::$variant(r) => r.not_restored(),)*
                }
            }

            /// See [`Resource::slow_step`].
            pub fn slow_step(&self) -> Option<&'static str> {
                match self {
                    $(AnyResource::$variant(r) => r.slow_step(),)*
                }
            }

            /// See [`Resource::overlap`].
            pub fn overlap(&self) -> Overlap {
                match self {
                    $(AnyResource::$variant(r) => r.overlap(),)*
                }
            }

            /// See [`Resource::needs_now`].
            pub fn needs_now(&self, host: &Host) -> Result<Vec<Need>> {
                match self {
                    $(AnyResource::$variant(r) => r.needs_now(host),)*
                }
            }

            /// Observes the host and diffs against it: the resource's planned changes.
            pub fn plan(&self, host: &Host) -> Result<Vec<Change>> {
                match self {
                    $(AnyResource::$variant(r) => Ok(r.diff(&r.observe(host)?)),)*
                }
            }

            /// See [`Resource::apply`].
            pub fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
                match self {
                    $(AnyResource::$variant(r) => r.apply(changes, host),)*
                }
            }
        }
    };
}

registry! {
    File(file::File) = "file",
    Directory(directory::Directory) = "directory",
    Symlink(symlink::Symlink) = "symlink",
    User(user::User) = "user",
    Group(group::Group) = "group",
    Command(command::Command) = "command",
    Unit(unit::Unit) = "unit",
    Apt(apt::Apt) = "apt",
    AptRepository(apt_repository::AptRepository) = "apt_repository",
    NginxSite(nginx_site::NginxSite) = "nginx_site",
    Virtualenv(virtualenv::Virtualenv) = "virtualenv",
    Tmpfiles(tmpfiles::Tmpfiles) = "tmpfiles",
    Sysctl(sysctl::Sysctl) = "sysctl",
    Download(download::Download) = "download",
    LineInFile(line_in_file::LineInFile) = "line_in_file",
    Git(git::Git) = "git",
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKind;

impl std::str::FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(name: &str) -> std::result::Result<Kind, UnknownKind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name).ok_or(UnknownKind)
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Kind, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(|_| serde::de::Error::custom(format!("`{name}` is not a kind")))
    }
}

impl AnyResource {
    /// Builds a resource of `kind` from its entry; errors go into `attrs`.
    pub fn from_attrs(kind: Kind, name: &Node, attrs: &mut Attrs) -> Option<(ResourceId, AnyResource)> {
        let resource = kind.build(name, attrs)?;
        Some((resource.id(), resource))
    }
}

/// The ids listed under `key` (a unit's `restart_triggers`, a command's `on_change`); each that
/// is no id is an error at its place.
pub fn ids(attrs: &mut Attrs, key: &'static str) -> Vec<(ResourceId, Span)> {
    let ids = attrs.strings(key).into_iter().filter_map(|(text, span)| match text.parse::<ResourceId>() {
        Ok(id) => Some((id, span)),
        Err(why) => {
            attrs.error(span, format!("`{text}` is not an id"), "not kind:name", why.to_string());
            None
        }
    });
    ids.collect()
}

/// The ordering facts of a resource owned by `ownership`: its owner and group must exist.
pub fn ownership_needs(ownership: &Ownership) -> Vec<Need> {
    let users = ownership.owner.iter().map(|u| Need::User(u.clone()));
    users.chain(ownership.group.iter().map(|g| Need::Group(g.clone()))).collect()
}

/// The ordering facts of a resource at `path`, which `present` needs its directory for.
pub fn path_needs(path: &std::path::Path, present: bool) -> Vec<Need> {
    let mut needs = vec![Need::Inside(path.to_owned())];
    if let (true, Some(parent)) = (present, path.parent()) {
        needs.push(Need::Directory(parent.to_owned()));
    }
    needs
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

/// Gives every file of the tree at `path` to `uid`:`gid` (symlinks themselves, never their
/// targets).
pub fn chown_tree(host: &Host, path: &std::path::Path, uid: u32, gid: u32) -> std::io::Result<()> {
    host.chown(path, Some(uid), Some(gid))?;
    if host.stat(path)?.is_some_and(|s| s.kind == crate::host::FileKind::Directory) {
        for (name, _) in host.read_dir(path)? {
            chown_tree(host, &path.join(name), uid, gid)?;
        }
    }
    Ok(())
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
pub fn check_account_name(attrs: &mut Attrs, what: &str, name: &str, span: Span) -> bool {
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
