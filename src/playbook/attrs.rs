//! `Attrs`: typed access to one resource entry's attributes, for the kinds' constructors.
//!
//! Each getter renders templates, checks the type and records a labelled error instead of
//! stopping, so that `validate` reports every mistake at once. The keys a kind accepts are its row
//! of `kinds/table.rs`; `finish` reports the others as unknown, with the nearest known key as a hint.

use std::path::{Path, PathBuf};

use crate::error::{PlaybookError, did_you_mean};
use crate::host::mode::Mode;
use crate::kinds::resource::State;
use crate::playbook::template::Templates;
use crate::playbook::yaml_node::{Node, Span, Value};

pub struct Attrs<'a> {
    entries: &'a [(Node, Node)],
    kind: &'static str,
    /// The kind's attributes (`kinds/table.rs`): the keys it accepts.
    table: &'static crate::kinds::table::Kind,
    templates: &'a Templates,
    pub errors: &'a mut Vec<PlaybookError>,
    /// The keys read so far, to check the table against what the constructor reads.
    known: Vec<&'static str>,
    /// Every value rendered for this entry, by key, with the variables it used: what
    /// `sensitive: true` hides. Variables a `template:` used come with an empty key.
    pub rendered: Vec<(String, String, std::collections::BTreeSet<String>)>,
    errors_before: usize,
}

