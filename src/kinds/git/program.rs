//! The git processes the kind runs, each an argument vector through host::Program (never a
//! shell), as the checkout's owner, with a clean environment: only the transports file, https,
//! http, ssh and git (`GIT_ALLOW_PROTOCOL`, which submodules honour too), no prompt for a
//! password (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode), `-c safe.directory=PATH` so that git
//! works in a checkout owned by someone else, and no optional lock taken by what only reads.

use std::ffi::OsString;
use std::path::Path;

use crate::host::{Account, Host, PATH};

/// The transports git may use: never `ext::` (runs a command) or `fd::`.
pub const ALLOWED_PROTOCOLS: &str = "file:https:http:ssh:git";

/// Why git did not do what was asked.
#[derive(Debug, Clone, PartialEq)]
pub enum GitError {
    /// There is no git on the host.
    Missing,
    /// It ran and failed: what it said.
    Failed(String),
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitError::Missing => {
                f.write_str("git is not installed on this host: install the package `git` first (`- apt: git`)")
            }
            GitError::Failed(said) => f.write_str(said),
        }
    }
}

/// A ref of the remote that `version:` names, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The commit, full hex.
    pub commit: String,
    /// What it is: `branch main`, `tag v1.2`, or `HEAD`.
    pub what: String,
}

/// Runs git for the checkout at `path` (or for no checkout: `ls-remote`, `clone`).
pub struct Git<'h> {
    pub host: &'h Host,
    /// Who it runs as: the owner; None for whoever runs converge.
    pub account: Option<Account>,
    pub path: &'h Path,
}

