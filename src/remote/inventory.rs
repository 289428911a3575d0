//! `Inventory`: the hosts of a fleet in one YAML file, their groups, variables and SSH settings;
//! and `--limit`, which picks some of them.
//!
//! ```yaml
//! user: deploy                # SSH defaults for every host: user, port, key, become
//! vars: {site: mysite}        # variables for every host
//! hosts:
//!   web1: {address: 10.0.0.11}
//!   web2: {address: 10.0.0.12, port: 2222, vars: {workers: 5}}
//!   db1:                      # no address: ssh connects to `db1` (DNS, or a Host of --ssh-config)
//! groups:
//!   web:
//!     hosts: [web1, web2]
//!     vars: {role: web}
//!     become: true
//! ```
//!
//! A setting of the host beats its groups' (a later group beats an earlier one), which beat the
//! top level. Variables merge the same way, and sit between the playbook's `vars:` and the
//! command line: `vars:` < inventory < `--vars-file` < `--var`. Like `--vars-file` values, they
//! are taken as written, not rendered as templates. Mistakes are reported like a playbook's: all
//! at once, each with its line and a hint.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, PlaybookError, PlaybookErrors, Result, Source, did_you_mean};
use crate::playbook::parse_yaml;
use crate::playbook::yaml_node::{Node, Value};

use super::target::Target;

/// The hosts of an inventory file, in the order they are written.
#[derive(Debug)]
pub struct Inventory {
    pub hosts: Vec<Target>,
    /// Group names, for `--limit`.
    pub groups: Vec<String>,
}

const TOP: &[&str] = &["hosts", "groups", "vars", "user", "port", "key", "become"];
const HOST: &[&str] = &["address", "vars", "user", "port", "key", "become"];
const GROUP: &[&str] = &["hosts", "vars", "user", "port", "key", "become"];

/// SSH settings at one level (top, group or host); None leaves it to the level below.
#[derive(Debug, Default, Clone)]
struct Settings {
    user: Option<String>,
    port: Option<u16>,
    key: Option<PathBuf>,
    become_root: Option<bool>,
    vars: serde_json::Map<String, serde_json::Value>,
}

impl Settings {
    /// `self` over `below`.
    fn over(&self, below: &Settings) -> Settings {
        let mut vars = below.vars.clone();
        vars.extend(self.vars.clone());
        Settings {
            user: self.user.clone().or_else(|| below.user.clone()),
            port: self.port.or(below.port),
            key: self.key.clone().or_else(|| below.key.clone()),
            become_root: self.become_root.or(below.become_root),
            vars,
        }
    }
}

struct Reader<'a> {
    source: &'a Source,
    dir: &'a Path,
    errors: Vec<PlaybookError>,
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Inventory> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let source = Source::new(path.display().to_string(), text);
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Inventory::parse(&source, dir)
    }

    /// Reads an inventory's text; relative `key:` paths start at `dir`.
    pub fn parse(source: &Source, dir: &Path) -> Result<Inventory> {
        let root = parse_yaml(source).map_err(|e| PlaybookErrors { path: source.name.clone(), errors: vec![e] })?;
        let mut reader = Reader { source, dir, errors: Vec::new() };
        let inventory = reader.inventory(&root);
        if reader.errors.is_empty() {
            Ok(inventory)
        } else {
            Err(PlaybookErrors { path: source.name.clone(), errors: reader.errors }.into())
        }
    }

    /// The hosts that `pattern` selects: comma-separated host or group names or globs (`*`, `?`);
    /// `!PATTERN` excludes. A pattern that matches nothing is an error (a typo would otherwise
    /// quietly converge nothing, or everything).
    pub fn limit(&self, pattern: &str) -> Result<Vec<Target>> {
        let words: Vec<&str> = pattern.split(',').map(str::trim).filter(|w| !w.is_empty()).collect();
        let matches = |word: &str, host: &Target| glob(word, &host.name) || host.groups.iter().any(|g| glob(word, g));
        for word in &words {
            let word = word.trim_start_matches('!');
            if !self.hosts.iter().any(|h| matches(word, h)) {
                let names = self.hosts.iter().map(|h| h.name.as_str()).chain(self.groups.iter().map(String::as_str));
                let help = did_you_mean(word, names).map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default();
                return Err(Error::Usage {
                    message: format!("--limit: `{word}` matches no host or group of the inventory{help}"),
                });
            }
        }
        let (exclude, include): (Vec<&str>, Vec<&str>) = words.iter().partition(|w| w.starts_with('!'));
        Ok(self
            .hosts
            .iter()
            .filter(|h| include.is_empty() || include.iter().any(|w| matches(w, h)))
            .filter(|h| !exclude.iter().any(|w| matches(&w[1..], h)))
            .cloned()
            .collect())
    }
}

