//! `git`: a checkout of a git repository at exactly one commit, owned by its owner.
//!
//! What it does: clones `repo` into the path (made, owned by `owner`, when missing) or fetches
//! into the checkout there, and checks out the commit `version` names, detached: a branch or a
//! tag is resolved to its commit in the plan by one `git ls-remote`; a commit (7 to 64 hex
//! digits) is taken as it is. Every git process runs as the owner (program.rs). It is applied
//! alone, after everything before it: a clone may need what they made (a key, the repository).
//! It never throws away work: moving a checkout whose tracked files changed, or whose HEAD has
//! commits no branch of the remote nor any tag has, is refused, naming them, unless `force:
//! true` (which then also resets local changes at the wanted commit).
//! Why: a converged checkout costs reads, not processes. With a commit for `version`, the plan
//! reads `.git/HEAD`, the refs and `.git/config` through host/fs (checkout.rs) and runs nothing;
//! local changes are looked for (`git status`, local, no network) only when the checkout moves,
//! or always with `force: true` (docs/git.md).

pub mod checkout;
pub mod program;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};
use crate::kinds::resource::{Attr, Change, Need, Ownership, Resource, ownership_changes};
use crate::kinds::{Kind, chown_tree, observe_owner, ownership_needs, path_needs};
use crate::playbook::attrs::Attrs;
use crate::playbook::table::{GROUP, OWNER, Table, Type, attr};
use crate::playbook::yaml_node::{Node, Value};
use program::{Git as Runner, GitError};

/// Plans list at most this many commits between two.
const LOG_LINES: usize = 10;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Git {
    pub path: PathBuf,
    /// A URL (https, http, ssh, git, file) or an absolute path.
    pub repo: String,
    pub version: Version,
    pub ownership: Ownership,
    /// Throw away local changes and commits.
    pub force: bool,
}

/// What `version:` names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    /// The remote's HEAD (its default branch): no `version:`.
    Head,
    /// A commit: 7 to 64 hex digits, lowercase.
    Commit(String),
    /// A branch or a tag.
    Ref(String),
}

/// What the plan found.
#[derive(Debug, Clone, PartialEq)]
pub struct GitActual {
    /// None: nothing at the path, or an empty directory.
    pub checkout: Option<Seen>,
    pub target: Target,
    /// The commits between HEAD and the target (`+`/`-` lines), when they are known here.
    pub log: Option<Vec<String>>,
    /// What `force: true` throws away.
    pub discard: Vec<String>,
}

/// A checkout on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub head: Option<String>,
    pub origin: Option<String>,
    pub owner: String,
    pub group: String,
}

/// The commit to check out.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A commit (a prefix of one, for a short `version:`); `what` when `ls-remote` resolved it.
    Commit { commit: String, what: Option<String> },
    /// Not known before apply, and why (git is not installed yet).
    Unknown(String),
}

impl Resource for Git {
    type Actual = GitActual;

    const KIND: Kind = Kind::Git;

    const TABLE: Table = Table {
        names: Type::Path,
        doc: "a git checkout at exactly one commit, cloned or fetched as its owner",
        attrs: &[
            attr("repo", Type::String, "the repository: an https, http, ssh, git or file URL, or an absolute path"),
            attr("version", Type::String, "a branch, a tag or a commit (7 to 40 hex digits); the remote's HEAD by default"),
            OWNER,
            GROUP,
            attr("force", Type::Bool, "throw away local changes and commits (default false: refuse)"),
        ],
    };

    fn from_attrs(name: &Node, attrs: &mut Attrs) -> Option<Git> {
        let path = attrs.managed_path(Self::KIND.name(), name);
        let repo = read_repo(attrs);
        if repo.is_none() && attrs.node("repo").is_none() {
            let help = "add `repo:` with its URL, such as `repo: https://github.com/org/app.git`";
            attrs.error(name.span, "a git checkout needs `repo`", "no `repo`", help);
        }
        let version = read_version(attrs);
        let ownership = attrs.ownership();
        let force = attrs.bool("force").unwrap_or(false);
        Some(Git { path: path?, repo: repo?, version: version?, ownership, force })
    }

