//! `converge modules`: the modules a playbook can `use:`, with their parameters; `converge
//! modules NAME`: the resources one makes with the parameters given (`--var`).

use std::path::Path;

use crate::engine::resolve::{NOT_SECRET, VarsInput, module_entries};
use crate::error::{Error, PlaybookErrors, Result, Source, did_you_mean};
use crate::output::Printer;
use crate::playbook::module::{self, Expansion, Module, Shown};
use crate::playbook::template::Templates;
use crate::playbook::yaml_node::{Node, Span, Value};

/// Lists the modules, or shows the one called `name`.
pub fn run(name: Option<&str>, playbook: Option<&Path>, vars: &VarsInput, printer: &mut Printer) -> Result<u8> {
    let dir = match playbook {
        Some(path) => path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")),
        None => Path::new("."),
    };
    match name {
        None => list(dir, printer),
        Some(name) => show(name, dir, vars, printer),
    }
}

fn list(dir: &Path, printer: &mut Printer) -> Result<u8> {
    let mut modules = Vec::new();
    for found in module::all(dir) {
        match found {
            Ok(m) => modules.push(m),
            Err(errors) => return Err(module_errors(errors)),
        }
    }
    printer.modules(&modules);
    Ok(0)
}

fn module_errors(errors: Vec<crate::error::PlaybookError>) -> Error {
    let path = errors.first().map(|e| e.src.name().to_owned()).unwrap_or_default();
    PlaybookErrors { path, errors }.into()
}

/// The module's resources with its parameters filled in: each `--var NAME=VALUE` is a parameter.
fn show(name: &str, dir: &Path, vars: &VarsInput, printer: &mut Printer) -> Result<u8> {
    let module = match module::find(name, dir) {
        Some(found) => found.map_err(module_errors)?,
        None => return Err(unknown(name, dir)),
    };
    let given: Vec<&str> = vars.vars.iter().chain(&vars.secret_vars).map(|(k, _)| k.as_str()).collect();
    check_required(&module, &given)?;
    for (_, value) in &vars.secret_vars {
        crate::playbook::redact::add(value);
    }
    let (source, name_node, with) = command_line(name, vars);
    let templates = Templates::new(source.clone(), dir.to_path_buf());
    let mut errors = Vec::new();
    let expanded = module::expand(&name_node, Some(&with), &templates, &mut errors);
    let Some((module, scope)) = expanded.filter(|_| errors.is_empty()) else {
        return Err(PlaybookErrors { path: source.name.clone(), errors }.into());
    };
    let mut resources = Vec::new();
    for (node, entry) in module_entries(&module, &scope, &mut errors) {
        let kind = node.as_map_first_key().unwrap_or_default().to_owned();
        let shown = match entry {
            Some(entry) => module::shown_node(node, &scope, entry.sensitive, NOT_SECRET)
                .map(|node| Shown::Resource { id: entry.id.to_string(), node }),
            None => Ok(Shown::LeftOut { kind, when: when_of(node, &module.source.text) }),
        };
        shown.map(|s| resources.push(s)).unwrap_or_else(|e| errors.push(e));
    }
    if !errors.is_empty() {
        return Err(PlaybookErrors { path: source.name.clone(), errors }.into());
    }
    let params = Expansion::params(&module, &scope, &given);
    printer.module_resources(&Expansion { module, params, resources });
    Ok(0)
}

/// No module by that name: the error names those there are.
fn unknown(name: &str, dir: &Path) -> Error {
    let names: Vec<String> = module::all(dir).into_iter().flatten().map(|m| m.name).collect();
    let close = did_you_mean(name, names.iter().map(String::as_str)).map(|c| format!(" ({c})")).unwrap_or_default();
    let names = names.join(", ");
    Error::Usage {
        message: format!(
            "no module `{name}`{close}; the modules here are {names} (for a playbook's own modules/, give --playbook FILE)"
        ),
    }
}

/// Every required parameter that no `--var` gives, in one error with the command line to run.
fn check_required(module: &Module, given: &[&str]) -> Result<()> {
    let missing: Vec<_> =
        module.params.iter().filter(|p| p.default.is_none() && !given.contains(&p.name.as_str())).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name.as_str()).collect();
    let flags: Vec<String> = names.iter().map(|name| format!("--var {name}=...")).collect();
    let (name, names, flags) = (&module.name, names.join(", "), flags.join(" "));
    Err(Error::Usage {
        message: format!(
            "module `{name}` needs {names} (`converge modules` says what each is); give each with --var: \
             converge modules {name} {flags}"
        ),
    })
}

/// The command line as a source text, so that a mistake in a parameter is shown where it is:
/// the module's name, and `with:` made of the `--var` values (strings, as a playbook would
/// quote them).
fn command_line(name: &str, vars: &VarsInput) -> (Source, Node, Node) {
    let mut text = format!("converge modules {name}");
    let name_node = Node { span: Span { offset: 17, len: name.len() }, value: Value::String(name.to_owned()) };
    let mut entries = Vec::new();
    for (key, value) in vars.vars.iter().chain(&vars.secret_vars) {
        text.push_str(" --var ");
        let key_node = Node { span: Span { offset: text.len(), len: key.len() }, value: Value::String(key.clone()) };
        text.push_str(key);
        text.push('=');
        let value_node =
            Node { span: Span { offset: text.len(), len: value.len() }, value: Value::String(value.clone()) };
        text.push_str(value);
        entries.push((key_node, value_node));
    }
    let with = Node { span: Span { offset: 0, len: text.len() }, value: Value::Map(entries) };
    (Source::new("<command line>", text), name_node, with)
}

/// A resource's `when:` as written.
fn when_of(node: &Node, text: &str) -> String {
    node.get("when").map(|w| w.source(text).to_owned()).unwrap_or_default()
}
