//! Templates: every string attribute is a minijinja template, rendered against the playbook's
//! variables; `template:` files are rendered the same way. An undefined variable is an error,
//! never an empty string.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value as Jinja};

use crate::error::{PlaybookError, Source, did_you_mean};
use crate::playbook::yaml_node::{Node, Span, Value};

pub struct Templates {
    env: Environment<'static>,
    vars: BTreeMap<String, Jinja>,
    context: Jinja,
    source: Source,
    dir: PathBuf,
    /// Variables whose values are secret: every resource that uses one is sensitive.
    secret: BTreeSet<String>,
    /// Which variables the templates used: since the last `take_used`, and over the whole run.
    used: Rc<RefCell<Used>>,
}

#[derive(Default)]
struct Used {
    recent: BTreeSet<String>,
    all: BTreeSet<String>,
}

impl Templates {
    pub fn new(source: Source, dir: PathBuf) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // A unit file or config rendered from a template keeps its final newline.
        let syntax = minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build();
        env.set_syntax(syntax.expect("the default delimiters are valid"));
        env.add_filter("bool", ansible_bool);
        Templates {
            env,
            vars: BTreeMap::new(),
            context: Jinja::from(()),
            source,
            dir,
            secret: BTreeSet::new(),
            used: Rc::default(),
        }
    }

    /// Templates for a module: the same variables, another source text and directory.
    pub fn child(&self, source: Source, dir: PathBuf) -> Templates {
        Templates {
            env: self.env.clone(),
            vars: self.vars.clone(),
            context: self.context.clone(),
            source,
            dir,
            secret: self.secret.clone(),
            used: self.used.clone(),
        }
    }

    /// Marks a variable secret; its values are hidden from every output from now on.
    pub fn set_secret(&mut self, name: String, value: Jinja) {
        for text in leaves(&value) {
            crate::playbook::redact::add(&text);
        }
        self.secret.insert(name.clone());
        self.set_var(name, value);
    }

    /// Makes an already defined variable secret.
    pub fn mark_secret(&mut self, name: &str) {
        if let Some(value) = self.vars.get(name).cloned() {
            self.set_secret(name.to_owned(), value);
        }
    }

    pub fn is_secret(&self, name: &str) -> bool {
        self.secret.contains(name)
    }

    /// The variables used since the last call (by an entry's attributes, say).
    pub fn take_used(&self) -> BTreeSet<String> {
        std::mem::take(&mut self.used.borrow_mut().recent)
    }

    /// Every variable any template used so far.
    pub fn all_used(&self) -> BTreeSet<String> {
        self.used.borrow().all.clone()
    }

    /// The variables any template used so far, with their values (None for a secret one).
    pub fn used_variables(&self) -> Vec<(String, Option<Jinja>)> {
        let used = self.all_used();
        let value = |name: &String| (!self.is_secret(name)).then(|| self.vars.get(name).cloned()).flatten();
        used.iter().filter(|n| self.vars.contains_key(*n)).map(|n| (n.clone(), value(n))).collect()
    }

    /// The string leaves of a variable's value (a list's items, a mapping's values).
    pub fn var_texts(&self, name: &str) -> Vec<String> {
        self.vars.get(name).map(leaves).unwrap_or_default()
    }

    fn note_used(&self, names: impl IntoIterator<Item = String>) {
        let mut used = self.used.borrow_mut();
        for name in names {
            used.all.insert(name.clone());
            used.recent.insert(name);
        }
    }

    /// The playbook text that spans point into.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Where relative `template:` and `source:` paths start.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A variable's value.
    pub fn var(&self, name: &str) -> Option<&Jinja> {
        self.vars.get(name)
    }

    pub fn set_var(&mut self, name: String, value: Jinja) {
        self.vars.insert(name, value);
        self.context = Jinja::from(self.vars.clone());
    }

    /// Renders a string attribute. Text without template syntax is returned as it is.
    pub fn render(&self, text: &str, span: Span) -> Result<String, PlaybookError> {
        if !text.contains("{{") && !text.contains("{%") && !text.contains("{#") {
            return Ok(text.to_owned());
        }
        let template = self.env.template_from_str(text).map_err(|e| self.explain(&self.source, span, text, e))?;
        self.note_used(template.undeclared_variables(false));
        template.render(&self.context).map_err(|e| self.explain(&self.source, span, text, e))
    }

    /// Renders a template file relative to the playbook; errors point into that file.
    pub fn render_file(&self, relative: &str, span: Span) -> Result<String, PlaybookError> {
        let text = self.read_text(relative, span)?;
        let file = Source::new(self.dir.join(relative).display().to_string(), text.as_str());
        if let Ok(template) = self.env.template_from_str(&text) {
            self.note_used(template.undeclared_variables(false));
        }
        self.env.render_str(&text, &self.context).map_err(|e| {
            let at = e.range().map(|r| Span { offset: r.start, len: r.len() }).unwrap_or_else(|| {
                let offset = file.offset_of(e.line().unwrap_or(1), 1);
                Span { offset, len: text[offset..].find('\n').unwrap_or(text.len() - offset) }
            });
            self.explain(&file, at, &text, e)
        })
    }

    /// Reads a file relative to the playbook, for `source:`.
    pub fn read_bytes(&self, relative: &str, span: Span) -> Result<Vec<u8>, PlaybookError> {
        let bytes = crate::host::read_input(&self.dir.join(relative)).map_err(|e| self.missing(relative, span, e))?;
        note_read(&self.dir, relative, || Read::File { bytes: bytes.clone(), executable: false });
        Ok(bytes)
    }

    /// Reads a tree relative to the playbook, for a directory's `source:`: its directories and
    /// files (host::read_input_tree), each recorded with whether its owner may execute it, and
    /// every directory (an empty one too), for `--host` to send them as they are.
    pub fn read_tree(&self, relative: &str, span: Span) -> Result<Vec<crate::host::InputEntry>, PlaybookError> {
        let entries =
            crate::host::read_input_tree(&self.dir.join(relative)).map_err(|e| self.missing(relative, span, e))?;
        note_read(&self.dir, relative, || Read::Directory);
        for entry in &entries {
            let read = || match &entry.bytes {
                Some(bytes) => Read::File { bytes: bytes.clone(), executable: entry.mode & 0o100 != 0 },
                None => Read::Directory,
            };
            note_read(&self.dir, &Path::new(relative).join(&entry.path).to_string_lossy(), read);
        }
        Ok(entries)
    }

    /// Evaluates a `when:` expression. A variable it names must be defined, unless the
    /// expression asks about that itself (`x is defined`, `x | default(...)`): a typo never
    /// silently drops a resource.
    pub fn eval(&self, expr: &str, span: Span) -> Result<bool, PlaybookError> {
        let value = self.value(expr, span)?;
        if value.is_undefined() {
            return Err(self
                .source
                .error(span, "the expression is undefined", "undefined")
                .help("name a variable that is defined, or ask `x is defined`"));
        }
        Ok(value.is_true())
    }

    /// The value of an expression (`sites`, `sites | default([])`), as `when:` and
    /// `for_each: "{{ sites }}"` take it. A variable it names must be defined (or be one of
    /// minijinja's functions, such as `range`), unless the expression asks about that itself
    /// (`x is defined`, `x | default(...)`).
    pub fn value(&self, expr: &str, span: Span) -> Result<Jinja, PlaybookError> {
        let compiled = self.env.compile_expression(expr).map_err(|e| self.explain(&self.source, span, expr, e))?;
        let names = compiled.undeclared_variables(false);
        self.note_used(names.iter().cloned());
        let asks = expr.contains("defined") || expr.contains("default");
        let global = |name: &str| self.env.globals().any(|(g, _)| g == name);
        let undefined = names.iter().filter(|n| !self.vars.contains_key(*n) && !global(n)).min();
        if let (Some(name), false) = (undefined, asks) {
            return Err(self.undefined(&self.source, span, name));
        }
        compiled.eval(&self.context).map_err(|e| self.explain(&self.source, span, expr, e))
    }

    /// "undefined variable `name`", with the nearest defined name as a hint.
    fn undefined(&self, source: &Source, span: Span, name: &str) -> PlaybookError {
        let define = format!(
            "define `{name}` under `vars:` or in a --vars-file; a secret goes under `secrets:` or in a --secrets-file, never on the command line"
        );
        let help = match did_you_mean(name, self.vars.keys().map(String::as_str)) {
            Some(did_you_mean) => format!("{did_you_mean} Otherwise {define}"),
            None => define[..1].to_uppercase() + &define[1..],
        };
        source.error(span, format!("undefined variable `{name}`"), "used here").help(help)
    }

    fn read_text(&self, relative: &str, span: Span) -> Result<String, PlaybookError> {
        let bytes = crate::host::read_input(&self.dir.join(relative)).map_err(|e| self.missing(relative, span, e))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            let e =
                std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text; use `source:` for bytes");
            self.missing(relative, span, e)
        })?;
        note_read(&self.dir, relative, || Read::File { bytes: text.as_bytes().to_vec(), executable: false });
        Ok(text)
    }

    fn missing(&self, relative: &str, span: Span, e: std::io::Error) -> PlaybookError {
        let path = self.dir.join(relative);
        self.source
            .error(span, format!("cannot read `{}`: {}", path.display(), io_reason(&e)), "this file")
            .help(format!("paths are relative to the playbook's directory, {}", self.dir.display()))
    }

    /// A minijinja error as a playbook error; an undefined variable is named, with a hint.
    fn explain(&self, source: &Source, span: Span, text: &str, e: minijinja::Error) -> PlaybookError {
        if e.kind() == ErrorKind::UndefinedError {
            let undefined: Vec<String> = self
                .env
                .template_from_str(text)
                .map(|t| t.undeclared_variables(false).into_iter().filter(|v| !self.vars.contains_key(v)).collect())
                .unwrap_or_default();
            if let Some(name) = undefined.first() {
                return self.undefined(source, span, name);
            }
        }
        let detail = e.detail().map(str::to_owned).unwrap_or_else(|| e.kind().to_string());
        source
            .error(span, format!("template error: {detail}"), "in this template")
            .help("see the template syntax at https://docs.rs/minijinja")
    }
}