    fn name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn needs(&self) -> Vec<Need> {
        let mut needs = path_needs(&self.path, true);
        needs.extend(ownership_needs(&self.ownership));
        needs.push(Need::Package(&["git"]));
        needs
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn not_restored(&self) -> Option<&'static str> {
        Some("a git checkout's commit is not restored")
    }

    fn slow_step(&self) -> Option<&'static str> {
        Some("git")
    }

    fn observe(&self, host: &Host) -> Result<GitActual> {
        let git = self.runner(host, self.plan_account(host)?);
        let checkout = self.observe_checkout(host)?;
        let target = self.observe_target(host, &git)?;
        let head = checkout.as_ref().map(|c| c.head.clone());
        let mut actual = GitActual { checkout, target, log: None, discard: Vec::new() };
        if let Some(head) = head {
            self.observe_local(&git, head.as_deref(), &mut actual)?;
        }
        Ok(actual)
    }

    fn diff(&self, actual: &GitActual) -> Vec<Change> {
        let to = self.target_shown(&actual.target);
        let Some(seen) = &actual.checkout else {
            let mut changes = vec![Change::Create, Change::set_to(Attr::Commit, to)];
            changes.extend(ownership_changes(&self.ownership, "", ""));
            return changes;
        };
        let mut changes = Vec::new();
        if seen.origin.as_deref() != Some(self.repo.as_str()) {
            changes.push(Change::set(Attr::Repo, seen.origin.as_deref(), self.repo.as_str()));
        }
        changes.extend(ownership_changes(&self.ownership, &seen.owner, &seen.group));
        if moves(seen.head.as_deref(), &actual.target) {
            let from = seen.head.as_deref().map_or("no commit", short);
            changes.push(Change::set(Attr::Commit, Some(from), to));
            changes.extend(log_changes(actual.log.as_deref()));
        }
        if !actual.discard.is_empty() {
            changes.push(Change::set_to(Attr::Discard, actual.discard.join("; ")));
        }
        changes
    }

    fn apply(&self, changes: &[Change], host: &Host) -> Result<()> {
        let id = self.id();
        let account = host
            .account(self.ownership.owner.as_deref(), self.ownership.group.as_deref())
            .map_err(|e| Error::resource_io(&id, "cannot look up its owner", e))?
            .ok_or_else(|| Error::resource(&id, format!("user `{}` does not exist", self.owner_name())))?;
        let failed = |e: GitError| Error::resource(&id, e.to_string());
        let git = self.runner(host, Some(account.clone()));
        let commit = match &self.version {
            Version::Commit(commit) => commit.clone(),
            _ => git.ls_remote(&self.repo, self.version_name()).map_err(failed)?.commit,
        };
        if changes.contains(&Change::Create) {
            self.make_dir(host, (account.uid, account.gid))?;
            return clone_at(&git, &self.repo, &commit).map_err(failed);
        }
        if changes.iter().any(|c| c.sets(Attr::Owner) || c.sets(Attr::Group)) {
            chown_tree(host, &self.path, account.uid, account.gid)
                .map_err(|e| Error::resource_io(&id, "cannot change the owner of its files", e))?;
        }
        if changes.iter().any(|c| c.sets(Attr::Repo)) {
            git.set_origin(&self.repo).map_err(failed)?;
        }
        if changes.iter().any(|c| c.sets(Attr::Commit)) {
            git.fetch(&commit).map_err(failed)?;
        }
        if changes.iter().any(|c| c.sets(Attr::Commit) || c.sets(Attr::Discard)) {
            let full = git.full_commit(&commit).map_err(failed)?;
            git.checkout(&full, self.force).map_err(failed)?;
        }
        Ok(())
    }
}

