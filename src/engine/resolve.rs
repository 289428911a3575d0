//! `resolve`: a loaded playbook becomes an ordered list of typed resources.
//!
//! Variables are merged (`secrets:`, `vars:` < `--vars-file`/`--secrets-file` < `--var`/`--secret-var`;
//! a secret one makes every resource using it sensitive), every string is rendered, each entry
//! is built by its kind, ids are checked for duplicates and `after:` ids for existence, and the
//! dependency graph (`engine/graph.rs`) orders the list. Every mistake is collected, so the user
//! sees them all at once, and nothing on the host is read or touched here.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use crate::engine::graph;
use crate::error::{Error, PlaybookError, PlaybookErrors, Result, Source, did_you_mean, nearest};
use crate::kinds::notify::Notify;
use crate::kinds::resource::{ResourceId, Unmerged};
use crate::kinds::{AnyResource, Kind};
use crate::playbook::attrs::Attrs;
use crate::playbook::for_each;
use crate::playbook::template::{Templates, to_jinja};
use crate::playbook::yaml_node::{Node, Span, Value};
use crate::playbook::{Playbook, parse_yaml};

/// Variables given on the command line.
#[derive(Debug, Default, Clone)]
pub struct VarsInput {
    /// `--var k=v`, later ones win.
    pub vars: Vec<(String, String)>,
    /// `--vars-file FILE`, YAML mappings; later files win.
    pub files: Vec<PathBuf>,
    /// `--secret-var k=v`: like `--var`, and secret.
    pub secret_vars: Vec<(String, String)>,
    /// `--secrets-file FILE`: like `--vars-file`, and every value secret.
    pub secret_files: Vec<PathBuf>,
}

/// A `--var` value: `true` and `false` are booleans (so that `when: flag` means what it says);
/// anything else stays the string it is (`1.10` is not the number 1.1). Typed values come from
/// a vars file.
pub fn var_value(text: &str) -> minijinja::Value {
    match text {
        "true" => minijinja::Value::from(true),
        "false" => minijinja::Value::from(false),
        _ => minijinja::Value::from(text),
    }
}

/// One resource of the playbook, ready to plan.
#[derive(Debug)]
pub struct Entry {
    pub id: ResourceId,
    /// The kind key's value in the playbook, for messages.
    pub span: Span,
    pub resource: AnyResource,
    pub notify: Vec<Notify>,
    /// `sensitive: true`, or it uses a secret variable: its values are shown nowhere.
    pub sensitive: bool,
    /// What to hide in this entry's own messages (its values, its variables' values).
    pub secrets: Vec<String>,
    /// The ids its `after:` names.
    pub after: Vec<ResourceId>,
}

impl Entry {
    /// An error of this entry's resource: a sensitive one is named by its entry's id (which
    /// hides what its own would show) and its message keeps none of its values.
    pub fn own_error(&self, error: Error) -> Error {
        if !self.sensitive {
            return error;
        }
        match error {
            // nginx quotes what it refuses (a token, a line): none of it is shown.
            Error::Resource { message, source, .. } if matches!(self.resource, AnyResource::NginxSite(_)) => {
                let first = message.split(':').next().unwrap_or_default().to_owned();
                Error::Resource {
                    id: self.id.to_string(),
                    message: format!("{first} (nginx's message is not shown: the site is sensitive)"),
                    source,
                }
            }
            Error::Resource { message, source, .. } => Error::Resource {
                id: self.id.to_string(),
                message: crate::playbook::redact::apply_with(&message, &self.secrets),
                source,
            },
            Error::Drift { .. } => Error::Drift { id: self.id.to_string() },
            other => other,
        }
    }
}

/// A resolved playbook: its resources in the order they are applied.
#[derive(Debug)]
pub struct Resolved {
    pub name: String,
    pub entries: Vec<Entry>,
    pub source: Source,
    /// What works but is likely to hurt: each of severity warning.
    pub warnings: Vec<PlaybookError>,
    /// Resources a `when:` left out, with the expression, for `plan -v`.
    pub skipped: Vec<(String, String)>,
    /// The variables the templates used, by name; None for a secret one (for saved plans).
    pub variables: Vec<(String, Option<minijinja::Value>)>,
}

