//! `command`: the escape hatch. Runs a program (argv, or a string split as a shell would split
//! it; never through a shell) and stays idempotent because it must say when it is not needed:
//! `creates` (a path that exists once it ran), `unless` (a check command that succeeds when it is
//! not needed) or `onlyif` (a check command that succeeds when it is needed). Checks run during
//! plan, so they must only read. Under `--root`, commands run inside the root (chroot).
//!
//! With `on_change:` (ids of resources of the playbook) it runs only in a run that changed one of
//! them, after them, once: the engine decides that (engine/on_change.rs), and a guard it also has
//! must still say it is needed (docs/triggers.md, "Commands on a change").

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::kinds::Kind;
use crate::kinds::resource::{Change, Need, Resource, ResourceId};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{Table, Type, attr};
use crate::playbook::yaml_node::{Node, Span, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Command {
    pub argv: Vec<String>,
    pub creates: Option<PathBuf>,
    pub unless: Option<Vec<String>>,
    pub onlyif: Option<Vec<String>>,
    pub cwd: Option<PathBuf>,
    /// `name:`, the command's id instead of its argv (`command:NAME`).
    pub name: Option<String>,
    /// `environment:`, set for the command and its checks (a secret need not sit in argv).
    pub environment: Vec<(String, String)>,
    /// `on_change:`, the resources whose change makes it run (with where each is named).
    #[serde(default)]
    pub on_change: Vec<(ResourceId, Span)>,
}

/// Whether the command is needed, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandActual {
    Needed(String),
    NotNeeded,
}

impl Command {
    /// Builds it; `argv` is the kind key's value, read first.
    fn build(argv: Option<Vec<String>>, name_node: &Node, attrs: &mut Attrs) -> Option<Command> {
        let at = name_node.span;
        let creates = attrs.path("creates");
        let unless = attrs.argv("unless");
        let onlyif = attrs.argv("onlyif");
        let cwd = attrs.path("cwd");
        let name = attrs.node("name").and_then(|node| {
            let name = attrs.render_string("name", node)?;
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                attrs.error(
                    node.span,
                    "`name` must be a non-empty line of text",
                    "not a name",
                    "name the command, such as `name: create-database`",
                );
                return None;
            }
            Some(name)
        });
        let environment = environment(attrs);
        let on_change = crate::kinds::ids(attrs, "on_change");
        let guards = ["creates", "unless", "onlyif", "on_change"];
        if creates.is_none()
            && unless.is_none()
            && onlyif.is_none()
            && on_change.is_empty()
            && !guards.iter().any(|g| attrs.node(g).is_some())
        {
            attrs.error(
                at,
                "a command needs `creates`, `unless`, `onlyif` or `on_change`",
                "would run on every apply",
                "say when it is done: `creates: /path/it/makes`, a check such as `unless: test -e /path`, or what it \
                 follows: `on_change: [file:/etc/app.conf]`",
            );
        }
        Some(Command { argv: argv?, creates, unless, onlyif, cwd, name, environment, on_change })
    }

    /// The command for `argv`, with the environment; the program must exist (under `--root`,
    /// chroot would only say so in an exit status, which a check would take for "failed").
    fn prepare<'h>(&self, host: &'h Host, argv: &[String]) -> Result<crate::host::Program<'h>> {
        if host.root().is_some() && !program_exists(host, &argv[0]) {
            return Err(Error::resource(
                self.id(),
                format!("cannot run `{}`: no such program in the root", crate::error::escape(&argv[0])),
            ));
        }
        let mut program = host.program(argv);
        for (name, value) in &self.environment {
            program = program.env(name, value);
        }
        Ok(program)
    }

    /// Runs a guard; its exit status.
    fn check(&self, host: &Host, argv: &[String]) -> Result<std::process::ExitStatus> {
        let status = self
            .prepare(host, argv)?
            .command()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| {
                Error::resource_io(self.id(), format!("cannot run the check `{}`", shell_words::join(argv)), e)
            })?;
        Ok(status)
    }
}

/// `environment:`: a mapping of variable names to strings, each rendered.
fn environment(attrs: &mut Attrs) -> Vec<(String, String)> {
    let Some(node) = attrs.node("environment") else { return Vec::new() };
    let Value::Map(entries) = &node.value else {
        attrs.error(
            node.span,
            "`environment` must be a mapping",
            "expected `NAME: value` lines",
            "write `environment: {PGPASSWORD: \"{{ db_password }}\"}`",
        );
        return Vec::new();
    };
    let mut environment = Vec::new();
    for (key, value) in entries {
        let name = key.as_str().unwrap_or_default();
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            let shown = crate::error::escape(name).into_owned();
            attrs.error(
                key.span,
                format!("`{shown}` is not an environment variable name"),
                "not a name",
                "names are letters, digits and _, not starting with a digit (such as PGPASSWORD)",
            );
            continue;
        }
        if let Some(value) = attrs.render_string("environment", value) {
            environment.push((name.to_owned(), value));
        }
    }
    environment
}