/// A file or directory that a `template:` or `source:` read, relative to `dir` (the playbook's
/// or a module's).
#[derive(Debug, Clone)]
pub struct FileRead {
    pub dir: PathBuf,
    pub relative: String,
    pub read: Read,
}

/// What was read at a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// A file's bytes, and whether its owner may execute it (what a tree copy keeps of its mode).
    File { bytes: Vec<u8>, executable: bool },
    /// A directory of a `source:` tree.
    Directory,
}

thread_local! {
    static READS: RefCell<Option<Vec<FileRead>>> = const { RefCell::new(None) };
}

/// Runs `f` (a resolve) and returns every file it read through templates, so that `--host` can
/// send exactly those files to the target (remote/bundle.rs).
pub fn record_reads<T>(f: impl FnOnce() -> T) -> (T, Vec<FileRead>) {
    READS.with(|r| r.replace(Some(Vec::new())));
    let value = f();
    (value, READS.with(|r| r.take()).unwrap_or_default())
}

/// Records what was read at `relative` when a resolve records its reads (`read` makes the
/// record only then: a plain run copies no bytes).
fn note_read(dir: &Path, relative: &str, read: impl FnOnce() -> Read) {
    READS.with(|r| {
        if let Some(reads) = r.borrow_mut().as_mut() {
            reads.push(FileRead { dir: dir.to_path_buf(), relative: relative.to_owned(), read: read() });
        }
    });
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        _ => e.to_string(),
    }
}