const TOP_LEVEL: &[&str] = &["name", "vars", "secrets", "resources"];

pub fn resolve(playbook: &Playbook, input: &VarsInput) -> Result<Resolved> {
    let source = &playbook.source;
    let mut errors: Vec<PlaybookError> = Vec::new();
    let Value::Map(top) = &playbook.root.value else {
        let e = source
            .error(playbook.root.span, "a playbook must be a mapping", "expected `name`, `vars` and `resources`")
            .help("start the file with `resources:` and a list of resources");
        return Err(PlaybookErrors { path: source.name.clone(), errors: vec![e] }.into());
    };
    for (key, _) in top {
        let name = key.as_str().unwrap_or_default();
        if !TOP_LEVEL.contains(&name) {
            let help = did_you_mean(name, TOP_LEVEL.iter().copied())
                .unwrap_or_else(|| "a playbook has `name`, `vars` and `resources`".into());
            errors.push(source.error(key.span, format!("unknown top-level key `{name}`"), "unknown key").help(help));
        }
    }

    let mut templates = Templates::new(source.clone(), playbook.dir.clone());
    let (overridden, file_vars) = command_line_vars(input, &mut templates)?;
    if let Some(secrets) = playbook.root.get("secrets") {
        playbook_vars(secrets, &overridden, true, &mut templates, &mut errors);
    }
    if let Some(vars) = playbook.root.get("vars") {
        playbook_vars(vars, &overridden, false, &mut templates, &mut errors);
    }
    let name = match playbook.root.get("name") {
        Some(node) => node
            .as_str()
            .map(|n| templates.render(n, node.span).map_err(|e| errors.push(e)).unwrap_or_default())
            .unwrap_or_default(),
        None => String::new(),
    };

    let mut entries = Vec::new();
    let mut afters: Vec<Vec<(String, Span)>> = Vec::new();
    let mut skipped = Vec::new();
    match playbook.root.get("resources") {
        Some(Node { value: Value::Seq(items), .. }) => {
            for item in items {
                if item.as_map_first_key() == Some("use") {
                    for (entry, after) in use_module(item, &templates, &mut errors, &mut skipped) {
                        entries.push(entry);
                        afters.push(after);
                    }
                } else {
                    for (entry, after) in resolve_item(item, &templates, &mut errors, &mut skipped) {
                        entries.push(entry);
                        afters.push(after);
                    }
                }
            }
        }
        Some(other) => errors.push(
            source
                .error(other.span, format!("`resources` must be a list, not {}", other.type_name()), "expected a list")
                .help("write each resource as a list item starting with `- `"),
        ),
        None => {}
    }

    let (mut entries, afters) = merge_entries(entries, afters, source, &mut errors);
    let order = order(&entries, &afters, source, &mut errors);
    for (entry, after) in entries.iter_mut().zip(&afters) {
        entry.after = after.iter().filter_map(|(text, _)| text.parse().ok()).collect();
    }
    if !errors.is_empty() {
        return Err(PlaybookErrors { path: source.name.clone(), errors }.into());
    }
    let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    let entries: Vec<Entry> = order.into_iter().map(|i| slots[i].take().expect("each index once")).collect();
    let mut warnings = socket_layout_warnings(&entries, source);
    warnings.extend(unused_vars(&file_vars, &templates));
    warnings.extend(run_directory_warnings(&entries, source));
    let variables = templates.used_variables();
    Ok(Resolved { name, entries, source: source.clone(), warnings, skipped, variables })
}

/// A variable of a vars file (or an inventory) that no template uses is likely a typo.
fn unused_vars(file_vars: &[(Source, String, Span)], templates: &Templates) -> Vec<PlaybookError> {
    let used = templates.all_used();
    file_vars
        .iter()
        .filter(|(_, name, _)| !used.contains(name))
        .map(|(file, name, span)| {
            let help = match nearest(name, used.iter().map(String::as_str)) {
                Some(close) => format!("did you mean `{close}`? The playbook uses `{close}`"),
                None => "no template of the playbook uses it; remove it, or use it".to_owned(),
            };
            file.error(*span, format!("variable `{name}` is not used by the playbook"), "unused").help(help).warning()
        })
        .collect()
}