/// Whether `program` exists inside the offline root: a path as it is, a bare name on the PATH
/// that chroot searches.
fn program_exists(host: &Host, program: &str) -> bool {
    let exists = |path: &str| host.stat(std::path::Path::new(path)).ok().flatten().is_some();
    if program.contains('/') {
        // A relative path is relative to `cwd`, which chroot resolves itself.
        return !program.starts_with('/') || exists(program);
    }
    // The PATH the program runs with (host/process.rs), not the operator's.
    crate::host::PATH.split(':').any(|dir| exists(&format!("{dir}/{program}")))
}

impl Resource for Command {
    type Actual = CommandActual;

    const KIND: Kind = Kind::Command;

    const TABLE: Table = Table {
        names: Type::Argv,
        doc: "a command run only when its guard says it is needed (no shell)",
        attrs: &[
            attr("creates", Type::Path, "run only while this path does not exist"),
            attr("unless", Type::Argv, "run only when this command fails"),
            attr("onlyif", Type::Argv, "run only when this command succeeds"),
            attr("cwd", Type::Path, "the working directory"),
            attr("name", Type::String, "its id (`command:NAME`) instead of its argv"),
            attr("environment", Type::Environment, "environment variables of the command and its checks"),
            attr("on_change", Type::Strings, "ids of resources: run only in a run that changed one of them, after them"),
        ],
    };

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<Command> {
        let argv = attrs.argv(Self::KIND.name());
        Command::build(argv, name, attrs)
    }

    /// `name:`, else its argv.
    fn name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => shell_words::join(&self.argv),
        }
    }

    fn needs(&self) -> Vec<Need> {
        let changed = self.on_change.iter().map(|(id, _)| Need::Changed(id.clone()));
        self.creates.iter().map(|path| Need::Inside(path.clone())).chain(changed).collect()
    }

    fn names_ids(&self) -> Vec<(&ResourceId, Span)> {
        self.on_change.iter().map(|(id, span)| (id, *span)).collect()
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.creates.iter().cloned().collect()
    }

    fn not_restored(&self) -> Option<&'static str> {
        Some("a command that ran cannot be undone")
    }

    fn observe(&self, host: &Host) -> Result<CommandActual> {
        if let Some(path) = &self.creates {
            let exists =
                host.stat(path).map_err(|e| Error::resource_io(self.id(), "cannot check `creates`", e))?.is_some();
            if exists {
                return Ok(CommandActual::NotNeeded);
            }
        }
        // Why it runs, as the plan says it: "(runs: `test -e /x` exited 1)". A guard that exits
        // non-zero is the guard doing its job, so the words are its exit status, never "failed".
        let mut why = Vec::new();
        if let Some(unless) = &self.unless {
            let status = self.check(host, unless)?;
            if status.success() {
                return Ok(CommandActual::NotNeeded);
            }
            why.push(format!("`{}` {}", shell_words::join(unless), exited(status)));
        }
        if let Some(onlyif) = &self.onlyif {
            let status = self.check(host, onlyif)?;
            if !status.success() {
                return Ok(CommandActual::NotNeeded);
            }
            why.push(format!("`{}` {}", shell_words::join(onlyif), exited(status)));
        }
        if let Some(path) = &self.creates {
            why.insert(0, format!("{} does not exist", path.display()));
        }
        let reason = if why.is_empty() { "no guard".to_owned() } else { why.join(", ") };
        Ok(CommandActual::Needed(reason))
    }

    fn diff(&self, actual: &CommandActual) -> Vec<Change> {
        match actual {
            CommandActual::Needed(reason) => vec![Change::Run { reason: reason.clone() }],
            CommandActual::NotNeeded => vec![],
        }
    }

    fn apply(&self, _changes: &[Change], host: &Host) -> Result<()> {
        let mut program = self.prepare(host, &self.argv)?;
        if let Some(cwd) = &self.cwd {
            program = program.cwd(cwd);
        }
        let output = program
            .command()
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::resource_io(self.id(), format!("cannot run `{}`", self.argv[0]), e))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::resource(self.id(), format!("failed ({}): {}", output.status, stderr.trim())));
        }
        Ok(())
    }
}

/// "exited 1", or "was killed by signal 9".
fn exited(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_only_when_needed() {
        let c = Command {
            argv: vec!["true".into()],
            creates: Some("/x".into()),
            unless: None,
            onlyif: None,
            cwd: None,
            name: None,
            environment: vec![],
            on_change: vec![],
        };
        assert_eq!(c.diff(&CommandActual::NotNeeded), vec![]);
        assert_eq!(
            c.diff(&CommandActual::Needed("/x does not exist".into())),
            vec![Change::Run { reason: "/x does not exist".into() }]
        );
    }
}