impl Git {
    /// The git processes of this checkout, run as `account`.
    fn runner<'h>(&'h self, host: &'h Host, account: Option<crate::host::Account>) -> Runner<'h> {
        Runner { host, account, path: &self.path }
    }

    /// The repository's path when it is one of the host (a path or a `file://` URL).
    fn local_repo(&self) -> Option<&std::path::Path> {
        let path = self.repo.strip_prefix("file://").unwrap_or(&self.repo);
        path.starts_with('/').then(|| std::path::Path::new(path))
    }

    /// Whether the repository is there, or is not one of the host: a repository of the host
    /// that an earlier resource makes (a `command:`, a `directory:`) is resolved when applied.
    fn local_repo_is_there(&self, host: &Host) -> std::io::Result<bool> {
        match self.local_repo() {
            Some(path) => Ok(host.stat(path)?.is_some()),
            None => Ok(true),
        }
    }

    /// Who the plan's git processes run as: the owner, or whoever runs converge while the
    /// owner does not exist yet (a `user` resource of the playbook makes it).
    fn plan_account(&self, host: &Host) -> Result<Option<crate::host::Account>> {
        let found = host.account(self.ownership.owner.as_deref(), self.ownership.group.as_deref());
        match found {
            Ok(account) => Ok(account),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::resource_io(self.id(), "cannot look up its owner", e)),
        }
    }

    fn owner_name(&self) -> &str {
        self.ownership.owner.as_deref().unwrap_or_default()
    }

    /// The branch or tag for `ls-remote`; None for the remote's HEAD.
    fn version_name(&self) -> Option<&str> {
        match &self.version {
            Version::Ref(name) => Some(name),
            Version::Head | Version::Commit(_) => None,
        }
    }

    /// The checkout at its path, read from its files: None when nothing or an empty directory
    /// is there.
    fn observe_checkout(&self, host: &Host) -> Result<Option<Seen>> {
        let id = self.id();
        let io = |e| Error::resource_io(&id, "cannot read it", e);
        let Some(stat) = host.stat(&self.path).map_err(io)? else { return Ok(None) };
        if stat.kind != FileKind::Directory {
            return Err(Error::resource(&id, format!("{} is {}, not a directory", self.path.display(), stat.kind.name())));
        }
        let found = checkout::read(host, &self.path).map_err(io)?;
        if found.is_none() && !host.read_dir(&self.path).map_err(io)?.is_empty() {
            let message = "holds files but is no git checkout: move them away, or clone somewhere else";
            return Err(Error::resource(&id, format!("{} {message}", self.path.display())));
        }
        let (owner, group) = observe_owner(host, &stat).map_err(io)?;
        Ok(found.map(|c| Seen { head: c.head, origin: c.origin, owner, group }))
    }

    /// The commit to check out: `version:` itself, or what `git ls-remote` says it names.
    fn observe_target(&self, host: &Host, git: &Runner) -> Result<Target> {
        let id = self.id();
        let there = self.local_repo_is_there(host).map_err(|e| Error::resource_io(&id, "cannot read its repo", e))?;
        Ok(match &self.version {
            Version::Commit(commit) => Target::Commit { commit: commit.clone(), what: None },
            _ if !there => Target::Unknown(format!("{} is not there yet", self.repo)),
            Version::Head | Version::Ref(_) => match git.ls_remote(&self.repo, self.version_name()) {
                Ok(resolved) => Target::Commit { commit: resolved.commit, what: Some(resolved.what) },
                Err(GitError::Missing) => Target::Unknown("git is not installed yet".into()),
                Err(e) => return Err(Error::resource(&id, e.to_string())),
            },
        })
    }

    /// What the checkout would lose: looked for only when it moves, or always with `force`.
    /// Without `force`, losing anything is refused.
    fn observe_local(&self, git: &Runner, head: Option<&str>, actual: &mut GitActual) -> Result<()> {
        let moving = moves(head, &actual.target);
        if !moving && !self.force {
            return Ok(());
        }
        let failed = |e: GitError| Error::resource(self.id(), e.to_string());
        let changed = git.changed_files().map_err(failed)?;
        let local = match (moving, head) {
            (true, Some(_)) => git.local_commits().map_err(failed)?,
            _ => Vec::new(),
        };
        if let (Some(from), Target::Commit { commit, .. }) = (head.filter(|_| moving), &actual.target) {
            actual.log = git.log_between(from, commit);
        }
        if self.force {
            actual.discard.extend((!changed.is_empty()).then(|| format!("local changes to {}", changed.join(", "))));
            actual.discard.extend(local.iter().map(|c| format!("local commit {c}")));
            return Ok(());
        }
        if changed.is_empty() && local.is_empty() {
            return Ok(());
        }
        let mut lost = Vec::new();
        lost.extend((!changed.is_empty()).then(|| format!("local changes to {}", changed.join(", "))));
        lost.extend((!local.is_empty()).then(|| {
            format!("commits that no branch of {} nor any tag has: {}", self.repo, local.join("; "))
        }));
        Err(Error::resource(
            self.id(),
            format!(
                "checking out another commit would throw away {}; commit and push them, or set `force: true` to \
                 throw them away",
                lost.join(", and ")
            ),
        ))
    }

    /// The target as the plan shows it: `def5678 (branch main, by git ls-remote)`.
    fn target_shown(&self, target: &Target) -> String {
        match target {
            Target::Commit { commit, what: Some(what) } => format!("{} ({what}, by git ls-remote)", short(commit)),
            Target::Commit { commit, what: None } => short(commit).to_owned(),
            Target::Unknown(why) => {
                let version = self.version_name().unwrap_or("the remote's HEAD");
                format!("{version} (resolved when applied: {why})")
            }
        }
    }

    /// Makes the (missing) directory of the clone, owned by the owner, who then clones into it:
    /// the parent may be root's (/srv).
    fn make_dir(&self, host: &Host, (uid, gid): (u32, u32)) -> Result<()> {
        let id = self.id();
        let io = |what: &str, e| Error::resource_io(&id, what.to_owned(), e);
        match host.stat(&self.path).map_err(|e| io("cannot read it", e))? {
            Some(_) => host.chown(&self.path, Some(uid), Some(gid)).map_err(|e| io("cannot give it to its owner", e)),
            None => {
                let parent = self.path.parent().unwrap_or(&self.path);
                if host.stat(parent).map_err(|e| io("cannot read its directory", e))?.is_none() {
                    return Err(Error::resource(
                        &id,
                        format!("its directory {} does not exist; add a `directory:` resource for it", parent.display()),
                    ));
                }
                host.create_dir(&self.path, Mode(0o755), uid, gid).map_err(|e| io("cannot make it", e))
            }
        }
    }
}

