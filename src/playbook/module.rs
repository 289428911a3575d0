//! Modules: reusable playbook pieces with typed parameters. A module is a YAML file with a
//! `description`, `params` (each with a `type`, an optional `default` and a `description`) and
//! `resources`, rendered with the parameters as variables. The modules of `modules/` ship inside
//! the binary, so `use: gunicorn` works anywhere; a playbook's own `modules/` folder adds modules
//! or overrides shipped ones of the same name.
//!
//! ```yaml
//! - use: nginx-proxy
//!   with: {name: mysite, upstream: "unix:/run/gunicorn/socket"}
//! ```

use std::path::{Path, PathBuf};

use crate::error::{PlaybookError, Source, did_you_mean};
use crate::playbook::parse_yaml;
use crate::playbook::template::{Templates, to_jinja};
use crate::playbook::yaml_node::{Node, Span, Value};

/// The modules shipped in the binary (the repository's `modules/` folder).
pub const SHIPPED: &[(&str, &str)] = &[
    ("gunicorn", include_str!("../../modules/gunicorn.yml")),
    ("nginx-proxy", include_str!("../../modules/nginx-proxy.yml")),
];

/// The type of a module's parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Int,
    Bool,
    List,
    /// Environment variables: a mapping of NAME (letters, digits, `_`) to a one-line value.
    Environment,
    /// systemd settings of a section: a mapping of Key (letters) to a one-line value or a list
    /// of them (one `Key=value` line each).
    UnitSettings,
}

impl ParamType {
    /// Every type, in the order messages list them.
    pub const ALL: [ParamType; 6] = [
        ParamType::String,
        ParamType::Int,
        ParamType::Bool,
        ParamType::List,
        ParamType::Environment,
        ParamType::UnitSettings,
    ];

    fn parse(word: &str) -> Option<ParamType> {
        ParamType::ALL.into_iter().find(|t| t.name() == word)
    }

    /// Its name in a module's `params:`.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::List => "list",
            ParamType::Environment => "environment",
            ParamType::UnitSettings => "unit_settings",
        }
    }

    fn accepts(self, node: &Node) -> bool {
        matches!(
            (self, &node.value),
            (ParamType::String, Value::String(_))
                | (ParamType::Int, Value::Int(_))
                | (ParamType::Bool, Value::Bool(_))
                | (ParamType::List, Value::Seq(_))
                | (ParamType::Environment | ParamType::UnitSettings, Value::Map(_))
        )
    }

    /// What is wrong with an entry of a mapping of this type, and where, with how to fix it.
    fn entry_problem(self, key: &Node, value: &Node) -> Option<(Span, String, &'static str)> {
        let name = key.as_str().unwrap_or_default();
        let (valid_key, key_help) = match self {
            ParamType::Environment => (
                name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "a variable's name is letters, digits and _, not starting with a digit (DATABASE_URL)",
            ),
            ParamType::UnitSettings => (
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic()),
                "a systemd setting is letters only, as systemd spells it (TimeoutStartSec, LimitNOFILE)",
            ),
            _ => return None,
        };
        if !valid_key {
            return Some((key.span, format!("`{}` is not a valid name here", crate::error::escape(name)), key_help));
        }
        let values = match (&value.value, self) {
            (Value::Seq(items), ParamType::UnitSettings) => items.iter().collect(),
            _ => vec![value],
        };
        for value in values {
            match &value.value {
                Value::String(text) if text.contains(['\n', '\r', '\0']) => {
                    let message = format!("the value of `{name}` holds a line break");
                    return Some((value.span, message, "each value is one line: the file holds one per line"));
                }
                Value::String(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => {}
                _ => {
                    let message = format!("the value of `{name}` must be one value, not {}", value.type_name());
                    let help = match self {
                        ParamType::UnitSettings => {
                            "write a value, or a list of values for a setting given more than once"
                        }
                        _ => "write a string, a number or true/false",
                    };
                    return Some((value.span, message, help));
                }
            }
        }
        None
    }
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub kind: ParamType,
    pub default: Option<Node>,
    pub description: String,
}