impl Reader<'_> {
    fn error(&mut self, node: &Node, message: impl Into<String>, label: &str, help: impl Into<String>) {
        self.errors.push(self.source.error(node.span, message, label).help(help));
    }

    fn inventory(&mut self, root: &Node) -> Inventory {
        let Value::Map(_) = &root.value else {
            self.error(root, "an inventory must be a mapping", "expected `hosts:`", "start the file with `hosts:`");
            return Inventory { hosts: Vec::new(), groups: Vec::new() };
        };
        self.known_keys(root, TOP, "an inventory has");
        let top = self.settings(root);
        let mut hosts: Vec<(Target, Settings)> = Vec::new();
        match root.get("hosts") {
            Some(Node { value: Value::Map(entries), .. }) => {
                for (key, value) in entries {
                    let name = key.as_str().unwrap_or_default().to_owned();
                    if hosts.iter().any(|(t, _)| t.name == name) {
                        self.error(key, format!("host `{name}` is listed twice"), "again here", "list each host once");
                        continue;
                    }
                    let own = match &value.value {
                        Value::Null => Settings::default(),
                        Value::Map(_) => {
                            self.known_keys(value, HOST, "a host has");
                            self.settings(value)
                        }
                        _ => {
                            self.error(
                                value,
                                format!("host `{name}` must be a mapping, not {}", value.type_name()),
                                "expected a mapping",
                                "write `NAME: {address: 10.0.0.5, user: deploy}`, or `NAME:` alone",
                            );
                            continue;
                        }
                    };
                    let address = match value.get("address") {
                        Some(node) => match node.as_str() {
                            Some(a) if !a.is_empty() && !a.starts_with('-') => a.to_owned(),
                            _ => {
                                self.error(
                                    node,
                                    "`address` must be a host name or an IP address",
                                    "not an address",
                                    "write `address: 10.0.0.5`",
                                );
                                continue;
                            }
                        },
                        None => name.clone(),
                    };
                    let target = Target {
                        name: name.clone(),
                        destination: address,
                        user: None,
                        port: None,
                        key: None,
                        become_root: false,
                        vars: serde_json::Map::new(),
                        groups: Vec::new(),
                    };
                    hosts.push((target, own));
                }
            }
            Some(other) => self.error(
                other,
                format!("`hosts` must be a mapping of names, not {}", other.type_name()),
                "expected a mapping",
                "write one `NAME: {address: ...}` per line under `hosts:`",
            ),
            None => self.error(
                root,
                "the inventory lists no `hosts:`",
                "no hosts",
                "add `hosts:` with one `NAME: {address: ...}` per line",
            ),
        }

        // Groups, in order: each one's settings apply to its hosts, a later group over an earlier one.
        let mut groups = Vec::new();
        let mut by_host: Vec<Settings> = vec![Settings::default(); hosts.len()];
        if let Some(node) = root.get("groups") {
            let Value::Map(entries) = &node.value else {
                self.error(
                    node,
                    format!("`groups` must be a mapping of names, not {}", node.type_name()),
                    "expected a mapping",
                    "write `NAME: {hosts: [web1, web2]}` under `groups:`",
                );
                return Inventory { hosts: Vec::new(), groups };
            };
            for (key, value) in entries {
                let group = key.as_str().unwrap_or_default().to_owned();
                if hosts.iter().any(|(t, _)| t.name == group) {
                    self.error(
                        key,
                        format!("`{group}` is both a host and a group"),
                        "a host's name",
                        "give the group another name",
                    );
                }
                if !matches!(value.value, Value::Map(_)) {
                    self.error(
                        value,
                        format!("group `{group}` must be a mapping, not {}", value.type_name()),
                        "expected a mapping",
                        "write `NAME: {hosts: [web1, web2], vars: {...}}`",
                    );
                    continue;
                }
                self.known_keys(value, GROUP, "a group has");
                let settings = self.settings(value);
                let members = match value.get("hosts") {
                    Some(Node { value: Value::Seq(items), .. }) => items.clone(),
                    Some(other) => {
                        self.error(
                            other,
                            "a group's `hosts` must be a list of host names",
                            "expected a list",
                            "write `hosts: [web1, web2]`",
                        );
                        Vec::new()
                    }
                    None => Vec::new(),
                };
                for member in &members {
                    let name = member.as_str().unwrap_or_default();
                    match hosts.iter().position(|(t, _)| t.name == name) {
                        Some(i) => {
                            by_host[i] = settings.over(&by_host[i]);
                            hosts[i].0.groups.push(group.clone());
                        }
                        None => {
                            let known = hosts.iter().map(|(t, _)| t.name.as_str());
                            let help = match did_you_mean(name, known) {
                                Some(n) => format!("did you mean `{n}`?"),
                                None => "list the host under `hosts:` first".into(),
                            };
                            self.error(
                                member,
                                format!("group `{group}` names `{name}`, which is not a host of the inventory"),
                                "not a host",
                                help,
                            );
                        }
                    }
                }
                groups.push(group);
            }
        }

        let hosts = hosts
            .into_iter()
            .zip(by_host)
            .map(|((mut target, own), grouped)| {
                let s = own.over(&grouped.over(&top));
                target.user = s.user;
                target.port = s.port;
                target.key = s.key;
                target.become_root = s.become_root.unwrap_or(false);
                target.vars = s.vars;
                target
            })
            .collect();
        Inventory { hosts, groups }
    }

    fn known_keys(&mut self, node: &Node, known: &[&str], what: &str) {
        let Value::Map(entries) = &node.value else { return };
        let mut seen = BTreeSet::new();
        for (key, _) in entries {
            let word = key.as_str().unwrap_or_default();
            if !known.contains(&word) {
                let help = match did_you_mean(word, known.iter().copied()) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => format!("{what}: {}", known.join(", ")),
                };
                self.error(key, format!("unknown key `{word}`"), "unknown key", help);
            } else if !seen.insert(word) {
                self.error(key, format!("`{word}` is given twice"), "again here", "keep one");
            }
        }
    }

    fn settings(&mut self, node: &Node) -> Settings {
        let mut s = Settings::default();
        if let Some(user) = node.get("user") {
            match user.as_str() {
                Some(u) if !u.is_empty() && !u.starts_with('-') => s.user = Some(u.to_owned()),
                _ => self.error(user, "`user` must be a login name", "not a user name", "write `user: deploy`"),
            }
        }
        if let Some(port) = node.get("port") {
            match port.value {
                Value::Int(p) if (1..=65535).contains(&p) => s.port = Some(p as u16),
                _ => self.error(port, "`port` must be a number from 1 to 65535", "not a port", "write `port: 22`"),
            }
        }
        if let Some(key) = node.get("key") {
            match key.as_str() {
                Some(k) if !k.is_empty() => s.key = Some(self.key_path(k)),
                _ => self.error(
                    key,
                    "`key` must be the path of a private key",
                    "not a path",
                    "write `key: ~/.ssh/id_ed25519`",
                ),
            }
        }
        if let Some(b) = node.get("become") {
            match b.value {
                Value::Bool(b) => s.become_root = Some(b),
                _ => self.error(b, "`become` must be true or false", "not a boolean", "write `become: true`"),
            }
        }
        if let Some(vars) = node.get("vars") {
            match &vars.value {
                Value::Map(entries) => {
                    for (key, value) in entries {
                        s.vars.insert(key.as_str().unwrap_or_default().to_owned(), to_json(value));
                    }
                }
                Value::Null => {}
                _ => self.error(
                    vars,
                    format!("`vars` must be a mapping, not {}", vars.type_name()),
                    "expected `name: value` lines",
                    "write one `name: value` per line under `vars:`",
                ),
            }
        }
        s
    }

    /// `~/` is the home directory; other relative paths start at the inventory's directory.
    fn key_path(&self, key: &str) -> PathBuf {
        if let Some(rest) = key.strip_prefix("~/")
            && let Some(home) = std::env::var_os("HOME")
        {
            return PathBuf::from(home).join(rest);
        }
        let path = Path::new(key);
        if path.is_absolute() { path.to_owned() } else { self.dir.join(path) }
    }
}