/// Clones `repo` into the (empty) directory and checks out `commit`.
fn clone_at(git: &Runner, repo: &str, commit: &str) -> Result<(), GitError> {
    git.clone(repo)?;
    if git.full_commit(commit).is_err() {
        git.fetch(commit)?;
    }
    git.checkout(&git.full_commit(commit)?, true)
}

/// Whether the checkout at `head` must move to reach `target`.
fn moves(head: Option<&str>, target: &Target) -> bool {
    match (head, target) {
        (Some(head), Target::Commit { commit, .. }) => !head.starts_with(commit.as_str()),
        _ => true,
    }
}

/// A commit as plans show it: its first 7 digits.
fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

/// The `log` lines of a move: at most [`LOG_LINES`] commits, or why they are not known.
fn log_changes(log: Option<&[String]>) -> Vec<Change> {
    let Some(log) = log else { return vec![Change::set_to(Attr::Log, "commits unknown until fetched")] };
    let mut changes: Vec<Change> = log.iter().take(LOG_LINES).map(|line| Change::set_to(Attr::Log, line.as_str())).collect();
    if log.len() > LOG_LINES {
        changes.push(Change::set_to(Attr::Log, format!("... and {} more", log.len() - LOG_LINES)));
    }
    changes
}

/// `repo:`: a URL of a transport git may use, or an absolute path.
fn read_repo(attrs: &mut Attrs) -> Option<String> {
    let node = attrs.node("repo")?;
    let repo = attrs.render_string("repo", node)?;
    let Some(problem) = repo_problem(&repo) else { return Some(repo) };
    let shown = crate::error::escape(&repo).into_owned();
    attrs.error(
        node.span,
        format!("`{shown}` is not a repository converge clones: {problem}"),
        "not a repository",
        "write an https://, http://, ssh://, git:// or file:// URL, `user@host:path`, or an absolute path",
    );
    None
}