/// A loaded module.
#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    pub description: String,
    pub params: Vec<Param>,
    /// Where it came from: "shipped" or its file.
    pub origin: String,
    pub source: Source,
    /// Relative `template:` paths of its resources start here.
    pub dir: PathBuf,
    resources: Vec<Node>,
}

impl Module {
    /// Reads a module's text; mistakes in the module itself are errors in its file.
    pub fn parse(name: &str, source: Source, origin: String, dir: PathBuf) -> Result<Module, Vec<PlaybookError>> {
        let root = parse_yaml(&source).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let description = root.get("description").and_then(Node::as_str).unwrap_or_default().to_owned();
        let mut params = Vec::new();
        if let Some(Node { value: Value::Map(entries), .. }) = root.get("params") {
            for (key, spec) in entries {
                let kind_word = spec.get("type").and_then(Node::as_str).unwrap_or("string");
                let Some(kind) = ParamType::parse(kind_word) else {
                    errors.push(
                        source.error(spec.span, format!("unknown parameter type `{kind_word}`"), "not a type").help(
                            did_you_mean(kind_word, ParamType::ALL.map(ParamType::name)).unwrap_or_else(|| {
                                format!("use one of: {}", ParamType::ALL.map(ParamType::name).join(", "))
                            }),
                        ),
                    );
                    continue;
                };
                let default = spec.get("default").cloned();
                params.push(Param {
                    name: key.as_str().unwrap_or_default().to_owned(),
                    kind,
                    default,
                    description: spec.get("description").and_then(Node::as_str).unwrap_or_default().to_owned(),
                });
            }
        }
        let resources = match root.get("resources") {
            Some(Node { value: Value::Seq(items), .. }) => items.clone(),
            _ => {
                errors.push(
                    source
                        .error(root.span, "a module needs `resources:`", "no resources")
                        .help("list the resources it makes"),
                );
                Vec::new()
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Module { name: name.to_owned(), description, params, origin, source, dir, resources })
    }
}

/// The module called `name`: the playbook's own `modules/NAME.yml` first, then a shipped one.
pub fn find(name: &str, playbook_dir: &Path) -> Option<Result<Module, Vec<PlaybookError>>> {
    let own = playbook_dir.join("modules").join(format!("{name}.yml"));
    if let Ok(text) = crate::host::read_input_text(&own) {
        let source = Source::new(own.display().to_string(), text);
        return Some(Module::parse(name, source, own.display().to_string(), own.parent()?.to_path_buf()));
    }
    let (_, text) = SHIPPED.iter().find(|(n, _)| *n == name)?;
    let source = Source::new(format!("<shipped module {name}>"), *text);
    Some(Module::parse(name, source, "shipped".into(), playbook_dir.to_path_buf()))
}

/// Every module a playbook in `playbook_dir` can use, by name.
pub fn all(playbook_dir: &Path) -> Vec<Result<Module, Vec<PlaybookError>>> {
    let mut names: Vec<String> = SHIPPED.iter().map(|(n, _)| n.to_string()).collect();
    if let Ok(dir) = std::fs::read_dir(playbook_dir.join("modules")) {
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yml")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                && !names.iter().any(|n| n == stem)
            {
                names.push(stem.to_owned());
            }
        }
    }
    names.sort();
    names.iter().filter_map(|name| find(name, playbook_dir)).collect()
}