/// The `bool` filter as Ansible reads it: `"false"`, `"no"`, `"off"`, `"0"` are false, and so
/// is 0; `"true"`, `"yes"`, `"on"`, `"1"` and 1 are true; anything else is an error, not a guess.
fn ansible_bool(value: Jinja) -> Result<bool, minijinja::Error> {
    if let Some(b) = value.as_str().map(|s| s.trim().to_ascii_lowercase()) {
        return match b.as_str() {
            "true" | "yes" | "on" | "1" | "y" => Ok(true),
            "false" | "no" | "off" | "0" | "n" | "" => Ok(false),
            _ => Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("`{b}` is not a boolean: write true/false, yes/no, on/off or 1/0"),
            )),
        };
    }
    if value.is_none() || value.is_undefined() {
        return Ok(false);
    }
    if let Ok(n) = f64::try_from(value.clone()) {
        return Ok(n != 0.0);
    }
    Ok(value.is_true())
}

/// The string leaves of a value: a string, the items of a list, the values of a mapping.
fn leaves(value: &Jinja) -> Vec<String> {
    if let Some(text) = value.as_str() {
        return vec![text.to_owned()];
    }
    match value.kind() {
        minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Map => {
            let Ok(items) = value.try_iter() else { return Vec::new() };
            let is_map = value.kind() == minijinja::value::ValueKind::Map;
            items
                .flat_map(|item| {
                    if is_map { value.get_item(&item).map(|v| leaves(&v)).unwrap_or_default() } else { leaves(&item) }
                })
                .collect()
        }
        minijinja::value::ValueKind::Undefined | minijinja::value::ValueKind::None => Vec::new(),
        _ => vec![value.to_string()],
    }
}

