//! What an entry of a playbook may hold: the types of attribute values, a kind's table of
//! attributes ([`Table`], which each kind declares in its own file), and the attributes every
//! kind takes ([`COMMON`]). Validation reads the tables (`Attrs` accepts exactly these keys and
//! reports the others as unknown) and `converge schema` turns them into a JSON Schema
//! (`kinds/schema.rs`). A kind's constructor reads its attributes through `Attrs` by these
//! names; in debug builds `Attrs` panics when it reads a key the table lacks, or when the table
//! has one the constructor never reads.

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
    /// A list or a mapping, or one variable that holds one (`"{{ sites }}"`): `for_each:`.
    Items,
}

/// One attribute of a kind.
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub ty: Type,
    pub doc: &'static str,
}

/// A kind's table: what its kind key's value names, what it is, and its own attributes.
#[derive(Debug)]
pub struct Table {
    /// The type of the kind key's value (`file: /etc/motd`).
    pub names: Type,
    pub doc: &'static str,
    pub attrs: &'static [Key],
}

impl Table {
    /// The attribute `key`: one of its own or a common one.
    pub fn attr(&self, key: &str) -> Option<&'static Key> {
        let own: &'static [Key] = self.attrs;
        own.iter().chain(COMMON).find(|a| a.name == key)
    }
}

/// An attribute of a table.
pub const fn attr(name: &'static str, ty: Type, doc: &'static str) -> Key {
    Key { name, ty, doc }
}

/// The words of `state:`.
pub const STATES: &[&str] = &["present", "absent"];

/// The attributes every kind takes.
pub const COMMON: &[Key] = &[
    attr("notify", Type::Strings, "\"ACTION UNIT\" (restart, reload, start, stop) to run when this resource changed"),
    attr("after", Type::Strings, "ids (kind:name) of resources to apply before this one"),
    attr("when", Type::Expression, "the resource exists only where this is true (`env == \"prod\"`)"),
    attr("sensitive", Type::Bool, "never show its content, in any output"),
    attr(
        "for_each",
        Type::Items,
        "one resource per item of a list (`{{ item }}`) or mapping (`{{ key }}`, `{{ value }}`), or of `\"{{ variable }}\"`",
    ),
];

/// `state:` present or absent.
pub const STATE: Key = attr("state", Type::Word(STATES), "present (default) or absent");
/// `owner:` of a file.
pub const OWNER: Key = attr("owner", Type::String, "the owning user (unmanaged when omitted)");
/// `group:` of a file.
pub const GROUP: Key = attr("group", Type::String, "the owning group (unmanaged when omitted)");
/// `mode:` of a file.
pub const MODE: Key = attr("mode", Type::Mode, "\"0644\", 0644, \"0o644\" or \"u=rw,g=r,o=r\"");
/// `content:` inline.
pub const CONTENT: Key = attr("content", Type::String, "the content, inline");
/// `template:` a file to render.
pub const TEMPLATE: Key = attr("template", Type::String, "a minijinja template file, relative to the playbook");
