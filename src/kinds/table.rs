//! Every kind's attributes, with their types: the one table that validation reads (`Attrs`
//! accepts exactly these keys and reports the others as unknown) and that `converge schema`
//! turns into a JSON Schema (`schema.rs`). A kind's constructor (`kinds/*.rs`) reads its
//! attributes through `Attrs` by these names; in debug builds `Attrs` panics when it reads a key
//! the table lacks, or when the table has one the constructor never reads.

/// What an attribute's value may be. Every string may be a minijinja template, so a typed
/// attribute also takes a string that renders to its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// A string.
    String,
    /// An absolute path.
    Path,
    /// true or false.
    Bool,
    /// A whole number such as a uid.
    Uint,
    /// A file mode: "0644", 0644, "0o644" or "u=rw,g=r,o=r".
    Mode,
    /// A string or a list of strings.
    Strings,
    /// A command line: a string (split like a shell would, no shell runs) or a list of arguments.
    Argv,
    /// One of these words.
    Word(&'static [&'static str]),
    /// true, false or a number of seconds (apt's `update_cache`).
    BoolOrSeconds,
    /// A mapping of `NAME.conf` file names to their content (a unit's drop-ins).
    Dropins,
    /// A mapping of environment variable names to strings (a command's `environment:`).
    Environment,
    /// A time: `2s`, `500ms`, or a number of seconds (a unit's `settle:`).
    Duration,
    /// tmpfiles.d lines: each a string (`d /run/app 0750 app app -`) or a mapping of `type`,
    /// `path`, `mode`, `user`, `group`, `age`, `argument`.
    TmpfilesEntries,
    /// true, false or a minijinja expression (`when:`).
    Expression,
}

/// One attribute of a kind.
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub ty: Type,
    pub doc: &'static str,
}

/// A kind: the key that starts an entry, what its value names, and its own attributes.
#[derive(Debug)]
pub struct Kind {
    pub name: &'static str,
    /// The type of the kind key's value (`file: /etc/motd`).
    pub names: Type,
    pub doc: &'static str,
    pub attrs: &'static [Attr],
}

const fn attr(name: &'static str, ty: Type, doc: &'static str) -> Attr {
    Attr { name, ty, doc }
}

pub const STATES: &[&str] = &["present", "absent"];

/// The attributes every kind takes.
pub const COMMON: &[Attr] = &[
    attr("notify", Type::Strings, "\"ACTION UNIT\" (restart, reload, start, stop) to run when this resource changed"),
    attr("after", Type::Strings, "ids (kind:name) of resources to apply before this one"),
    attr("when", Type::Expression, "the resource exists only where this is true (`env == \"prod\"`)"),
    attr("sensitive", Type::Bool, "never show its content, in any output"),
];

const STATE: Attr = attr("state", Type::Word(STATES), "present (default) or absent");
const OWNER: Attr = attr("owner", Type::String, "the owning user (unmanaged when omitted)");
const GROUP: Attr = attr("group", Type::String, "the owning group (unmanaged when omitted)");
const MODE: Attr = attr("mode", Type::Mode, "\"0644\", 0644, \"0o644\" or \"u=rw,g=r,o=r\"");
const CONTENT: Attr = attr("content", Type::String, "the content, inline");
const TEMPLATE: Attr = attr("template", Type::String, "a minijinja template file, relative to the playbook");