impl<'a> Attrs<'a> {
    pub fn new(
        entries: &'a [(Node, Node)],
        kind: &'static str,
        templates: &'a Templates,
        errors: &'a mut Vec<PlaybookError>,
    ) -> Attrs<'a> {
        let table = crate::kinds::table::kind(kind).unwrap_or_else(|| panic!("kind {kind} is not in kinds::KINDS"));
        let errors_before = errors.len();
        Attrs { entries, kind, table, templates, errors, known: vec![kind], rendered: Vec::new(), errors_before }
    }

    /// The raw node of `key`, marking the key as read.
    pub fn node(&mut self, key: &'static str) -> Option<&'a Node> {
        debug_assert!(
            key == self.kind || crate::kinds::table::attr_of(self.table, key).is_some(),
            "{} reads `{key}`, which src/kinds/table.rs does not list for it",
            self.kind
        );
        self.known.push(key);
        self.entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    pub fn templates(&self) -> &'a Templates {
        self.templates
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>, label: impl Into<String>, help: impl Into<String>) {
        let error = self.templates.source().error(span, message, label).help(help);
        self.errors.push(error);
    }

    fn wrong_type(&mut self, key: &str, node: &Node, expected: &str, help: &str) {
        self.error(
            node.span,
            format!("`{key}` must be {expected}, not {}", node.type_name()),
            format!("expected {expected}"),
            help,
        );
    }

    /// A string attribute, rendered as a template.
    pub fn string(&mut self, key: &'static str) -> Option<String> {
        let node = self.node(key)?;
        self.render_string(key, node)
    }

    /// A node that must be a string, rendered as a template.
    pub fn render_string(&mut self, key: &str, node: &Node) -> Option<String> {
        match &node.value {
            Value::String(text) => {
                self.note_stray();
                let rendered = self.templates.render(text, node.span).map_err(|e| self.errors.push(e)).ok()?;
                self.checked(node, key, rendered)
            }
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                let written = node.source(&self.templates.source().text).to_owned();
                self.wrong_type(key, node, "a string", &format!("quote it: `{key}: \"{written}\"`"));
                None
            }
            _ => {
                self.wrong_type(key, node, "a string", "write a single value in quotes");
                None
            }
        }
    }

    /// Every rendered value passes here: a NUL byte can reach no path, name or argument (the
    /// kernel would cut the string there; file content may hold one), and the values are kept
    /// for `sensitive`.
    fn checked(&mut self, node: &Node, key: &str, value: String) -> Option<String> {
        if value.contains('\0') && key != "content" {
            self.error(
                node.span,
                format!("`{key}` contains a NUL byte"),
                "NUL byte",
                "a path, a name or an argument cannot hold a NUL byte; remove it",
            );
            return None;
        }
        let vars = self.templates.take_used();
        self.rendered.push((key.to_owned(), value.clone(), vars));
        Some(value)
    }

    /// Variables used since the last rendered value, by something else (a `template:` file, a
    /// `when:`): kept with no key, so that they count as values.
    pub fn note_stray(&mut self) {
        let vars = self.templates.take_used();
        if !vars.is_empty() {
            self.rendered.push((String::new(), String::new(), vars));
        }
    }

    /// `owner` and `group` of a file: names of existing accounts, so not held to useradd's
    /// rules (a Debian image has `Debian-exim`), but never empty, an option, a list or a path.
    pub fn ownership(&mut self) -> crate::kinds::resource::Ownership {
        let name = |attrs: &mut Attrs, key: &'static str| {
            let node = attrs.node(key)?;
            let name = attrs.render_string(key, node)?;
            let bad = name.is_empty()
                || name.starts_with('-')
                || name.chars().any(|c| c.is_whitespace() || c.is_control() || ":,/".contains(c));
            if bad {
                let shown = crate::error::escape(&name).into_owned();
                let what = if key == "owner" { "user" } else { "group" };
                attrs.error(
                    node.span,
                    format!("`{shown}` is not a {what} name"),
                    "not a name",
                    format!("name an existing {what} (or one a `{what}:` resource of the playbook creates)"),
                );
                return None;
            }
            Some(name)
        };
        let owner = name(self, "owner");
        let group = name(self, "group");
        crate::kinds::resource::Ownership { owner, group }
    }

    /// A boolean: `true`/`false`, or a template that renders to one of them.
    pub fn bool(&mut self, key: &'static str) -> Option<bool> {
        let node = self.node(key)?;
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::String(_) => match self.render_string(key, node)?.trim() {
                "true" | "True" => Some(true),
                "false" | "False" => Some(false),
                other => {
                    let other = other.to_owned();
                    self.error(
                        node.span,
                        format!("`{key}` must be true or false, not `{other}`"),
                        "expected a boolean",
                        "write true or false",
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(key, node, "true or false", "write true or false");
                None
            }
        }
    }

    /// A non-negative number such as a uid.
    pub fn u32(&mut self, key: &'static str) -> Option<u32> {
        let node = self.node(key)?;
        match &node.value {
            Value::Int(n) if u32::try_from(*n).is_ok() => Some(*n as u32),
            Value::String(_) => {
                let text = self.render_string(key, node)?;
                let parsed = text.trim().parse().ok();
                if parsed.is_none() {
                    self.error(
                        node.span,
                        format!("`{key}` must be a whole number, not `{text}`"),
                        "expected a number",
                        "write a number such as 1001",
                    );
                }
                parsed
            }
            _ => {
                self.wrong_type(key, node, "a whole number", "write a number such as 1001");
                None
            }
        }
    }

    /// A file mode: "0644", a bare 0644 (read as the octal it looks like), or "u=rw,g=r,o=r".
    pub fn mode(&mut self, key: &'static str) -> Option<Mode> {
        self.mode_for(key, false)
    }

    /// A mode for a file or (`dir`) a directory, which `X` makes a difference for.
    pub fn mode_for(&mut self, key: &'static str, dir: bool) -> Option<Mode> {
        let node = self.node(key)?;
        let text = match &node.value {
            Value::Int(_) | Value::Float(_) => node.source(&self.templates.source().text).to_owned(),
            Value::String(_) => self.render_string(key, node)?,
            _ => {
                self.wrong_type(key, node, "a mode", "write an octal mode such as \"0644\"");
                return None;
            }
        };
        match Mode::parse_for(&text, dir) {
            Ok(mode) => Some(mode),
            Err(why) => {
                self.error(
                    node.span,
                    format!("`{text}` is not a valid mode"),
                    why,
                    "write an octal mode such as \"0644\" or a symbolic one such as \"u=rw,g=r,o=r\"",
                );
                None
            }
        }
    }

    /// An absolute path.
    pub fn path(&mut self, key: &'static str) -> Option<PathBuf> {
        let node = self.node(key)?;
        self.absolute_path(key, node)
    }

    /// An absolute path, normalised (`//`, `.` and a trailing `/` dropped) so that one path is
    /// always written one way; `..` and NUL bytes are errors.
    pub fn absolute_path(&mut self, key: &str, node: &Node) -> Option<PathBuf> {
        let text = self.render_string(key, node)?;
        match normal_path(&text) {
            Ok(path) => Some(path),
            Err((message, label, help)) => {
                self.error(node.span, message, label, help);
                None
            }
        }
    }

    /// The path a resource manages: an absolute path that is not the root itself.
    pub fn managed_path(&mut self, key: &str, node: &Node) -> Option<PathBuf> {
        let path = self.absolute_path(key, node)?;
        if path == Path::new("/") {
            self.error(
                node.span,
                format!("`/` cannot be a {key}: converge never creates, changes or removes the root itself"),
                "the root",
                "name a path below it, such as /srv/app",
            );
            return None;
        }
        Some(path)
    }

    /// A list of strings; a single string counts as a list of one.
    pub fn strings(&mut self, key: &'static str) -> Vec<(String, Span)> {
        let Some(node) = self.node(key) else {
            return Vec::new();
        };
        match &node.value {
            Value::Seq(items) => {
                items.iter().filter_map(|item| Some((self.render_string(key, item)?, item.span))).collect()
            }
            Value::String(_) => self.render_string(key, node).map(|s| vec![(s, node.span)]).unwrap_or_default(),
            _ => {
                self.wrong_type(key, node, "a list of strings", "write a list such as [a, b]");
                Vec::new()
            }
        }
    }

    /// A command line: a list (each item one argument) or a string, split into words as a shell
    /// would split it (without ever running a shell) *before* any template is rendered, so that a
    /// variable is always exactly one argument, whatever it holds (spaces, quotes, `;`).
    pub fn argv(&mut self, key: &'static str) -> Option<Vec<String>> {
        let node = self.node(key)?;
        let argv = match &node.value {
            Value::Seq(items) => items.iter().map(|item| self.render_string(key, item)).collect::<Option<Vec<_>>>()?,
            Value::String(line) => match split_words(line) {
                Ok(words) => {
                    let mut argv = Vec::with_capacity(words.len());
                    for word in words {
                        self.note_stray();
                        let rendered = self
                            .templates
                            .render(&word, node.span)
                            .map_err(|e| {
                                let e = if word.contains("{%") && e.message.starts_with("template error") {
                                    e.help("a string command is split into words before rendering, and a `{% ... %}` block must open and close within one word; or give the command as a list")
                                } else {
                                    e
                                };
                                self.errors.push(e)
                            })
                            .ok()?;
                        argv.push(self.checked(node, key, rendered)?);
                    }
                    argv
                }
                Err(why) => {
                    let line = crate::error::escape(line);
                    self.error(
                        node.span,
                        format!("cannot split `{line}` into arguments: {why}"),
                        "unbalanced quotes",
                        "close the quote, or give the arguments as a list",
                    );
                    return None;
                }
            },
            _ => {
                self.wrong_type(key, node, "a command", "write a command line or a list of arguments");
                return None;
            }
        };
        if argv.is_empty() || argv[0].is_empty() {
            self.error(node.span, format!("`{key}` is empty"), "no program to run", "name a program to run");
            return None;
        }
        Some(argv)
    }

    /// `state: present|absent`.
    pub fn state(&mut self) -> State {
        let Some(node) = self.node("state") else {
            return State::Present;
        };
        match self.render_string("state", node).as_deref() {
            Some("present") | None => State::Present,
            Some("absent") => State::Absent,
            Some(other) => {
                let other = other.to_owned();
                let help = match did_you_mean(&other, ["present", "absent"]) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "write present or absent".into(),
                };
                self.error(node.span, format!("unknown state `{other}`"), "expected present or absent", help);
                State::Present
            }
        }
    }

    /// Requires exactly one of `keys` (when `needed`), reporting both at once otherwise.
    pub fn one_of(&mut self, keys: &[&'static str], needed: bool, at: Span) {
        let present: Vec<&'static str> =
            keys.iter().copied().filter(|k| self.entries.iter().any(|(n, _)| n.as_str() == Some(k))).collect();
        if present.len() > 1 {
            let span =
                self.entries.iter().find(|(n, _)| n.as_str() == Some(present[1])).map(|(n, _)| n.span).unwrap_or(at);
            let list = keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
            self.error(
                span,
                format!("`{}` and `{}` cannot both be given", present[0], present[1]),
                "second source of the same thing",
                format!("keep one of {list}"),
            );
        } else if present.is_empty() && needed {
            let list = keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" or ");
            let kind = self.kind;
            self.error(
                at,
                format!("this {kind} needs {list}"),
                "nothing says what it should contain",
                format!("add {list}, or `state: absent` to remove it"),
            );
        }
    }

    /// Reports every key that the kind's table (`kinds/table.rs`) does not list.
    pub fn finish(self) {
        // The table and the constructor agree: an entry without mistakes was read whole.
        if self.errors.len() == self.errors_before {
            for attr in self.table.attrs.iter().chain(crate::kinds::table::COMMON) {
                debug_assert!(
                    self.known.contains(&attr.name),
                    "src/kinds/table.rs lists `{}` for {}, which its constructor never reads",
                    attr.name,
                    self.kind
                );
            }
        }
        let known: Vec<&'static str> = std::iter::once(self.kind)
            .chain(self.table.attrs.iter().chain(crate::kinds::table::COMMON).map(|a| a.name))
            .collect();
        for (key, _) in self.entries {
            let Some(name) = key.as_str() else {
                let span = key.span;
                self.errors.push(
                    self.templates
                        .source()
                        .error(span, "a key must be a name", "not a name")
                        .help("write the attribute's name"),
                );
                continue;
            };
            if known.contains(&name) {
                continue;
            }
            let help = match did_you_mean(name, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None if crate::kinds::KINDS.contains(&name) => {
                    "a resource has one kind key, the first: start a new list item (`- `) for this one".to_owned()
                }
                None => {
                    let mut keys: Vec<&str> = known.iter().copied().filter(|k| *k != self.kind).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    format!("a {} takes: {}", self.kind, keys.join(", "))
                }
            };
            let error = self
                .templates
                .source()
                .error(key.span, format!("unknown attribute `{name}` for {}", self.kind), "unknown attribute")
                .help(help);
            self.errors.push(error);
        }
    }
}

