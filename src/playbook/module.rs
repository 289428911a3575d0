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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Int,
    Bool,
    List,
}

impl ParamType {
    fn parse(word: &str) -> Option<ParamType> {
        Some(match word {
            "string" => ParamType::String,
            "int" => ParamType::Int,
            "bool" => ParamType::Bool,
            "list" => ParamType::List,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::List => "list",
        }
    }

    fn accepts(self, node: &Node) -> bool {
        matches!(
            (self, &node.value),
            (ParamType::String, Value::String(_))
                | (ParamType::Int, Value::Int(_))
                | (ParamType::Bool, Value::Bool(_))
                | (ParamType::List, Value::Seq(_))
        )
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
                            match did_you_mean(kind_word, ["string", "int", "bool", "list"]) {
                                Some(close) => format!("did you mean `{close}`?"),
                                None => "use string, int, bool or list".to_owned(),
                            },
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
            let help = match did_you_mean(&name, names.iter().map(String::as_str)) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("modules here: {} (see `converge modules`)", names.join(", ")),
            };
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
            let help = match did_you_mean(word, module.params.iter().map(|p| p.name.as_str())) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!(
                    "`{}` takes: {}",
                    module.name,
                    module.params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            };
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
        _ => node.clone(),
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
    Some(to_jinja(&node))
}

/// The span of a `use:` entry, for errors about what it expands to.
pub fn use_span(item: &Node) -> Span {
    item.get("use").map(|n| n.span).unwrap_or(item.span)
}