impl Git<'_> {
    /// Runs `git ARGS` (with `-C PATH` when `in_checkout`); its stdout, or what it said.
    fn run(&self, args: &[&str], in_checkout: bool, network: bool) -> Result<String, GitError> {
        if self.host.find_program("git", PATH).ok().flatten().is_none() {
            return Err(GitError::Missing);
        }
        let mut safe = OsString::from("safe.directory=");
        safe.push(self.path);
        // A checkout's .git/config can name programs git runs (hooks, fsmonitor): none of them run.
        let mut argv: Vec<OsString> = vec!["git".into(), "-c".into(), safe];
        argv.extend(["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"].map(OsString::from));
        if in_checkout {
            argv.extend(["-C".into(), self.path.as_os_str().to_owned()]);
        }
        argv.extend(args.iter().map(OsString::from));
        let mut program = self
            .host
            .program(&argv)
            .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("LC_ALL", "C")
            .network(network);
        if let Some(account) = &self.account {
            program = program.user(account);
        }
        let shown = format!("git {}", shell_words::join(args));
        let output = program
            .command()
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => GitError::Missing,
                _ => GitError::Failed(format!("cannot run {shown}: {e}")),
            })?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let said = String::from_utf8_lossy(&output.stderr);
        let mut message = format!("{shown} failed ({}): {}", output.status, said.trim());
        if said.contains("dubious ownership") {
            // Its safe.directory cannot reach the upload-pack of a local clone: git drops the
            // command line's config for it.
            message.push_str(
                "\n(git reads a repository of this host only for the user who owns it: give the repository to the \
                 checkout's owner, or add it to that user's `safe.directory` in ~/.gitconfig)",
            );
        }
        Err(GitError::Failed(message))
    }

    /// What `version` (a branch or tag; None: the remote's HEAD) names at `repo`, by one
    /// `git ls-remote`: a branch first, then a tag (peeled to its commit).
    pub fn ls_remote(&self, repo: &str, version: Option<&str>) -> Result<Resolved, GitError> {
        let Some(version) = version else {
            let out = self.run(&["ls-remote", "--", repo, "HEAD"], false, true)?;
            let commit = refs(&out).find(|(_, name)| *name == "HEAD").map(|(commit, _)| commit.to_owned());
            let commit = commit.ok_or_else(|| GitError::Failed(format!("{repo} has no HEAD (an empty repository?)")))?;
            return Ok(Resolved { commit, what: "HEAD".into() });
        };
        let (branch, tag) = (format!("refs/heads/{version}"), format!("refs/tags/{version}"));
        let peeled = format!("{tag}^{{}}");
        let out = self.run(&["ls-remote", "--", repo, &branch, &tag, &peeled], false, true)?;
        let found = |name: &str| refs(&out).find(|(_, n)| *n == name).map(|(commit, _)| commit.to_owned());
        let resolved = |commit, what: &str| Resolved { commit, what: format!("{what} {version}") };
        found(&branch)
            .map(|commit| resolved(commit, "branch"))
            .or_else(|| found(&peeled).or_else(|| found(&tag)).map(|commit| resolved(commit, "tag")))
            .ok_or_else(|| {
                GitError::Failed(format!(
                    "{repo} has no branch or tag `{version}` (a commit is written as its hex id, 7 to 40 digits)"
                ))
            })
    }

    /// The tracked files that differ from HEAD (untracked ones are not local changes).
    pub fn changed_files(&self) -> Result<Vec<String>, GitError> {
        let out = self.run(&["status", "--porcelain=v1", "-z", "--untracked-files=no"], true, false)?;
        let mut files = Vec::new();
        let mut entries = out.split('\0').filter(|e| !e.is_empty());
        while let Some(entry) = entries.next() {
            files.push(entry.get(3..).unwrap_or(entry).to_owned());
            if entry.starts_with('R') || entry.starts_with('C') {
                entries.next(); // a rename's or copy's source
            }
        }
        Ok(files)
    }

    /// Commits of HEAD that no branch of the remote (as last fetched) nor any tag has: work made
    /// here. `abc1234 subject` each, newest first.
    pub fn local_commits(&self) -> Result<Vec<String>, GitError> {
        let out = self.run(&["log", "--format=%h %s", "HEAD", "--not", "--remotes", "--tags", "--"], true, false)?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// The commits between `from` and `to`, when `to` is in the checkout's objects already: `+
    /// abc1234 subject` for those it brings, `- ...` for those it leaves; None when `to` is
    /// not known here (it comes with the fetch).
    pub fn log_between(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let range = format!("{from}...{to}");
        let out = self.run(&["log", "--left-right", "--format=%m %h %s", &range, "--"], true, false).ok()?;
        let sign = |line: &str| match line.strip_prefix('>') {
            Some(rest) => format!("+{rest}"),
            None => format!("-{}", line.strip_prefix('<').unwrap_or(line)),
        };
        Some(out.lines().map(sign).collect())
    }

    /// `git clone --no-checkout` into the (empty) directory.
    pub fn clone(&self, repo: &str) -> Result<(), GitError> {
        let path = self.path.to_string_lossy();
        self.run(&["clone", "--quiet", "--no-checkout", "--origin", "origin", "--", repo, &path], false, true).map(drop)
    }

    /// Points `origin` at `repo`.
    pub fn set_origin(&self, repo: &str) -> Result<(), GitError> {
        match self.run(&["remote", "set-url", "origin", "--", repo], true, false) {
            Err(GitError::Failed(_)) => self.run(&["remote", "add", "origin", "--", repo], true, false).map(drop),
            other => other.map(drop),
        }
    }

    /// Fetches every branch and tag of origin; then `commit` by its id if that did not bring it
    /// (a commit no branch or tag has).
    pub fn fetch(&self, commit: &str) -> Result<(), GitError> {
        self.run(&["fetch", "--quiet", "--force", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"], true, true)?;
        if self.full_commit(commit).is_err() && commit.len() >= 40 {
            self.run(&["fetch", "--quiet", "origin", commit], true, true)?;
        }
        Ok(())
    }

    /// The full id of a commit of the checkout, from its id or a prefix of it.
    pub fn full_commit(&self, commit: &str) -> Result<String, GitError> {
        let object = format!("{commit}^{{commit}}");
        Ok(self.run(&["rev-parse", "--verify", "--quiet", "--end-of-options", &object], true, false)?.trim().to_owned())
    }

    /// Checks out `commit`, detached; with `force`, local changes to tracked files are thrown
    /// away.
    pub fn checkout(&self, commit: &str, force: bool) -> Result<(), GitError> {
        let mut args = vec!["checkout", "--quiet", "--detach"];
        if force {
            args.push("--force");
        }
        args.push(commit);
        self.run(&args, true, false).map(drop)
    }
}

/// The `COMMIT\tNAME` lines of `git ls-remote`.
fn refs(out: &str) -> impl Iterator<Item = (&str, &str)> {
    out.lines().filter_map(|line| line.split_once('\t'))
}