/// Sets `--vars-file`, `--var`, `--secrets-file` and `--secret-var` values; returns their
/// names, which playbook vars do not override, and the vars files' names with their places.
#[allow(clippy::type_complexity)]
fn command_line_vars(
    input: &VarsInput,
    templates: &mut Templates,
) -> Result<(BTreeSet<String>, Vec<(Source, String, Span)>)> {
    let mut names = BTreeSet::new();
    let mut places = Vec::new();
    let files = input.files.iter().map(|p| (p, false)).chain(input.secret_files.iter().map(|p| (p, true)));
    for (path, secret) in files {
        let file = crate::playbook::read_source(path)?;
        let node = parse_yaml(&file).map_err(|e| PlaybookErrors { path: file.name.clone(), errors: vec![e] })?;
        let Value::Map(vars) = &node.value else {
            let e = file
                .error(node.span, "a vars file must be a mapping of names to values", "not a mapping")
                .help("write `name: value` lines");
            return Err(PlaybookErrors { path: file.name.clone(), errors: vec![e] }.into());
        };
        for (key, value) in vars {
            let name = key.as_str().unwrap_or_default().to_owned();
            if secret {
                templates.set_secret(name.clone(), to_jinja(value));
            } else {
                templates.set_var(name.clone(), to_jinja(value));
                places.push((file.clone(), name.clone(), key.span));
            }
            names.insert(name);
        }
    }
    for (name, value) in &input.vars {
        templates.set_var(name.clone(), var_value(value));
        names.insert(name.clone());
    }
    for (name, value) in &input.secret_vars {
        templates.set_secret(name.clone(), minijinja::Value::from(value.as_str()));
        names.insert(name.clone());
    }
    Ok((names, places))
}

/// `vars:` (or `secrets:`) in order; a string var may use the ones above it. A variable made
/// from a secret one is secret too.
fn playbook_vars(
    vars: &Node,
    overridden: &BTreeSet<String>,
    secret: bool,
    templates: &mut Templates,
    errors: &mut Vec<PlaybookError>,
) {
    let Value::Map(entries) = &vars.value else {
        errors.push(
            templates
                .source()
                .error(
                    vars.span,
                    format!(
                        "`{}` must be a mapping, not {}",
                        if secret { "secrets" } else { "vars" },
                        vars.type_name()
                    ),
                    "expected `name: value` lines",
                )
                .help("write one `name: value` per line"),
        );
        return;
    };
    for (key, value) in entries {
        let name = key.as_str().unwrap_or_default().to_owned();
        if overridden.contains(&name) {
            // A name declared under `secrets:` stays secret whichever file or flag gives it.
            if secret {
                templates.mark_secret(&name);
            }
            continue;
        }
        templates.take_used();
        let rendered = match &value.value {
            Value::String(text) => match templates.render(text, value.span) {
                Ok(text) => minijinja::Value::from(text),
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            },
            _ => to_jinja(value),
        };
        if secret || templates.take_used().iter().any(|v| templates.is_secret(v)) {
            templates.set_secret(name, rendered);
        } else {
            templates.set_var(name, rendered);
        }
    }
}