/// Checks and normalises an absolute path of the playbook: (message, label, help) when it is not
/// one converge can act on safely.
pub fn normal_path(text: &str) -> Result<PathBuf, (String, &'static str, &'static str)> {
    if text.contains('\0') {
        return Err((
            format!("`{}` contains a NUL byte", text.escape_debug()),
            "NUL byte",
            "a path cannot hold a NUL byte; remove it",
        ));
    }
    if !text.starts_with('/') {
        return Err((
            format!("`{text}` is not an absolute path"),
            "expected a path starting with /",
            "write the full path, such as /etc/app.conf",
        ));
    }
    let path = Path::new(text);
    if path.components().any(|c| c == std::path::Component::ParentDir) {
        return Err((
            format!("`{text}` has a `..` component"),
            "`..` in a path",
            "write the path it means without `..` (a path climbs nowhere: /etc/x/../a is /etc/a)",
        ));
    }
    if let Some(long) = path.components().find(|c| c.as_os_str().len() > 255) {
        return Err((
            format!(
                "`{}` is {} bytes; a file name has at most 255",
                long.as_os_str().to_string_lossy(),
                long.as_os_str().len()
            ),
            "file name too long",
            "shorten that part of the path",
        ));
    }
    if text.len() >= 4096 {
        return Err((
            format!("the path is {} bytes; Linux paths have at most 4095", text.len()),
            "path too long",
            "shorten the path",
        ));
    }
    Ok(path.components().collect())
}

