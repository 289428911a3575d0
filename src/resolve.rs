//! `resolve`: a loaded playbook becomes an ordered list of typed resources.
//!
//! Variables are merged (`vars:` < `--vars-file` < `--var`), every string is rendered, each entry
//! is built by its kind, ids are checked for duplicates, `after:` and the automatic edges (a
//! parent directory before what is inside it, a user or group before what it owns) order the
//! list, and cycles are reported. Every mistake is collected, so the user sees them all at once,
//! and nothing on the host is read or touched here.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::path::PathBuf;

use crate::attrs::Attrs;
use crate::error::{Error, PlaybookError, PlaybookErrors, PlaybookWarning, Result, Source, did_you_mean};
use crate::playbook::{Playbook, parse_yaml};
use crate::resource::ResourceId;
use crate::resources::{AnyResource, KINDS};
use crate::template::{Templates, to_jinja};
use crate::trigger::Notify;
use crate::yaml_node::{Node, Span, Value};

/// Variables given on the command line.
#[derive(Debug, Default, Clone)]
pub struct VarsInput {
    /// `--var k=v`, later ones win.
    pub vars: Vec<(String, String)>,
    /// `--vars-file FILE`, YAML mappings; later files win.
    pub files: Vec<PathBuf>,
}

/// One resource of the playbook, ready to plan.
#[derive(Debug)]
pub struct Entry {
    pub id: ResourceId,
    /// The kind key's value in the playbook, for messages.
    pub span: Span,
    pub resource: AnyResource,
    pub notify: Vec<Notify>,
    pub sensitive: bool,
}

/// A resolved playbook: its resources in the order they are applied.
#[derive(Debug)]
pub struct Resolved {
    pub name: String,
    pub entries: Vec<Entry>,
    pub source: Source,
    pub warnings: Vec<PlaybookWarning>,
}