/// A `use: MODULE` item: the module's resources, resolved with its parameters. Their spans point
/// at the `use:` line, so that ordering errors land in the playbook.
fn use_module(
    item: &Node,
    templates: &Templates,
    errors: &mut Vec<PlaybookError>,
    skipped: &mut Vec<(String, String)>,
) -> Vec<(Entry, Vec<(String, Span)>)> {
    let Value::Map(pairs) = &item.value else { return Vec::new() };
    for (key, _) in pairs {
        let word = key.as_str().unwrap_or_default();
        if !["use", "with", "when"].contains(&word) {
            let help = did_you_mean(word, ["with", "when"])
                .unwrap_or_else(|| "a `use:` entry takes `with:` (the module's parameters) and `when:`".into());
            errors.push(
                templates
                    .source()
                    .error(key.span, format!("unknown key `{word}` in a `use:` entry"), "unknown key")
                    .help(help),
            );
        }
    }
    if let Some(when) = item.get("when") {
        let keep = match &when.value {
            Value::Bool(b) => *b,
            Value::String(expr) => templates.eval(expr, when.span).map_err(|e| errors.push(e)).unwrap_or(false),
            _ => true,
        };
        if !keep {
            let module = item.get("use").and_then(Node::as_str).unwrap_or_default();
            skipped.push((format!("use:{module}"), when.source(&templates.source().text).to_owned()));
            return Vec::new();
        }
    }
    let name = item.get("use").expect("a use entry");
    let Some((module, scope)) = crate::playbook::module::expand(name, item.get("with"), templates, errors) else {
        return Vec::new();
    };
    let at = crate::playbook::module::use_span(item);
    let mut resolved = Vec::new();
    for node in module.resources() {
        for (mut entry, mut after) in module_entry(node, &scope, errors, skipped) {
            // Ordering errors are reported against the playbook: every span at the `use:` line
            // (a span into the module's text would point past the playbook's end).
            entry.span = at;
            after.iter_mut().for_each(|(_, span)| *span = at);
            if entry.id.name.starts_with(SENSITIVE_NAME) {
                let line = templates.source().line_of(at.offset);
                let n = resolved.len() + 1;
                entry.id.name = format!("{SENSITIVE_NAME}{line}, {} #{n})", module.name);
            }
            if let AnyResource::Unit(unit) = &mut entry.resource {
                unit.restart_triggers.iter_mut().chain(&mut unit.reload_triggers).for_each(|(_, span)| *span = at);
            }
            resolved.push((entry, after));
        }
    }
    resolved
}

/// A module's resources resolved with its parameters (`scope`, from
/// [`crate::playbook::module::expand`]), for `converge modules NAME`: each resource node with
/// its entry, or None when its `when:` left it out or it has a mistake (then in `errors`).
pub fn module_entries<'m>(
    module: &'m crate::playbook::module::Module,
    scope: &Templates,
    errors: &mut Vec<PlaybookError>,
) -> Vec<(&'m Node, Option<Entry>)> {
    let mut skipped = Vec::new();
    let mut pairs = Vec::new();
    for node in module.resources() {
        let entries = module_entry(node, scope, errors, &mut skipped);
        match entries.is_empty() {
            true => pairs.push((node, None)),
            // One per item of its `for_each:`.
            false => pairs.extend(entries.into_iter().map(|(entry, _)| (node, Some(entry)))),
        }
    }
    pairs
}

/// One resource of a module (one per item of its `for_each:`): never a `use:` of another.
fn module_entry(
    node: &Node,
    scope: &Templates,
    errors: &mut Vec<PlaybookError>,
    skipped: &mut Vec<(String, String)>,
) -> Vec<WithAfter> {
    if node.as_map_first_key() == Some("use") {
        let e = scope.source().error(node.span, "a module cannot use another module", "nested `use:`");
        errors.push(e.help("list the resources here instead"));
        return Vec::new();
    }
    resolve_item(node, scope, errors, skipped)
}

/// An entry, and the ids its `after:` names with where.
type WithAfter = (Entry, Vec<(String, Span)>);

