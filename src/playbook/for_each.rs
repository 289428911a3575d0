//! `for_each:` on any resource, as Terraform's `for_each` and Ansible's `loop`: one resource per
//! item of a list (`{{ item }}`) or of a mapping (`{{ key }}` and `{{ value }}`), or of a
//! variable that holds one (`for_each: "{{ sites }}"`, from `vars:` or a `--vars-file`; a
//! `--var` is a string). Each instance is the same entry resolved with its own variables, so every
//! kind has it, its errors point at the entry's lines, and its id is its own (`file: /etc/app/{{
//! item }}.conf` makes `file:/etc/app/a.conf`). Items of a secret variable are secret: they are
//! named by their number (`item #2`), and the resources that use them are sensitive.

use minijinja::Value as Jinja;
use minijinja::value::ValueKind;

use crate::error::PlaybookError;
use crate::playbook::template::{Templates, to_jinja};
use crate::playbook::yaml_node::{Node, Span, Value};

/// The attribute's name.
pub const KEY: &str = "for_each";

/// One instance of an entry with `for_each:`.
pub struct Instance {
    /// The playbook's variables with `item` (or `key` and `value`) set.
    pub templates: Templates,
    /// How messages name it: `item "b"`, `key "a"`, `item #2`.
    pub label: String,
}

/// Where the entry's `for_each:` is (its key) and its instances, in order; None when it has no
/// `for_each:`.
/// A `for_each:` that is no list or mapping is an error (and no instance).
pub fn instances(
    entry: &Node,
    templates: &Templates,
    errors: &mut Vec<PlaybookError>,
) -> Option<(Span, Vec<Instance>)> {
    let Value::Map(pairs) = &entry.value else { return None };
    let (key, node) = pairs.iter().find(|(k, _)| k.as_str() == Some(KEY))?;
    templates.take_used();
    let items = match items(node, templates) {
        Ok(items) => items,
        Err(e) => {
            errors.push(e);
            return Some((key.span, Vec::new()));
        }
    };
    let secret = templates.take_used().iter().any(|v| templates.is_secret(v));
    let instances = items.into_iter().enumerate().map(|(n, item)| instance(templates, item, n + 1, secret)).collect();
    Some((key.span, instances))
}

/// One item: a list's, or a mapping's key and value.
enum Item {
    Of(Jinja),
    Pair(String, Jinja),
}

fn instance(templates: &Templates, item: Item, n: usize, secret: bool) -> Instance {
    let mut scope = templates.child(templates.source().clone(), templates.dir().to_path_buf());
    let mut set = |name: &str, value: Jinja| match secret {
        true => scope.set_secret(name.to_owned(), value),
        false => scope.set_var(name.to_owned(), value),
    };
    let label = match item {
        Item::Of(value) => {
            let label = shown(&value);
            set("item", value);
            format!("item {label}")
        }
        Item::Pair(key, value) => {
            let label = shown(&Jinja::from(key.as_str()));
            set("key", Jinja::from(key));
            set("value", value);
            format!("key {label}")
        }
    };
    let label = if secret { format!("item #{n}") } else { label };
    Instance { templates: scope, label }
}

/// An item as messages show it: a string quoted, anything else as minijinja prints it, cut short.
fn shown(value: &Jinja) -> String {
    const LONG: usize = 40;
    let text = match value.as_str() {
        Some(text) => format!("{text:?}"),
        None => value.to_string(),
    };
    match text.char_indices().nth(LONG) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => crate::error::escape(&text).into_owned(),
    }
}

/// The items a `for_each:` node gives: a YAML list or mapping (its strings rendered), or one
/// expression in `{{ }}` whose value is a list or a mapping.
fn items(node: &Node, templates: &Templates) -> Result<Vec<Item>, PlaybookError> {
    let value = |node: &Node| match &node.value {
        Value::String(text) => templates.render(text, node.span).map(Jinja::from),
        _ => Ok(to_jinja(node)),
    };
    match &node.value {
        Value::Seq(list) => list.iter().map(|n| value(n).map(Item::Of)).collect(),
        Value::Map(pairs) => {
            pairs.iter().map(|(k, v)| Ok(Item::Pair(k.as_str().unwrap_or_default().to_owned(), value(v)?))).collect()
        }
        Value::String(text) => {
            let Some(expr) = text.trim().strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) else {
                return Err(not_items(node, templates, "a string"));
            };
            let found = templates.value(expr, node.span)?;
            match found.kind() {
                ValueKind::Seq => Ok(found.try_iter().map(|i| i.map(Item::Of).collect()).unwrap_or_default()),
                ValueKind::Map => Ok(pairs_of(&found)),
                kind => Err(not_items(node, templates, &format!("`{}`, which is {}", expr.trim(), kind_name(kind)))),
            }
        }
        _ => Err(not_items(node, templates, node.type_name())),
    }
}