/// A `use:` entry: the module's resource nodes, with the templates (the playbook's variables
/// plus the parameters) to resolve them with.
pub fn expand(
    name_node: &Node,
    with: Option<&Node>,
    templates: &Templates,
    errors: &mut Vec<PlaybookError>,
) -> Option<(Module, Templates)> {
    let source = templates.source();
    let name =
        templates.render(name_node.as_str().unwrap_or_default(), name_node.span).map_err(|e| errors.push(e)).ok()?;
    let module = match find(&name, templates.dir()) {
        Some(Ok(module)) => module,
        Some(Err(mut module_errors)) => {
            errors.append(&mut module_errors);
            return None;
        }
        None => {
            let names: Vec<String> = all(templates.dir()).into_iter().flatten().map(|m| m.name).collect();
            let help = did_you_mean(&name, names.iter().map(String::as_str))
                .unwrap_or_else(|| format!("modules here: {} (see `converge modules`)", names.join(", ")));
            errors.push(source.error(name_node.span, format!("no module `{name}`"), "unknown module").help(help));
            return None;
        }
    };
    let given: &[(Node, Node)] = match with.map(|w| &w.value) {
        Some(Value::Map(entries)) => entries,
        Some(_) => {
            let span = with.map(|w| w.span).unwrap_or(name_node.span);
            errors.push(
                source
                    .error(span, "`with` must be a mapping of parameters", "not a mapping")
                    .help("write `with: {name: value, ...}`"),
            );
            return None;
        }
        None => &[],
    };
    for (key, _) in given {
        let word = key.as_str().unwrap_or_default();
        if !module.params.iter().any(|p| p.name == word) {
            let help = did_you_mean(word, module.params.iter().map(|p| p.name.as_str())).unwrap_or_else(|| {
                let params: Vec<&str> = module.params.iter().map(|p| p.name.as_str()).collect();
                format!("`{}` takes: {}", module.name, params.join(", "))
            });
            errors.push(
                source
                    .error(key.span, format!("module `{}` has no parameter `{word}`", module.name), "unknown parameter")
                    .help(help),
            );
        }
    }
    let mut scope = templates.child(module.source.clone(), module.dir.clone());
    let before = errors.len();
    for param in &module.params {
        templates.take_used();
        let value = match given.iter().find(|(k, _)| k.as_str() == Some(&param.name)) {
            Some((_, node)) => typed(param, node, templates, source, errors),
            None => match &param.default {
                Some(node) => typed(param, node, &scope, &module.source, errors),
                None => {
                    errors.push(
                        source
                            .error(
                                name_node.span,
                                format!("module `{}` needs the parameter `{}`", module.name, param.name),
                                "missing parameter",
                            )
                            .help(format!(
                                "add `{}: ...` under `with:` ({}: {})",
                                param.name,
                                param.kind.name(),
                                param.description
                            )),
                    );
                    None
                }
            },
        };
        // A parameter made from a secret variable is secret in the module too.
        let secret = templates.take_used().iter().any(|v| templates.is_secret(v));
        match value {
            Some(value) if secret => scope.set_secret(param.name.clone(), value),
            Some(value) => scope.set_var(param.name.clone(), value),
            None => {}
        }
    }
    (errors.len() == before).then_some((module, scope))
}

impl Module {
    pub fn resources(&self) -> &[Node] {
        &self.resources
    }
}

/// A parameter's value, rendered (strings) and checked against its type.
fn typed(
    param: &Param,
    node: &Node,
    templates: &Templates,
    source: &Source,
    errors: &mut Vec<PlaybookError>,
) -> Option<minijinja::Value> {
    let node = match &node.value {
        // A string may be a template; an int or bool given as a template renders to its text.
        Value::String(text) => {
            let rendered = templates.render(text, node.span).map_err(|e| errors.push(e)).ok()?;
            match param.kind {
                ParamType::Int => {
                    rendered.trim().parse::<i64>().map(|n| Node { span: node.span, value: Value::Int(n) }).ok()
                }
                ParamType::Bool => match rendered.trim() {
                    "true" => Some(Node { span: node.span, value: Value::Bool(true) }),
                    "false" => Some(Node { span: node.span, value: Value::Bool(false) }),
                    _ => None,
                },
                _ => Some(Node { span: node.span, value: Value::String(rendered) }),
            }
            .unwrap_or_else(|| node.clone())
        }
        // A list's or a mapping's strings are templates too.
        _ => render_node(node, templates).map_err(|e| errors.push(e)).ok()?,
    };
    if !param.kind.accepts(&node) {
        errors.push(
            source
                .error(
                    node.span,
                    format!("parameter `{}` must be {}, not {}", param.name, param.kind.name(), node.type_name()),
                    "wrong type",
                )
                .help(param.description.clone()),
        );
        return None;
    }
    if let Value::Map(entries) = &node.value {
        let problems: Vec<_> = entries.iter().filter_map(|(k, v)| param.kind.entry_problem(k, v)).collect();
        for (span, message, help) in &problems {
            errors.push(source.error(*span, message.clone(), format!("in `{}`", param.name)).help(*help));
        }
        if !problems.is_empty() {
            return None;
        }
    }
    match param.kind {
        ParamType::Environment | ParamType::UnitSettings => Some(to_jinja(&scalars_as_text(node))),
        _ => Some(to_jinja(&node)),
    }
}