/// A resource entry of a list: one resource, or one per item of its `for_each:`
/// (playbook/for_each.rs). An instance's mistakes name its item, each mistake once; two instances
/// with one id (that their kind does not add up) are an error at `for_each:`.
fn resolve_item(
    item: &Node,
    templates: &Templates,
    errors: &mut Vec<PlaybookError>,
    skipped: &mut Vec<(String, String)>,
) -> Vec<WithAfter> {
    let Some((at, instances)) = for_each::instances(item, templates, errors) else {
        return resolve_entry(item, templates, errors, skipped).into_iter().collect();
    };
    let source = templates.source();
    let mut made: Vec<(WithAfter, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    for (n, instance) in instances.into_iter().enumerate() {
        let mut own = Vec::new();
        let resolved = resolve_entry(item, &instance.templates, &mut own, skipped);
        let new = own.into_iter().filter(|e| seen.insert((e.span.offset(), e.message.clone())));
        errors.extend(new.map(|e| e.within(&format!("in for_each {}", instance.label))));
        let Some((mut entry, after)) = resolved else { continue };
        if entry.id.name.starts_with(SENSITIVE_NAME) {
            let line = source.line_of(entry.span.offset);
            entry.id.name = format!("{SENSITIVE_NAME}{line}, item #{})", n + 1);
        }
        let twin = made.iter().find(|((e, _), _)| {
            e.id == entry.id && e.resource.clone().merge(&entry.resource) == Err(Unmerged::Duplicate)
        });
        if let Some((_, first)) = twin {
            let message = format!("for_each: {first} and {} both make `{}`", instance.label, entry.id);
            let help = "each item must make its own id: use the item in the resource's name, such as `file: /etc/app/{{ item }}.conf`";
            errors.push(source.error(at, message, "two items, one id").help(help));
            continue;
        }
        made.push(((entry, after), instance.label));
    }
    made.into_iter().map(|(made, _)| made).collect()
}

/// One resource entry: its kind key, its common attributes, then the kind's own.
fn resolve_entry(
    item: &Node,
    templates: &Templates,
    errors: &mut Vec<PlaybookError>,
    skipped: &mut Vec<(String, String)>,
) -> Option<(Entry, Vec<(String, Span)>)> {
    let source = templates.source();
    let (pairs, kind, name) = entry_kind(item, source, errors)?;
    templates.take_used();
    let mut attrs = Attrs::new(pairs, (kind.name(), kind.table()), Kind::NAMES, templates, errors);
    // Expanded before (resolve_item).
    attrs.node(for_each::KEY);
    let notify = notify(&mut attrs);
    let after = attrs.strings("after");
    let when = when(&mut attrs, templates);
    // What `when:` used names no value of the resource.
    let when_vars = templates.take_used();
    attrs.rendered.push(("when".into(), String::new(), when_vars));
    let sensitive = attrs.bool("sensitive").unwrap_or(false);
    let built = AnyResource::from_attrs(kind, name, &mut attrs);
    attrs.note_stray();
    let rendered = std::mem::take(&mut attrs.rendered);
    attrs.finish();
    let used: BTreeSet<String> = rendered.iter().flat_map(|(_, _, vars)| vars.iter().cloned()).collect();
    let sensitive = sensitive || used.iter().any(|v| templates.is_secret(v));
    let Some((mut id, resource)) = built else {
        // Its mistakes are printed with the playbook around them: still hide its values.
        if sensitive {
            hide_values(kind, None, &rendered, templates);
        }
        return None;
    };
    let mut secrets = Vec::new();
    if sensitive {
        (id, secrets) = hide(kind, id, &resource, &rendered, templates, source.line_of(name.span.offset));
    }
    if when == Some(false) {
        let expr = attrs_when(pairs).map(|n| n.source(&source.text).to_owned()).unwrap_or_default();
        skipped.push((id.to_string(), expr));
        return None;
    }
    Some((Entry { id, span: name.span, resource, notify, sensitive, secrets, after: Vec::new() }, after))
}

/// The keys and values of a mapping.
type Pairs = [(Node, Node)];

/// A list item's attributes, its kind (the first key) and the kind key's value.
fn entry_kind<'a>(
    item: &'a Node,
    source: &Source,
    errors: &mut Vec<PlaybookError>,
) -> Option<(&'a Pairs, Kind, &'a Node)> {
    let Value::Map(pairs) = &item.value else {
        errors.push(
            source
                .error(
                    item.span,
                    format!("a resource must be a mapping, not {}", item.type_name()),
                    "expected `kind: name` and attributes",
                )
                .help("write it as `- file: /etc/motd` with its attributes below"),
        );
        return None;
    };
    // The first key names the kind; `group` can also be an attribute (of a file, a user).
    let Some((kind_key, name)) = pairs.first() else {
        errors.push(
            source
                .error(item.span, "an empty resource", "nothing here")
                .help(format!("start the entry with its kind, one of: {}", Kind::NAMES.join(", "))),
        );
        return None;
    };
    let word = kind_key.as_str().unwrap_or_default();
    let Ok(kind) = word.parse::<Kind>() else {
        let help = did_you_mean(word, Kind::NAMES.iter().copied())
            .unwrap_or_else(|| format!("start the entry with its kind, one of: {}", Kind::NAMES.join(", ")));
        errors.push(source.error(kind_key.span, format!("unknown resource kind `{word}`"), "not a kind").help(help));
        return None;
    };
    Some((pairs, kind, name))
}