const TOP_LEVEL: &[&str] = &["name", "vars", "resources"];

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
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| "a playbook has `name`, `vars` and `resources`".into());
            errors.push(source.error(key.span, format!("unknown top-level key `{name}`"), "unknown key").help(help));
        }
    }

    let mut templates = Templates::new(source.clone(), playbook.dir.clone());
    let overridden = command_line_vars(input, &mut templates)?;
    if let Some(vars) = playbook.root.get("vars") {
        playbook_vars(vars, &overridden, &mut templates, &mut errors);
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
    match playbook.root.get("resources") {
        Some(Node { value: Value::Seq(items), .. }) => {
            for item in items {
                if item.as_map_first_key() == Some("use") {
                    for (entry, after) in use_module(item, &templates, &mut errors) {
                        entries.push(entry);
                        afters.push(after);
                    }
                } else if let Some((entry, after)) = resolve_entry(item, &templates, &mut errors) {
                    entries.push(entry);
                    afters.push(after);
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

    let order = order(&entries, &afters, source, &mut errors);
    if !errors.is_empty() {
        return Err(PlaybookErrors { path: source.name.clone(), errors }.into());
    }
    let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    let entries: Vec<Entry> = order.into_iter().map(|i| slots[i].take().expect("each index once")).collect();
    let mut warnings = socket_layout_warnings(&entries, source);
    warnings.extend(run_directory_warnings(&entries, source));
    Ok(Resolved { name, entries, source: source.clone(), warnings })
}

/// Sets `--vars-file` and `--var` values; returns their names, which playbook vars do not override.
fn command_line_vars(input: &VarsInput, templates: &mut Templates) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for path in &input.files {
        let text = crate::host::read_input_text(path).map_err(|source| Error::Read { path: path.clone(), source })?;
        let file = Source::new(path.display().to_string(), text);
        let node = parse_yaml(&file).map_err(|e| PlaybookErrors { path: file.name.clone(), errors: vec![e] })?;
        let Value::Map(vars) = &node.value else {
            let e = file
                .error(node.span, "a vars file must be a mapping of names to values", "not a mapping")
                .help("write `name: value` lines");
            return Err(PlaybookErrors { path: file.name.clone(), errors: vec![e] }.into());
        };
        for (key, value) in vars {
            let name = key.as_str().unwrap_or_default().to_owned();
            templates.set_var(name.clone(), to_jinja(value));
            names.insert(name);
        }
    }
    for (name, value) in &input.vars {
        templates.set_var(name.clone(), minijinja::Value::from(value.as_str()));
        names.insert(name.clone());
    }
    Ok(names)
}

/// `vars:` in order; a string var may use the ones above it.
fn playbook_vars(
    vars: &Node,
    overridden: &BTreeSet<String>,
    templates: &mut Templates,
    errors: &mut Vec<PlaybookError>,
) {
    let Value::Map(entries) = &vars.value else {
        errors.push(
            templates
                .source()
                .error(
                    vars.span,
                    format!("`vars` must be a mapping, not {}", vars.type_name()),
                    "expected `name: value` lines",
                )
                .help("write one `name: value` per line under `vars:`"),
        );
        return;
    };
    for (key, value) in entries {
        let name = key.as_str().unwrap_or_default().to_owned();
        if overridden.contains(&name) {
            continue;
        }
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
        templates.set_var(name, rendered);
    }
}

/// A `use: MODULE` item: the module's resources, resolved with its parameters. Their spans point
/// at the `use:` line, so that ordering errors land in the playbook.
fn use_module(
    item: &Node,
    templates: &Templates,
    errors: &mut Vec<PlaybookError>,
) -> Vec<(Entry, Vec<(String, Span)>)> {
    let Value::Map(pairs) = &item.value else { return Vec::new() };
    for (key, _) in pairs {
        let word = key.as_str().unwrap_or_default();
        if !["use", "with", "when"].contains(&word) {
            let help = did_you_mean(word, ["with", "when"]).map(|s| format!("did you mean `{s}`?"));
            let help =
                help.unwrap_or_else(|| "a `use:` entry takes `with:` (the module's parameters) and `when:`".into());
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
            return Vec::new();
        }
    }
    let name = item.get("use").expect("a use entry");
    let Some((module, scope)) = crate::module::expand(name, item.get("with"), templates, errors) else {
        return Vec::new();
    };
    let at = crate::module::use_span(item);
    let mut resolved = Vec::new();
    for node in module.resources() {
        if node.as_map_first_key() == Some("use") {
            let e = scope.source().error(node.span, "a module cannot use another module", "nested `use:`");
            errors.push(e.help("list the resources here instead"));
        } else if let Some((mut entry, after)) = resolve_entry(node, &scope, errors) {
            entry.span = at;
            resolved.push((entry, after));
        }
    }
    resolved
}

/// One list item: its kind key, its common attributes, then the kind's own.
fn resolve_entry(
    item: &Node,
    templates: &Templates,
    errors: &mut Vec<PlaybookError>,
) -> Option<(Entry, Vec<(String, Span)>)> {
    let source = templates.source();
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
    let (kind_key, name) = pairs.first()?;
    let word = kind_key.as_str().unwrap_or_default();
    if !KINDS.contains(&word) {
        let help = match did_you_mean(word, KINDS.iter().copied()) {
            Some(kind) => format!("did you mean `{kind}`?"),
            None => format!("start the entry with its kind, one of: {}", KINDS.join(", ")),
        };
        errors.push(source.error(kind_key.span, format!("unknown resource kind `{word}`"), "not a kind").help(help));
        return None;
    }
    let kind = KINDS.iter().copied().find(|k| kind_key.as_str() == Some(k)).expect("matched above");

    let mut attrs = Attrs::new(pairs, kind, templates, errors);
    let notify = attrs
        .strings("notify")
        .into_iter()
        .filter_map(|(text, span)| {
            Notify::parse(&text)
                .map_err(|help| {
                    attrs.error(span, format!("cannot understand `notify: {text}`"), "not an action and a unit", help)
                })
                .ok()
        })
        .collect();
    let after = attrs.strings("after");
    let when = match attrs.node("when") {
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
    };
    let sensitive = attrs.bool("sensitive").unwrap_or(false);
    let built = AnyResource::from_attrs(kind, name, &mut attrs);
    attrs.finish();
    let (id, resource) = built?;
    if when == Some(false) {
        return None;
    }
    Some((Entry { id, span: name.span, resource, notify, sensitive }, after))
}

/// The apply order: the file's order, moved only as far as the edges require (a stable
/// topological sort). Reports unknown `after:` ids, duplicates and cycles.
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
    let dirs: HashMap<&std::path::Path, usize> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.resource {
            AnyResource::Directory(d) => Some((d.path.as_path(), i)),
            _ => None,
        })
        .collect();

    // before[i]: the entries that must come before entry i.
    let mut before: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); entries.len()];
    for (i, entry) in entries.iter().enumerate() {
        for (text, span) in &afters[i] {
            match index.get(&ResourceId(text.clone())) {
                Some(&j) => {
                    before[i].insert(j);
                }
                None => {
                    let ids: Vec<&str> = index.keys().map(|id| id.0.as_str()).collect();
                    let help = match did_you_mean(text, ids) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "name a resource of this playbook by its id, such as `file:/etc/app.conf`".into(),
                    };
                    errors.push(
                        source
                            .error(
                                *span,
                                format!("`after` names `{text}`, which is not in this playbook"),
                                "unknown resource",
                            )
                            .help(help),
                    );
                }
            }
        }
        if let AnyResource::Unit(unit) = &entry.resource {
            for (id, span) in unit.restart_triggers.iter().chain(&unit.reload_triggers) {
                if !index.contains_key(id) {
                    let ids: Vec<&str> = index.keys().map(|id| id.0.as_str()).collect();
                    let help = match did_you_mean(&id.0, ids) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "name a resource of this playbook by its id, such as `virtualenv:/srv/venv`".into(),
                    };
                    errors.push(
                        source
                            .error(*span, format!("`{}` is not a resource of this playbook", id.0), "unknown resource")
                            .help(help),
                    );
                }
            }
        }
        for need in entry.resource.needs() {
            if let Some(&j) = index.get(&need) {
                before[i].insert(j);
            }
        }
        let packages = entry.resource.needs_packages();
        if !packages.is_empty() {
            for (j, other) in entries.iter().enumerate() {
                if other.resource.packages().iter().any(|p| packages.contains(&p.as_str())) {
                    before[i].insert(j);
                }
            }
        }
        if let Some(path) = entry.resource.path() {
            for parent in path.ancestors().skip(1) {
                if let Some(&j) = dirs.get(parent) {
                    before[i].insert(j);
                }
            }
        }
        before[i].remove(&i);
    }

    // Kahn's algorithm, always taking the earliest ready entry.
    let mut waiting: Vec<usize> = before.iter().map(BTreeSet::len).collect();
    let mut after_of: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    for (i, deps) in before.iter().enumerate() {
        for &j in deps {
            after_of[j].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..entries.len()).filter(|&i| waiting[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(entries.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &k in &after_of[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.push(Reverse(k));
            }
        }
    }
    if order.len() < entries.len() {
        let cycle = find_cycle(&before, &waiting);
        let names: Vec<String> = cycle.iter().chain(cycle.first()).map(|&i| entries[i].id.to_string()).collect();
        errors.push(
            source
                .error(entries[cycle[0]].span, format!("dependency cycle: {}", names.join(" -> ")), "part of a cycle")
                .help("remove one of the `after:` entries; converge also orders a parent directory before its contents and a user or group before what it owns"),
        );
    }
    order
}

/// A cycle among the entries that never became ready, following "must come before" edges.
fn find_cycle(before: &[BTreeSet<usize>], waiting: &[usize]) -> Vec<usize> {
    let start = (0..waiting.len()).find(|&i| waiting[i] > 0).expect("a stuck entry");
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = *before[current].iter().find(|&&j| waiting[j] > 0).expect("a stuck entry waits on a stuck entry");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.reverse();
            return cycle;
        }
        path.push(next);
        current = next;
    }
}

/// A `directory:` under /run or /var/run: a tmpfs, so it is gone after the next boot.
fn run_directory_warnings(entries: &[Entry], source: &Source) -> Vec<PlaybookWarning> {
    let dirs = entries.iter().filter_map(|e| match &e.resource {
        AnyResource::Directory(d) if d.state == crate::resource::State::Present => Some((e, &d.path)),
        _ => None,
    });
    dirs.filter_map(|(entry, path)| {
        let help = crate::resources::tmpfiles::run_directory_help(path)?;
        let message = format!("directory {} is on a tmpfs: it does not survive a reboot", path.display());
        Some(source.error(entry.span, message, "gone after the next boot").help(help).into())
    })
    .collect()
}

/// The seed's trap (DESIGN.md section 4, rule 4): a socket listening inside its service's
/// `RuntimeDirectory=`, which systemd removes when the service stops, taking the socket file
/// with it. converge restarts the socket with the service, but a stop by hand still breaks it.
fn socket_layout_warnings(entries: &[Entry], source: &Source) -> Vec<PlaybookWarning> {
    let units: Vec<(&Entry, &crate::resources::SystemdUnit)> = entries
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
                    warnings.push(warning.into());
                }
            }
        }
    }
    warnings
}