/// Why `repo` is refused: an option (`--upload-pack=...`), a transport that runs commands
/// (`ext::`, `fd::`, any `helper::`), a relative path.
pub fn repo_problem(repo: &str) -> Option<&'static str> {
    const SCHEMES: [&str; 7] = ["https", "http", "ssh", "git", "file", "git+ssh", "ssh+git"];
    if repo.is_empty() {
        Some("it is empty")
    } else if repo.starts_with('-') {
        Some("it starts with `-`, which git would take for an option")
    } else if repo.chars().any(char::is_control) {
        Some("it holds a control character")
    } else if repo.split_once("::").is_some_and(|(helper, _)| !helper.contains('/')) {
        Some("`TRANSPORT::ADDRESS` runs a remote helper (`ext::` runs a command); only file, https, http, ssh and git are allowed")
    } else if let Some((scheme, _)) = repo.split_once("://") {
        (!SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
            .then_some("its transport is not one of file, https, http, ssh and git")
    } else if repo.starts_with('/') || repo.split_once(':').is_some_and(|(host, _)| !host.contains('/')) {
        None
    } else {
        Some("a relative path: write the repository's absolute path")
    }
}

/// `version:`: a commit (hex, taken as written even when YAML reads a number), a branch or a
/// tag; none: the remote's HEAD.
fn read_version(attrs: &mut Attrs) -> Option<Version> {
    let Some(node) = attrs.node("version") else { return Some(Version::Head) };
    let text = match &node.value {
        Value::Int(_) | Value::Float(_) => node.source(&attrs.templates().source().text).to_owned(),
        _ => attrs.render_string("version", node)?,
    };
    let Some(problem) = version_problem(&text) else { return Some(version(&text)) };
    let shown = crate::error::escape(&text).into_owned();
    attrs.error(
        node.span,
        format!("`{shown}` is not a branch, tag or commit: {problem}"),
        "not a version",
        "write a branch (`main`), a tag (`v1.2.0`) or a commit's hex id (`3f2a9c1`)",
    );
    None
}

/// A version that [`version_problem`] accepts: 7 to 64 hex digits are a commit.
fn version(text: &str) -> Version {
    let hex = (7..=64).contains(&text.len()) && text.chars().all(|c| c.is_ascii_hexdigit());
    match hex {
        true => Version::Commit(text.to_ascii_lowercase()),
        false => Version::Ref(text.to_owned()),
    }
}