/// `notify:`, each an action and a unit.
fn notify(attrs: &mut Attrs) -> Vec<Notify> {
    attrs
        .strings("notify")
        .into_iter()
        .filter_map(|(text, span)| {
            Notify::parse(&text)
                .map_err(|help| {
                    attrs.error(span, format!("cannot understand `notify: {text}`"), "not an action and a unit", help)
                })
                .ok()
        })
        .collect()
}

/// `when:` evaluated (true without one); None when it cannot be.
fn when(attrs: &mut Attrs, templates: &Templates) -> Option<bool> {
    match attrs.node("when") {
        Some(Node { value: Value::Bool(b), .. }) => Some(*b),
        Some(node) => match &node.value {
            Value::String(expr) => templates.eval(expr, node.span).map_err(|e| attrs.errors.push(e)).ok(),
            _ => {
                attrs.error(
                    node.span,
                    "`when` must be an expression",
                    "expected an expression",
                    "write an expression such as `when: env == \"prod\"`",
                );
                None
            }
        },
        None => Some(true),
    }
}

fn attrs_when(pairs: &[(Node, Node)]) -> Option<&Node> {
    pairs.iter().find(|(k, _)| k.as_str() == Some("when")).map(|(_, v)| v)
}

/// How the name of a sensitive resource's id starts, when its own would show a secret.
const SENSITIVE_NAME: &str = "(sensitive, line ";

/// Attributes that name things rather than hold values: a sensitive resource still shows them.
pub const NOT_SECRET: &[&str] = &[
    "owner",
    "group",
    "groups",
    "mode",
    "state",
    "notify",
    "after",
    "when",
    "sensitive",
    "enabled",
    "system",
    "create_home",
    "python",
    "cwd",
    "creates",
    "name",
    "remove_default",
    "exact",
    "no_index",
    "uid",
    "gid",
    "home",
    "shell",
    "template",
    "source",
    "active",
    "masked",
    "on_change",
    "restart_triggers",
    "reload_triggers",
    "validate",
];

/// What a sensitive entry hides: the values of its attributes and of the variables they use
/// (those of its name aside, unless they are secret; a command's program aside, and what names
/// things: NOT_SECRET). Those are added to the global redaction list; the entry's own list also
/// has every line of its content, for its own error messages. Its id becomes `kind:(sensitive, line N)` when the name would
/// show a secret (a command without `name:` always).
fn hide(
    kind: Kind,
    id: ResourceId,
    resource: &AnyResource,
    rendered: &[(String, String, BTreeSet<String>)],
    templates: &Templates,
    line: usize,
) -> (ResourceId, Vec<String>) {
    let mut own = hide_values(kind, Some(resource), rendered, templates);
    if let Some(content) = resource.content() {
        own.extend(String::from_utf8_lossy(content.bytes()).lines().map(str::to_owned));
    }
    let named = matches!(resource, AnyResource::Command(c) if c.name.is_some());
    let shows_secret = crate::playbook::redact::apply(&id.name) != id.name;
    let id = if (kind == Kind::Command && !named) || shows_secret {
        ResourceId::new(kind, format!("{SENSITIVE_NAME}{line})"))
    } else {
        id
    };
    (id, own)
}