/// Splits a command line into words as a POSIX shell would (quotes, backslashes), keeping each
/// template tag (`{{ ... }}`, `{% ... %}`, `{# ... #}`) whole and uninterpreted, so that the words
/// are rendered one by one afterwards. No expansion of any kind happens.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.char_indices().peekable();
    // None: unquoted; Some('\'') or Some('"').
    let mut quote: Option<char> = None;
    while let Some((at, c)) = chars.next() {
        if c == '{' && matches!(line[at + 1..].chars().next(), Some('{' | '%' | '#')) {
            let close = match line.as_bytes()[at + 1] {
                b'{' => "}}",
                b'%' => "%}",
                _ => "#}",
            };
            let end = line[at + 2..]
                .find(close)
                .map(|i| at + 2 + i + 2)
                .ok_or_else(|| format!("`{}` is never closed with `{close}`", &line[at..at + 2]))?;
            word.push_str(&line[at..end]);
            in_word = true;
            while chars.peek().is_some_and(|(i, _)| *i < end) {
                chars.next();
            }
            continue;
        }
        match (quote, c) {
            (Some('\''), '\'') => quote = None,
            (Some('\''), c) => word.push(c),
            (Some('"'), '"') => quote = None,
            (Some('"'), '\\') => match chars.peek().map(|(_, n)| *n) {
                Some(n @ ('"' | '\\' | '$' | '`')) => {
                    word.push(n);
                    chars.next();
                }
                Some('\n') => {
                    chars.next();
                }
                _ => word.push('\\'),
            },
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => match chars.next() {
                Some((_, '\n')) => {}
                Some((_, n)) => {
                    word.push(n);
                    in_word = true;
                }
                None => return Err("it ends with a lone backslash".into()),
            },
            (None, c) if c == ' ' || c == '\t' || c == '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("a {} quote is never closed", if q == '"' { "double" } else { "single" }));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_so_duplicates_are_found() {
        assert_eq!(normal_path("/etc//nginx/./sites/").unwrap(), Path::new("/etc/nginx/sites"));
        assert_eq!(normal_path("/").unwrap(), Path::new("/"));
        assert_eq!(normal_path("///").unwrap(), Path::new("/"));
    }

    #[test]
    fn paths_that_could_escape_or_lie_are_refused() {
        for bad in ["/../../x", "/etc/x/../a", "etc/a", "", "/etc/a\0b", "./a"] {
            assert!(normal_path(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(normal_path(&format!("/{}", "a".repeat(256))).is_err());
        assert!(normal_path(&format!("/{}", "a".repeat(255))).is_ok());
    }

    fn split(line: &str) -> Vec<String> {
        split_words(line).unwrap()
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(split("touch /srv/a  /srv/b"), ["touch", "/srv/a", "/srv/b"]);
        assert_eq!(split(r#"echo 'a b' "c \"d\"" e\ f"#), ["echo", "a b", "c \"d\"", "e f"]);
        assert_eq!(split("a '' b"), ["a", "", "b"]);
        assert_eq!(split("  "), Vec::<String>::new());
        assert!(split_words("echo 'open").unwrap_err().contains("single quote"));
        assert!(split_words("echo \"open").unwrap_err().contains("double quote"));
    }

    #[test]
    fn template_tags_stay_whole() {
        assert_eq!(split("touch /srv/{{ name }}"), ["touch", "/srv/{{ name }}"]);
        assert_eq!(split("echo {{ x | default('a b') }} y"), ["echo", "{{ x | default('a b') }}", "y"]);
        assert_eq!(split("run {% if a %}-v{% endif %}"), ["run", "{% if a %}-v{% endif %}"]);
        assert_eq!(split("'{{ a }}' \"{{ b }}\""), ["{{ a }}", "{{ b }}"]);
        assert!(split_words("echo {{ a").unwrap_err().contains("never closed"));
    }
}