/// A YAML value as JSON, the format of the vars file that carries it to the target (JSON is YAML).
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => J::from(*n),
        Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or_else(|| J::String(f.to_string())),
        Value::String(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => {
            J::Object(entries.iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), to_json(v))).collect())
        }
    }
}

/// `*` and `?` globs, as shells match file names.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: &str = "user: deploy
vars:
  site: mysite
  workers: 2
hosts:
  web1: {address: 10.0.0.11}
  web2:
    address: 10.0.0.12
    port: 2222
    vars: {workers: 5}
  db1:
groups:
  web:
    hosts: [web1, web2]
    vars: {role: web, workers: 3}
    become: true
  db:
    hosts: [db1]
    user: postgres
    key: keys/db
";

    fn fleet() -> Inventory {
        Inventory::parse(&Source::new("inventory.yml", FLEET), Path::new("/inv")).unwrap()
    }

    #[test]
    fn host_beats_group_beats_top_level() {
        let inv = fleet();
        let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web1", "web2", "db1"]);
        let [web1, web2, db1] = &inv.hosts[..] else { panic!() };
        assert_eq!((web1.destination.as_str(), web1.user.as_deref(), web1.port), ("10.0.0.11", Some("deploy"), None));
        assert_eq!(web2.port, Some(2222));
        assert!(web1.become_root && !db1.become_root);
        assert_eq!(db1.destination, "db1");
        assert_eq!(db1.user.as_deref(), Some("postgres"));
        assert_eq!(db1.key.as_deref(), Some(Path::new("/inv/keys/db")));
        assert_eq!(web1.vars["workers"], 3);
        assert_eq!(web2.vars["workers"], 5);
        assert_eq!(web2.vars["role"], "web");
        assert_eq!(db1.vars["workers"], 2);
        assert_eq!(db1.vars["site"], "mysite");
        assert_eq!(web1.groups, ["web"]);
    }

    #[test]
    fn limit_by_name_group_glob_and_exclusion() {
        let inv = fleet();
        let names = |p: &str| inv.limit(p).unwrap().into_iter().map(|h| h.name).collect::<Vec<_>>();
        assert_eq!(names("web"), ["web1", "web2"]);
        assert_eq!(names("db1,web2"), ["web2", "db1"]);
        assert_eq!(names("*1"), ["web1", "db1"]);
        assert_eq!(names("!web2"), ["web1", "db1"]);
        assert_eq!(names("web,!web1"), ["web2"]);
        let e = inv.limit("web,!db2").unwrap_err().to_string();
        assert!(e.contains("`db2` matches no host or group") && e.contains("did you mean `db1`?"), "{e}");
    }

    #[test]
    fn mistakes_are_reported_at_once_with_hints() {
        let text = "hosts:\n  web1: {adress: 10.0.0.1, port: 70000}\ngroups:\n  web: {hosts: [web2]}\n";
        let Err(Error::Playbook(e)) = Inventory::parse(&Source::new("i.yml", text), Path::new(".")) else { panic!() };
        let messages: Vec<String> =
            e.errors.iter().map(|e| format!("{} / {}", e.message, e.help.clone().unwrap_or_default())).collect();
        assert_eq!(
            messages,
            [
                "unknown key `adress` / did you mean `address`?",
                "`port` must be a number from 1 to 65535 / write `port: 22`",
                "group `web` names `web2`, which is not a host of the inventory / did you mean `web1`?",
            ]
        );
    }

    #[test]
    fn globs() {
        assert!(glob("web*", "web12") && glob("w?b1", "web1") && glob("*", "") && !glob("web?", "web"));
    }
}