/// Adds the values of a sensitive entry to the redaction list (see `hide`), and returns them.
fn hide_values(
    kind: Kind,
    resource: Option<&AnyResource>,
    rendered: &[(String, String, BTreeSet<String>)],
    templates: &Templates,
) -> Vec<String> {
    let programs: Vec<&str> = match resource {
        Some(AnyResource::Command(c)) => {
            [Some(&c.argv), c.unless.as_ref(), c.onlyif.as_ref()].into_iter().flatten().map(|a| a[0].as_str()).collect()
        }
        _ => Vec::new(),
    };
    let mut values = Vec::new();
    for (key, value, vars) in rendered {
        let name_key = key == kind.name() && kind != Kind::Command;
        if !name_key && !NOT_SECRET.contains(&key.as_str()) && !programs.contains(&value.as_str()) {
            values.push(value.clone());
            values.extend(vars.iter().flat_map(|v| templates.var_texts(v)));
        }
    }
    for value in &values {
        crate::playbook::redact::add(value);
    }
    values
}

/// Entries with the id of an earlier one are folded into it when their kind adds entries up
/// (the `line_in_file` entries of one file: [`crate::kinds::resource::Resource::merge`]), with
/// their `notify:`, `after:` and secrets; a duplicate is kept for `order` to report.
fn merge_entries(
    entries: Vec<Entry>,
    afters: Vec<Vec<(String, Span)>>,
    source: &Source,
    errors: &mut Vec<PlaybookError>,
) -> (Vec<Entry>, Vec<Vec<(String, Span)>>) {
    let mut kept: Vec<(Entry, Vec<(String, Span)>)> = Vec::with_capacity(entries.len());
    let mut first: HashMap<ResourceId, usize> = HashMap::new();
    for (entry, after) in entries.into_iter().zip(afters) {
        let Some(&at) = first.get(&entry.id) else {
            first.insert(entry.id.clone(), kept.len());
            kept.push((entry, after));
            continue;
        };
        let (earlier, earlier_after) = &mut kept[at];
        match earlier.resource.merge(&entry.resource) {
            Ok(()) => {
                for notify in entry.notify {
                    if !earlier.notify.contains(&notify) {
                        earlier.notify.push(notify);
                    }
                }
                earlier.sensitive |= entry.sensitive;
                earlier.secrets.extend(entry.secrets);
                earlier_after.extend(after);
            }
            Err(Unmerged::Conflict(message)) => {
                let line = source.line_of(earlier.span.offset);
                errors.push(
                    source
                        .error(entry.span, message, "disagrees with an earlier entry")
                        .help(format!("make it agree with the entry on line {line}")),
                );
            }
            Err(Unmerged::Duplicate) => kept.push((entry, after)),
        }
    }
    kept.into_iter().unzip()
}

