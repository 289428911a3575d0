//! `validate:`: a checker that must accept a file's new content before it replaces the file
//! (`visudo -cf %s` for a sudoers drop-in, `sshd -t -f %s` for sshd_config), as Ansible's
//! `validate`, for `file` (and its templates) and `line_in_file`.
//!
//! The candidate is written beside its target (`.cvg.XXXXXXXX`, with the target's final content,
//! mode and owner), the checker runs on it as an argument vector (never a shell; every `%s`
//! replaced by the candidate's path), and only when it exits 0 is the candidate renamed over the
//! target ([`Host::write_checked`]). A refusal removes the candidate, leaves the old file as it
//! was, and fails the resource with the checker's exit status and message.
//!
//! `nginx_site` checks differently, for a reason: `nginx -t` reads the whole configuration by the
//! files' final names, so the site is put in place, tested, and put back when nginx refuses it
//! (kinds/nginx_site/). Both read a checker's verdict the one way, [`Program::run`]'s
//! [`Failure`].

use std::ffi::OsString;
use std::path::Path;

use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{Failure, Host};
use crate::kinds::resource::ResourceId;
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{Key, Type, attr};

/// What stands for the candidate's path in a checker's arguments.
const CANDIDATE: &str = "%s";

/// The `validate:` attribute.
pub const VALIDATE: Key = attr(
    "validate",
    Type::Argv,
    "a checker the new content must pass before it replaces the file; %s is the candidate's path (`visudo -cf %s`)",
);

/// A checker: an argument vector in which `%s` stands for the candidate's path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validate {
    pub argv: Vec<String>,
}

impl Validate {
    /// `validate:` of an entry: a command line (split into arguments, no shell) or a list; an
    /// error at its line when no argument holds `%s`.
    pub fn from_attrs(attrs: &mut Attrs) -> Option<Validate> {
        let node = attrs.node(VALIDATE.name)?;
        let argv = attrs.argv(VALIDATE.name)?;
        if !argv.iter().any(|arg| arg.contains(CANDIDATE)) {
            attrs.error(
                node.span,
                format!("`validate` never names the file to check: none of its arguments holds `{CANDIDATE}`"),
                "no %s",
                "write %s where the checker takes the file, such as `visudo -cf %s` or `sshd -t -f %s`",
            );
            return None;
        }
        Some(Validate { argv })
    }

    /// Its arguments with every `%s` replaced by `candidate`.
    fn argv_for(&self, candidate: &Path) -> Vec<OsString> {
        // The playbook's path (a string) and an ASCII temporary name: nothing is lost.
        let path = candidate.to_string_lossy();
        self.argv.iter().map(|arg| OsString::from(arg.replace(CANDIDATE, &path))).collect()
    }

    /// Runs it on `candidate` (inside the root under `--root`); what its refusal says of `path`.
    fn check(&self, host: &Host, candidate: &Path, path: &Path) -> std::result::Result<(), String> {
        let program = host.program(&self.argv_for(candidate)).env("LC_ALL", "C");
        program.run(false).map_err(|failure| refusal(&program.shown(), &failure, path))
    }
}

/// Writes `content` at `path` atomically ([`Host::write_atomic`]) with `mode`, uid and gid;
/// with a checker, only once it accepted the candidate: a refusal leaves the file as it was and
/// is the error, with the checker's exit status and message.
pub fn write(
    host: &Host,
    id: &ResourceId,
    validate: Option<&Validate>,
    path: &Path,
    content: &[u8],
    meta: (Mode, u32, u32),
) -> Result<()> {
    let io = |e| Error::resource_io(id, "cannot write it", e);
    let Some(validate) = validate else {
        return host.write_atomic(path, content, meta.0, meta.1, meta.2).map_err(io);
    };
    let checked = host.write_checked(path, content, meta, |candidate| validate.check(host, candidate, path));
    checked.map_err(io)?.map_err(|refusal| Error::resource(id, refusal))
}

/// What a refusal says: the checker as it ran, how it ended and what it said, and that the file
/// was left alone.
fn refusal(shown: &str, failure: &Failure, path: &Path) -> String {
    let kept = format!("{} was left as it was", path.display());
    match failure {
        Failure::Start { error, .. } => format!("cannot run `{shown}` to check the new content: {error}; {kept}"),
        Failure::Streamed(status) => format!("`{shown}` refused the new content ({status}); {kept}"),
        Failure::Said { status, said } if said.is_empty() => {
            format!("`{shown}` refused the new content ({status}), saying nothing; {kept}")
        }
        Failure::Said { status, said } => {
            format!("`{shown}` refused the new content ({status}); {kept}. It said:\n  {}", said.replace('\n', "\n  "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_percent_s_becomes_the_candidate() {
        let validate = Validate { argv: vec!["check".into(), "--file=%s".into(), "%s".into(), "-q".into()] };
        let argv = validate.argv_for(Path::new("/etc/ssh/.cvg.abcdefgh"));
        assert_eq!(argv, ["check", "--file=/etc/ssh/.cvg.abcdefgh", "/etc/ssh/.cvg.abcdefgh", "-q"]);
    }
}