/// The numbers and booleans of a file's settings as the text a file holds for them (`false`, not
/// the template engine's `False`); other nodes as they are.
fn scalars_as_text(node: Node) -> Node {
    let value = match node.value {
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Int(n) => Value::String(n.to_string()),
        Value::Float(f) => Value::String(f.to_string()),
        Value::Seq(items) => Value::Seq(items.into_iter().map(scalars_as_text).collect()),
        Value::Map(entries) => Value::Map(entries.into_iter().map(|(k, v)| (k, scalars_as_text(v))).collect()),
        other => other,
    };
    Node { span: node.span, value }
}

/// A node with each of its strings rendered as a template (keys stay as written).
pub fn render_node(node: &Node, templates: &Templates) -> Result<Node, PlaybookError> {
    let value = match &node.value {
        Value::String(text) => Value::String(templates.render(text, node.span)?),
        Value::Seq(items) => Value::Seq(items.iter().map(|n| render_node(n, templates)).collect::<Result<_, _>>()?),
        Value::Map(entries) => Value::Map(
            entries.iter().map(|(k, v)| Ok((k.clone(), render_node(v, templates)?))).collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    };
    Ok(Node { span: node.span, value })
}

/// A module expanded with given parameters, as `converge modules NAME` shows it.
pub struct Expansion {
    /// The module.
    pub module: Module,
    /// Each parameter: its name, its value, and whether that is the module's default.
    pub params: Vec<(String, minijinja::Value, bool)>,
    /// Its resources in order, rendered.
    pub resources: Vec<Shown>,
}

/// A resource of an expanded module.
pub enum Shown {
    /// Its id, and its entry as a playbook would write it, every template rendered.
    Resource { id: String, node: Node },
    /// Its kind, left out by its `when:` (the expression as written).
    LeftOut { kind: String, when: String },
}

impl Expansion {
    /// The parameters' values from `scope` (what [`expand`] made), marking those not in `given`.
    pub fn params(module: &Module, scope: &Templates, given: &[&str]) -> Vec<(String, minijinja::Value, bool)> {
        let value = |name: &str| scope.var(name).cloned().unwrap_or_default();
        module.params.iter().map(|p| (p.name.clone(), value(&p.name), !given.contains(&p.name.as_str()))).collect()
    }
}

/// A resource of a module rendered for showing: its strings rendered, without the `when:` that
/// kept it, and for a sensitive one every value that names nothing (`keep`) hidden.
pub fn shown_node(node: &Node, scope: &Templates, sensitive: bool, keep: &[&str]) -> Result<Node, PlaybookError> {
    let Value::Map(entries) = &node.value else { return render_node(node, scope) };
    let mut shown = Vec::with_capacity(entries.len());
    for (i, (key, value)) in entries.iter().enumerate() {
        let name = key.as_str().unwrap_or_default();
        if name == "when" {
            continue;
        }
        let hidden = sensitive && i > 0 && !keep.contains(&name);
        let value = match hidden {
            true => Node { span: value.span, value: Value::String("(sensitive)".into()) },
            false => typed_as_written(value, render_node(value, scope)?),
        };
        shown.push((key.clone(), value));
    }
    Ok(Node { span: node.span, value: Value::Map(shown) })
}

/// A template that rendered a boolean (`"{{ remove_default }}"` gives `True`) as the boolean a
/// playbook writes.
fn typed_as_written(template: &Node, rendered: Node) -> Node {
    let is_template = matches!(&template.value, Value::String(t) if t.contains("{{"));
    let value = match &rendered.value {
        Value::String(text) if is_template && text.eq_ignore_ascii_case("true") => Value::Bool(true),
        Value::String(text) if is_template && text.eq_ignore_ascii_case("false") => Value::Bool(false),
        _ => return rendered,
    };
    Node { span: rendered.span, value }
}

/// The span of a `use:` entry, for errors about what it expands to.
pub fn use_span(item: &Node) -> Span {
    item.get("use").map(|n| n.span).unwrap_or(item.span)
}