/// The apply order (`engine/graph.rs`). Reports duplicate ids, ids that name no resource of the
/// playbook (in `after:`, and those a kind names, such as a unit's `restart_triggers`) and cycles.
fn order(
    entries: &[Entry],
    afters: &[Vec<(String, Span)>],
    source: &Source,
    errors: &mut Vec<PlaybookError>,
) -> Vec<usize> {
    let mut index: HashMap<&ResourceId, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        if let Some(&first) = index.get(&entry.id) {
            let line = source.text[..entries[first].span.offset].lines().count().max(1);
            errors.push(
                source
                    .error(entry.span, format!("duplicate resource `{}`", entry.id), "defined again here")
                    .help(format!("it is first defined on line {line}; merge the two entries")),
            );
        } else {
            index.insert(&entry.id, i);
        }
    }
    let mut ids: Vec<String> = index.keys().map(ToString::to_string).collect();
    ids.sort();
    let unknown = |errors: &mut Vec<PlaybookError>, text: &str, span: Span, message: String, example: &str| {
        let help = did_you_mean(text, ids.iter().map(String::as_str)).unwrap_or_else(|| match ids.len() {
            0 => format!("name a resource of this playbook by its id, such as `{example}`"),
            1..=8 => format!("name a resource of this playbook by its id: {}", ids.join(", ")),
            n => format!("name a resource of this playbook by its id: {}, ... ({n} in all)", ids[..8].join(", ")),
        });
        errors.push(source.error(span, message, "unknown resource").help(help));
    };
    let mut nodes = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let mut after = Vec::new();
        for (text, span) in &afters[i] {
            match text.parse::<ResourceId>().ok().and_then(|id| index.get(&id)) {
                Some(&j) => after.push(j),
                None => {
                    let message = format!("`after` names `{text}`, which is not in this playbook");
                    unknown(errors, text, *span, message, "file:/etc/app.conf");
                }
            }
        }
        for (id, span) in entry.resource.names_ids() {
            if !index.contains_key(id) {
                let message = format!("`{id}` is not a resource of this playbook");
                unknown(errors, &id.to_string(), span, message, "virtualenv:/srv/venv");
            }
        }
        nodes.push(graph::Node { id: &entry.id, resource: &entry.resource, after, needs: entry.resource.needs() });
    }
    graph::order(&nodes).unwrap_or_else(|cycle| {
        errors.push(
            source
                .error(entries[cycle.first].span, cycle.to_string(), "part of a cycle")
                .help("remove one of the `after:` entries; converge also orders a parent directory before its contents and a user or group before what it owns"),
        );
        Vec::new()
    })
}

/// A `directory:` under /run or /var/run: a tmpfs, so it is gone after the next boot.
fn run_directory_warnings(entries: &[Entry], source: &Source) -> Vec<PlaybookError> {
    let dirs = entries.iter().filter_map(|e| match &e.resource {
        AnyResource::Directory(d) if d.state == crate::kinds::resource::State::Present => Some((e, &d.path)),
        _ => None,
    });
    dirs.filter_map(|(entry, path)| {
        let help = crate::kinds::tmpfiles::run_directory_help(path)?;
        let message = format!("directory {} is on a tmpfs: it does not survive a reboot", path.display());
        Some(source.error(entry.span, message, "gone after the next boot").help(help).warning())
    })
    .collect()
}

/// The seed's trap (docs/triggers.md, rule 4): a socket listening inside its service's
/// `RuntimeDirectory=`, which systemd removes when the service stops, taking the socket file
/// with it. converge restarts the socket with the service, but a stop by hand still breaks it.
fn socket_layout_warnings(entries: &[Entry], source: &Source) -> Vec<PlaybookError> {
    let units: Vec<(&Entry, &crate::kinds::Unit)> = entries
        .iter()
        .filter_map(|e| match &e.resource {
            AnyResource::Unit(u) => Some((e, u)),
            _ => None,
        })
        .collect();
    let mut warnings = Vec::new();
    for (entry, socket) in units.iter().filter(|(_, u)| u.name.ends_with(".socket")) {
        let Some(socket_file) = socket.parsed() else { continue };
        let by_name = socket.name.replace(".socket", ".service");
        for (_, service) in &units {
            let Some(service_file) = service.parsed() else { continue };
            let paired = service.name == by_name || service_file.list("Service", "Sockets").contains(&socket.name);
            let (dirs, preserved) = service_file.runtime_directories();
            if !paired || preserved {
                continue;
            }
            for path in socket_file.listen_paths() {
                if let Some(dir) = dirs.iter().find(|d| path.starts_with(&format!("{d}/"))) {
                    let warning = source
                        .error(entry.span, format!("{} listens on {path}, inside {}'s RuntimeDirectory {dir}", socket.name, service.name), "socket inside a RuntimeDirectory")
                        .help(format!(
                            "systemd removes {dir} when {} stops, and the socket file with it; converge restarts {} with the service, but a `systemctl stop` by hand leaves a dead socket. Add `RuntimeDirectoryPreserve=yes` to {}, or listen outside {dir} (e.g. /run/{}.sock)",
                            service.name, socket.name, service.name, socket.name.trim_end_matches(".socket")
                        ));
                    warnings.push(warning.warning());
                }
            }
        }
    }
    warnings
}
