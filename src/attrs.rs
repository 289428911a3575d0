//! `Attrs`: typed access to one resource entry's attributes, for the kinds' constructors.
//!
//! Each getter renders templates, checks the type and records a labelled error instead of
//! stopping, so that `validate` reports every mistake at once. The keys a kind accepts are its row
//! of `kinds.rs`; `finish` reports the others as unknown, with the nearest known key as a hint.

use std::path::PathBuf;

use crate::error::{PlaybookError, did_you_mean};
use crate::mode::Mode;
use crate::resource::State;
use crate::template::Templates;
use crate::yaml_node::{Node, Span, Value};

pub struct Attrs<'a> {
    entries: &'a [(Node, Node)],
    kind: &'static str,
    /// The kind's attributes (`kinds.rs`): the keys it accepts.
    table: &'static crate::kinds::Kind,
    templates: &'a Templates,
    pub errors: &'a mut Vec<PlaybookError>,
    /// The keys read so far, to check the table against what the constructor reads.
    known: Vec<&'static str>,
    errors_before: usize,
}

impl<'a> Attrs<'a> {
    pub fn new(
        entries: &'a [(Node, Node)],
        kind: &'static str,
        templates: &'a Templates,
        errors: &'a mut Vec<PlaybookError>,
    ) -> Attrs<'a> {
        let table = crate::kinds::kind(kind).unwrap_or_else(|| panic!("kind {kind} is not in kinds::KINDS"));
        let errors_before = errors.len();
        Attrs { entries, kind, table, templates, errors, known: vec![kind], errors_before }
    }

    /// The raw node of `key`, marking the key as read.
    pub fn node(&mut self, key: &'static str) -> Option<&'a Node> {
        debug_assert!(
            key == self.kind || crate::kinds::attr_of(self.table, key).is_some(),
            "{} reads `{key}`, which src/kinds.rs does not list for it",
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
            Value::String(text) => self.templates.render(text, node.span).map_err(|e| self.errors.push(e)).ok(),
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
        let node = self.node(key)?;
        let text = match &node.value {
            Value::Int(_) | Value::Float(_) => node.source(&self.templates.source().text).to_owned(),
            Value::String(_) => self.render_string(key, node)?,
            _ => {
                self.wrong_type(key, node, "a mode", "write an octal mode such as \"0644\"");
                return None;
            }
        };
        match Mode::parse(&text) {
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

    pub fn absolute_path(&mut self, key: &str, node: &Node) -> Option<PathBuf> {
        let text = self.render_string(key, node)?;
        if !text.starts_with('/') {
            self.error(
                node.span,
                format!("`{text}` is not an absolute path"),
                "expected a path starting with /",
                "write the full path, such as /etc/app.conf",
            );
            return None;
        }
        Some(PathBuf::from(text.trim_end_matches('/').to_owned()).components().collect())
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

    /// A command line: a list (argv as it is) or a string split as a shell would split it,
    /// without ever running a shell.
    pub fn argv(&mut self, key: &'static str) -> Option<Vec<String>> {
        let node = self.node(key)?;
        let argv = match &node.value {
            Value::Seq(items) => items.iter().map(|item| self.render_string(key, item)).collect::<Option<Vec<_>>>()?,
            Value::String(_) => {
                let line = self.render_string(key, node)?;
                match shell_words::split(&line) {
                    Ok(words) => words,
                    Err(e) => {
                        self.error(
                            node.span,
                            format!("cannot split `{line}` into arguments: {e}"),
                            "unbalanced quotes",
                            "close the quote, or give the arguments as a list",
                        );
                        return None;
                    }
                }
            }
            _ => {
                self.wrong_type(key, node, "a command", "write a command line or a list of arguments");
                return None;
            }
        };
        if argv.is_empty() {
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

    /// Reports every key that the kind's table (`kinds.rs`) does not list.
    pub fn finish(self) {
        // The table and the constructor agree: an entry without mistakes was read whole.
        if self.errors.len() == self.errors_before {
            for attr in self.table.attrs.iter().chain(crate::kinds::COMMON) {
                debug_assert!(
                    self.known.contains(&attr.name),
                    "src/kinds.rs lists `{}` for {}, which its constructor never reads",
                    attr.name,
                    self.kind
                );
            }
        }
        let known: Vec<&'static str> = std::iter::once(self.kind)
            .chain(self.table.attrs.iter().chain(crate::kinds::COMMON).map(|a| a.name))
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
                None if crate::resources::KINDS.contains(&name) => {
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