/// A mapping's keys and values, in its order.
fn pairs_of(map: &Jinja) -> Vec<Item> {
    let keys = map.try_iter().map(|keys| keys.collect::<Vec<_>>()).unwrap_or_default();
    keys.into_iter()
        .map(|key| {
            let value = map.get_item(&key).unwrap_or_default();
            Item::Pair(key.as_str().map(str::to_owned).unwrap_or_else(|| key.to_string()), value)
        })
        .collect()
}

fn kind_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Undefined | ValueKind::None => "nothing",
        ValueKind::Bool => "a boolean",
        ValueKind::Number => "a number",
        ValueKind::String | ValueKind::Bytes => "a string",
        _ => "no list or mapping",
    }
}

fn not_items(node: &Node, templates: &Templates, what: &str) -> PlaybookError {
    templates
        .source()
        .error(node.span, format!("`for_each` must be a list or a mapping, not {what}"), "not a list or mapping")
        .help(
            "write a list (`for_each: [a, b]`, used as `{{ item }}`), a mapping (`{{ key }}`, `{{ value }}`), or one \
             variable that holds one (`for_each: \"{{ sites }}\"`, defined under `vars:` or in a --vars-file; a --var \
             is always a string)",
        )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::error::Source;

    fn expand(yaml: &str, vars: &[(&str, &str)]) -> Result<Vec<(String, String)>, Vec<PlaybookError>> {
        let source = Source::new("p.yml", yaml);
        let node = Node::parse(yaml).unwrap();
        let mut templates = Templates::new(source, PathBuf::from("."));
        for (name, value) in vars {
            let value = Node::parse(value).unwrap();
            templates.set_var((*name).into(), to_jinja(&value));
        }
        let mut errors = Vec::new();
        let (_, instances) = instances(&node, &templates, &mut errors).expect("a for_each");
        if !errors.is_empty() {
            return Err(errors);
        }
        let render = |i: &Instance| {
            let text = if i.label.contains("item") { "{{ item }}" } else { "{{ key }}={{ value }}" };
            i.templates.render(text, Span::default())
        };
        Ok(instances.iter().map(|i| (i.label.clone(), render(i).unwrap())).collect())
    }

    #[test]
    fn a_list_gives_item_and_a_mapping_key_and_value() {
        let list = expand("for_each: [a, b]\n", &[]).unwrap();
        assert_eq!(list, [("item \"a\"".into(), "a".into()), ("item \"b\"".into(), "b".into())]);
        let map = expand("for_each: {web: 80, api: 8080}\n", &[]).unwrap();
        assert_eq!(map, [("key \"web\"".into(), "web=80".into()), ("key \"api\"".into(), "api=8080".into())]);
    }

    #[test]
    fn a_variable_of_vars_gives_its_items_and_strings_are_rendered() {
        let sites = expand("for_each: \"{{ sites }}\"\n", &[("sites", "[one, two]")]).unwrap();
        assert_eq!(sites.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(), ["one", "two"]);
        let rendered = expand("for_each: [\"{{ d }}\", \"www.{{ d }}\"]\n", &[("d", "example.org")]).unwrap();
        assert_eq!(rendered[1].1, "www.example.org");
        let numbers = expand("for_each: \"{{ range(3) | list }}\"\n", &[]).unwrap();
        assert_eq!(numbers.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(), ["0", "1", "2"]);
        let map = expand("for_each: \"{{ ports }}\"\n", &[("ports", "{a: {port: 1}}")]).unwrap();
        assert_eq!(map[0].0, "key \"a\"");
    }

    #[test]
    fn anything_else_is_an_error_saying_what_it_is() {
        let message = |yaml: &str, vars: &[(&str, &str)]| expand(yaml, vars).err().unwrap()[0].message.clone();
        assert_eq!(message("for_each: 3\n", &[]), "`for_each` must be a list or a mapping, not a number");
        assert_eq!(
            message("for_each: \"{{ port }}\"\n", &[("port", "\"80\"")]),
            "`for_each` must be a list or a mapping, not `port`, which is a string"
        );
        assert_eq!(message("for_each: \"{{ nope }}\"\n", &[]), "undefined variable `nope`");
        assert_eq!(message("for_each: sites\n", &[]), "`for_each` must be a list or a mapping, not a string");
    }
}