/// Every kind, in the order `converge schema` and the error messages list them.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "file",
        names: Type::Path,
        doc: "a regular file with its content, owner, group and mode",
        attrs: &[
            STATE,
            CONTENT,
            TEMPLATE,
            attr("source", Type::String, "a file copied byte for byte, relative to the playbook"),
            OWNER,
            GROUP,
            MODE,
        ],
    },
    Kind {
        name: "directory",
        names: Type::Path,
        doc: "a directory (and its missing parents) with its owner, group and mode",
        attrs: &[STATE, OWNER, GROUP, MODE],
    },
    Kind {
        name: "symlink",
        names: Type::Path,
        doc: "a symbolic link",
        attrs: &[STATE, attr("target", Type::String, "what the link points to")],
    },
    Kind {
        name: "user",
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
    },
    Kind {
        name: "group",
        names: Type::String,
        doc: "a group (groupadd, groupmod, groupdel)",
        attrs: &[
            STATE,
            attr("gid", Type::Uint, "the group id"),
            attr("system", Type::Bool, "a system group (default false)"),
        ],
    },
    Kind {
        name: "command",
        names: Type::Argv,
        doc: "a command run only when its guard says it is needed (no shell)",
        attrs: &[
            attr("creates", Type::Path, "run only while this path does not exist"),
            attr("unless", Type::Argv, "run only when this command fails"),
            attr("onlyif", Type::Argv, "run only when this command succeeds"),
            attr("cwd", Type::Path, "the working directory"),
            attr("name", Type::String, "its id (`command:NAME`) instead of its argv"),
            attr("environment", Type::Environment, "environment variables of the command and its checks"),
        ],
    },
    Kind {
        name: "unit",
        names: Type::String,
        doc: "a systemd unit: its file, drop-ins, enablement and state",
        attrs: &[
            STATE,
            CONTENT,
            TEMPLATE,
            attr("dropins", Type::Dropins, "drop-in files, NAME.conf: content"),
            attr("enabled", Type::Bool, "enabled at boot (unmanaged when omitted)"),
            attr("active", Type::Bool, "running (unmanaged when omitted)"),
            attr("masked", Type::Bool, "masked (unmanaged when omitted)"),
            attr("on_change", Type::Word(&["restart", "reload", "none"]), "what a change of its files does to it"),
            attr("restart_triggers", Type::Strings, "ids whose changes restart this unit"),
            attr("reload_triggers", Type::Strings, "ids whose changes reload this unit"),
            attr("settle", Type::Duration, "how long a started service is watched for a failure (default 1s; 0: not)"),
        ],
    },
    Kind {
        name: "apt",
        names: Type::Strings,
        doc: "Debian packages, installed or removed with apt-get",
        attrs: &[
            STATE,
            attr("version", Type::String, "the exact version to install"),
            attr(
                "update_cache",
                Type::BoolOrSeconds,
                "apt-get update first: true, or when the lists are older than N s",
            ),
        ],
    },
    Kind {
        name: "nginx_site",
        names: Type::String,
        doc: "an nginx site in sites-available, enabled in sites-enabled, checked with nginx -t",
        attrs: &[
            STATE,
            CONTENT,
            TEMPLATE,
            attr("enabled", Type::Bool, "linked in sites-enabled (default true)"),
            attr("remove_default", Type::Bool, "remove the distribution's default site (default false)"),
        ],
    },
    Kind {
        name: "virtualenv",
        names: Type::Path,
        doc: "a Python virtualenv with the packages pip installs in it",
        attrs: &[
            STATE,
            attr("python", Type::String, "the interpreter that creates it: a name on PATH or an absolute path"),
            OWNER,
            GROUP,
            attr("packages", Type::Strings, "requirements such as gunicorn==23.0.0"),
            attr("requirements", Type::String, "a requirements file, relative to the playbook"),
            attr("index_url", Type::String, "pip's --index-url"),
            attr("extra_index_urls", Type::Strings, "pip's --extra-index-url"),
            attr("find_links", Type::Strings, "pip's --find-links (relative to the playbook)"),
            attr("no_index", Type::Bool, "pip's --no-index"),
            attr("pip_args", Type::Argv, "more arguments for pip install"),
            attr("exact", Type::Bool, "remove the packages that no requirement asks for"),
        ],
    },
    Kind {
        name: "tmpfiles",
        names: Type::String,
        doc: "a systemd-tmpfiles file, /etc/tmpfiles.d/NAME.conf, applied at once and at every boot",
        attrs: &[STATE, attr("entries", Type::TmpfilesEntries, "its lines: `d /run/app 0750 app app -`, or mappings")],
    },
];

/// The kind called `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The attribute `key` of `kind`: one of its own or a common one.
pub fn attr_of(kind: &Kind, key: &str) -> Option<&'static Attr> {
    let own: &'static [Attr] = kind.attrs;
    own.iter().chain(COMMON).find(|a| a.name == key)
}

/// The kind names, for `KINDS`-style lists (`resources::KINDS`).
pub const fn names<const N: usize>() -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = KINDS[i].name;
        i += 1;
    }
    out
}