/// A template value as JSON (the values YAML gives: none, booleans, numbers, strings, lists and
/// mappings; anything else as its text).
pub fn to_json(value: &Jinja) -> serde_json::Value {
    use minijinja::value::ValueKind;
    use serde_json::Value as J;
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => J::Null,
        ValueKind::Bool => J::Bool(value.is_true()),
        ValueKind::Number => match value.as_i64() {
            Some(n) => J::from(n),
            None => {
                value.to_string().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(J::Null, J::Number)
            }
        },
        ValueKind::Seq => J::Array(value.try_iter().into_iter().flatten().map(|v| to_json(&v)).collect()),
        ValueKind::Map => J::Object(
            value
                .try_iter()
                .into_iter()
                .flatten()
                .map(|k| (k.to_string(), to_json(&value.get_item(&k).unwrap_or_default())))
                .collect(),
        ),
        _ => J::String(value.to_string()),
    }
}

/// A YAML node as a template value (for `vars:`).
pub fn to_jinja(node: &Node) -> Jinja {
    match &node.value {
        Value::Null => Jinja::from(()),
        Value::Bool(b) => Jinja::from(*b),
        Value::Int(n) => Jinja::from(*n),
        Value::Float(f) => Jinja::from(*f),
        Value::String(s) => Jinja::from(s.as_str()),
        Value::Seq(items) => Jinja::from(items.iter().map(to_jinja).collect::<Vec<_>>()),
        Value::Map(entries) => Jinja::from(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), to_jinja(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str) -> Result<String, PlaybookError> {
        let mut t = Templates::new(Source::new("p.yml", text), PathBuf::from("."));
        t.set_var("flag".into(), Jinja::from(false));
        t.render(text, Span { offset: 0, len: text.len() })
    }

    #[test]
    fn the_bool_filter_follows_ansibles_truth_table() {
        for (value, want) in [
            ("'false'", "false"),
            ("'False'", "false"),
            ("'no'", "false"),
            ("'off'", "false"),
            ("'0'", "false"),
            ("''", "false"),
            ("0", "false"),
            ("flag", "false"),
            ("'true'", "true"),
            ("'Yes'", "true"),
            ("'on'", "true"),
            ("'1'", "true"),
            ("1", "true"),
            ("true", "true"),
        ] {
            assert_eq!(render(&format!("{{{{ {value} | bool }}}}")).unwrap().to_lowercase(), want, "{value}");
        }
        assert!(render("{{ 'maybe' | bool }}").unwrap_err().message.contains("`maybe` is not a boolean"));
    }
}