/// Why `version` can be no branch, tag or commit (git-check-ref-format's rules that matter,
/// and never an option).
pub fn version_problem(version: &str) -> Option<&'static str> {
    if version.is_empty() {
        Some("it is empty")
    } else if version.starts_with('-') {
        Some("it starts with `-`, which git would take for an option")
    } else if version.chars().any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c)) {
        Some("it holds a space, a control character or one of ~ ^ : ? * [ \\")
    } else if version.contains("..") || version.contains("@{") || version.contains("//") {
        Some("it holds `..`, `@{` or `//`")
    } else if version.starts_with('/') || version.ends_with('/') || version.ends_with(".lock") || version.ends_with('.') {
        Some("it starts or ends as no ref name does")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "1111111111111111111111111111111111111111";
    const NEW: &str = "2222222222222222222222222222222222222222";

    fn git(version: Version) -> Git {
        Git {
            path: "/srv/app".into(),
            repo: "/srv/git/app.git".into(),
            version,
            ownership: Ownership { owner: Some("app".into()), group: None },
            force: false,
        }
    }

    fn at(head: &str, target: Target) -> GitActual {
        let seen = Seen {
            head: Some(head.into()),
            origin: Some("/srv/git/app.git".into()),
            owner: "app".into(),
            group: "app".into(),
        };
        GitActual { checkout: Some(seen), target, log: None, discard: Vec::new() }
    }

    fn commit(commit: &str, what: Option<&str>) -> Target {
        Target::Commit { commit: commit.into(), what: what.map(str::to_owned) }
    }

    #[test]
    fn a_checkout_at_the_commit_is_converged() {
        assert_eq!(git(Version::Commit(NEW.into())).diff(&at(NEW, commit(NEW, None))), vec![]);
        assert_eq!(git(Version::Commit("2222222".into())).diff(&at(NEW, commit("2222222", None))), vec![]);
    }

    #[test]
    fn a_moved_branch_shows_both_commits_and_the_log() {
        let mut actual = at(OLD, commit(NEW, Some("branch main")));
        actual.log = Some(vec!["+ 2222222 Add a page".into()]);
        let changes = git(Version::Ref("main".into())).diff(&actual);
        assert_eq!(
            changes,
            vec![
                Change::set(Attr::Commit, Some("1111111"), "2222222 (branch main, by git ls-remote)"),
                Change::set_to(Attr::Log, "+ 2222222 Add a page"),
            ]
        );
        actual.log = None;
        let changes = git(Version::Ref("main".into())).diff(&actual);
        assert_eq!(changes[1], Change::set_to(Attr::Log, "commits unknown until fetched"));
    }

    #[test]
    fn nothing_there_is_cloned_and_another_origin_is_repointed() {
        let actual = GitActual { checkout: None, target: commit(NEW, None), log: None, discard: vec![] };
        let changes = git(Version::Commit(NEW.into())).diff(&actual);
        assert_eq!(changes[..2], [Change::Create, Change::set_to(Attr::Commit, "2222222")]);
        let mut actual = at(NEW, commit(NEW, None));
        actual.checkout.as_mut().unwrap().origin = Some("https://old.example/app.git".into());
        assert_eq!(
            git(Version::Commit(NEW.into())).diff(&actual),
            vec![Change::set(Attr::Repo, Some("https://old.example/app.git"), "/srv/git/app.git")]
        );
    }

    #[test]
    fn options_and_command_transports_are_refused() {
        for bad in ["--upload-pack=touch /tmp/x", "-u", "ext::sh -c touch% /tmp/x", "fd::17", "foo::bar", "ftp://h/r", "app.git", ""] {
            assert!(repo_problem(bad).is_some(), "{bad:?}");
        }
        for good in ["https://github.com/o/r.git", "ssh://git@h/r.git", "git@github.com:o/r.git", "/srv/git/app.git", "file:///srv/git/a.git"] {
            assert_eq!(repo_problem(good), None, "{good:?}");
        }
        for bad in ["-b", "--orphan", "a b", "a..b", "main.lock", "x^{}", ""] {
            assert!(version_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(version("3F2A9C1"), Version::Commit("3f2a9c1".into()));
        assert_eq!(version("release/1.2"), Version::Ref("release/1.2".into()));
        assert_eq!(version("abc"), Version::Ref("abc".into()));
    }
}
