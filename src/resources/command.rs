//! `command`: the escape hatch. Runs a program (argv, or a string split as a shell would split
//! it; never through a shell) and stays idempotent because it must say when it is not needed:
//! `creates` (a path that exists once it ran), `unless` (a check command that succeeds when it is
//! not needed) or `onlyif` (a check command that succeeds when it is needed). Checks run during
//! plan, so they must only read. Under `--root`, commands run inside the root (chroot).

use std::path::PathBuf;

use crate::attrs::Attrs;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::resource::{Change, Resource};
use crate::yaml_node::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub argv: Vec<String>,
    pub creates: Option<PathBuf>,
    pub unless: Option<Vec<String>>,
    pub onlyif: Option<Vec<String>>,
    pub cwd: Option<PathBuf>,
}

/// Whether the command is needed, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandActual {
    Needed(String),
    NotNeeded,
}

impl Command {
    pub fn from_attrs(argv: Option<Vec<String>>, at: Span, attrs: &mut Attrs) -> Option<Command> {
        let creates = attrs.path("creates");
        let unless = attrs.argv("unless");
        let onlyif = attrs.argv("onlyif");
        let cwd = attrs.path("cwd");
        let guards = ["creates", "unless", "onlyif"];
        if creates.is_none() && unless.is_none() && onlyif.is_none() && !guards.iter().any(|g| attrs.node(g).is_some())
        {
            attrs.error(
                at,
                "a command needs `creates`, `unless` or `onlyif`",
                "would run on every apply",
                "say when it is done: `creates: /path/it/makes`, or a check such as `unless: test -e /path`",
            );
        }
        Some(Command { argv: argv?, creates, unless, onlyif, cwd })
    }

    fn id(&self) -> String {
        format!("command:{}", shell_words::join(&self.argv))
    }

    fn check(&self, host: &Host, argv: &[String]) -> Result<bool> {
        let status = host
            .program(argv)
            .command()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| {
                Error::resource_io(self.id(), format!("cannot run the check `{}`", shell_words::join(argv)), e)
            })?;
        // Inside a root, unshare(1) runs it, and says 127 when the program is not there: that is
        // a mistake, as on a live host, not a guard that failed.
        if host.root().is_some() && status.code() == Some(127) {
            return Err(Error::resource(
                self.id(),
                format!("cannot run the check `{}`: `{}` is not in the root", shell_words::join(argv), argv[0]),
            ));
        }
        Ok(status.success())
    }
}

impl Resource for Command {
    type Actual = CommandActual;

    fn observe(&self, host: &Host) -> Result<CommandActual> {
        if let Some(path) = &self.creates {
            let exists =
                host.stat(path).map_err(|e| Error::resource_io(self.id(), "cannot check `creates`", e))?.is_some();
            if exists {
                return Ok(CommandActual::NotNeeded);
            }
        }
        if let Some(unless) = &self.unless
            && self.check(host, unless)?
        {
            return Ok(CommandActual::NotNeeded);
        }
        if let Some(onlyif) = &self.onlyif
            && !self.check(host, onlyif)?
        {
            return Ok(CommandActual::NotNeeded);
        }
        let reason = match (&self.creates, &self.unless, &self.onlyif) {
            (Some(path), _, _) => format!("{} does not exist", path.display()),
            (None, Some(unless), _) => format!("`{}` failed", shell_words::join(unless)),
            (None, None, Some(onlyif)) => format!("`{}` succeeded", shell_words::join(onlyif)),
            (None, None, None) => "no guard".into(),
        };
        Ok(CommandActual::Needed(reason))
    }

    fn diff(&self, actual: &CommandActual) -> Vec<Change> {
        match actual {
            CommandActual::Needed(reason) => vec![Change::Run { reason: reason.clone() }],
            CommandActual::NotNeeded => vec![],
        }
    }

    fn apply(&self, _changes: &[Change], host: &Host) -> Result<()> {
        let mut program = host.program(&self.argv);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_only_when_needed() {
        let c =
            Command { argv: vec!["true".into()], creates: Some("/x".into()), unless: None, onlyif: None, cwd: None };
        assert_eq!(c.diff(&CommandActual::NotNeeded), vec![]);
        assert_eq!(
            c.diff(&CommandActual::Needed("/x does not exist".into())),
            vec![Change::Run { reason: "/x does not exist".into() }]
        );
    }
}
