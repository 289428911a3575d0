//! Templates: every string attribute is a minijinja template, rendered against the playbook's
//! variables; `template:` files are rendered the same way. An undefined variable is an error,
//! never an empty string.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value as Jinja};

use crate::error::{PlaybookError, Source, did_you_mean};
use crate::yaml_node::{Node, Span, Value};

pub struct Templates {
    env: Environment<'static>,
    vars: BTreeMap<String, Jinja>,
    context: Jinja,
    source: Source,
    dir: PathBuf,
}

impl Templates {
    pub fn new(source: Source, dir: PathBuf) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // A unit file or config rendered from a template keeps its final newline.
        let syntax = minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build();
        env.set_syntax(syntax.expect("the default delimiters are valid"));
        Templates { env, vars: BTreeMap::new(), context: Jinja::from(()), source, dir }
    }

    /// Templates for a module: the same variables, another source text and directory.
    pub fn child(&self, source: Source, dir: PathBuf) -> Templates {
        Templates { env: self.env.clone(), vars: self.vars.clone(), context: self.context.clone(), source, dir }
    }

    /// The playbook text that spans point into.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Where relative `template:` and `source:` paths start.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        self.env.render_str(text, &self.context).map_err(|e| self.explain(&self.source, span, text, e))
    }

    /// Renders a template file relative to the playbook; errors point into that file.
    pub fn render_file(&self, relative: &str, span: Span) -> Result<String, PlaybookError> {
        let text = self.read_text(relative, span)?;
        let file = Source::new(self.dir.join(relative).display().to_string(), text.as_str());
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
        note_read(&self.dir, relative, &bytes);
        Ok(bytes)
    }

    /// Evaluates a `when:` expression.
    pub fn eval(&self, expr: &str, span: Span) -> Result<bool, PlaybookError> {
        let compiled = self.env.compile_expression(expr).map_err(|e| self.explain(&self.source, span, expr, e))?;
        let value = compiled.eval(&self.context).map_err(|e| self.explain(&self.source, span, expr, e))?;
        Ok(value.is_true())
    }

    fn read_text(&self, relative: &str, span: Span) -> Result<String, PlaybookError> {
        let bytes = crate::host::read_input(&self.dir.join(relative)).map_err(|e| self.missing(relative, span, e))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            let e =
                std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text; use `source:` for bytes");
            self.missing(relative, span, e)
        })?;
        note_read(&self.dir, relative, text.as_bytes());
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
                let help = match did_you_mean(name, self.vars.keys().map(String::as_str)) {
                    Some(close) => format!(
                        "did you mean `{close}`? Otherwise define `{name}` under `vars:` or pass --var {name}=VALUE"
                    ),
                    None => format!("define `{name}` under `vars:`, or pass --var {name}=VALUE"),
                };
                return source.error(span, format!("undefined variable `{name}`"), "used here").help(help);
            }
        }
        let detail = e.detail().map(str::to_owned).unwrap_or_else(|| e.kind().to_string());
        source
            .error(span, format!("template error: {detail}"), "in this template")
            .help("see the template syntax at https://docs.rs/minijinja")
    }
}

/// A file that a `template:` or `source:` read, relative to `dir` (the playbook's or a module's).
#[derive(Debug, Clone)]
pub struct FileRead {
    pub dir: PathBuf,
    pub relative: String,
    pub bytes: Vec<u8>,
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

fn note_read(dir: &Path, relative: &str, bytes: &[u8]) {
    READS.with(|r| {
        if let Some(reads) = r.borrow_mut().as_mut() {
            reads.push(FileRead { dir: dir.to_path_buf(), relative: relative.to_owned(), bytes: bytes.to_vec() });
        }
    });
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        _ => e.to_string(),
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
