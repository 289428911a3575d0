//! `git`: against a local bare repository the test makes (as `nobody`, who owns it and the
//! checkout), applied to the live host under a temporary folder: a branch followed as it moves,
//! a tag and a commit checked out exactly, local changes and local commits refused unless
//! `force: true`, every file the owner's, and hostile `repo:`/`version:` refused at their line.
//! That a no-op spawns no git is shown in a container, where git can be wrapped
//! (django_e2e.rs).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Run, Test, ids_of};

tests![
    a_branch_is_cloned_then_followed_when_it_moves,
    a_tag_and_a_commit_are_checked_out_exactly,
    local_changes_and_commits_are_refused_unless_force,
    options_and_command_transports_are_refused_at_their_line,
];

/// A bare repository owned by `nobody` (git reads a local repository only for its owner), with
/// a clone of it where the test commits and pushes, as `nobody` too.
struct Repo {
    test: Test,
}

impl Repo {
    fn new() -> Repo {
        let test = Test::new();
        // nobody must reach the folders inside.
        fs::set_permissions(test.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let repo = Repo { test };
        fs::create_dir(repo.at("git")).unwrap();
        fs::create_dir(repo.at("srv")).unwrap();
        nobody_owns(&repo.at("git"));
        repo.git(&["init", "--quiet", "--bare", "--initial-branch=main", "git/app.git"]);
        repo.git(&["clone", "--quiet", "git/app.git", "git/work"]);
        repo
    }

    /// A path of the test's folder.
    fn at(&self, relative: &str) -> PathBuf {
        self.test.dir.path().join(relative)
    }

    /// `git ARGS` as nobody in the test's folder; its stdout.
    fn git(&self, args: &[&str]) -> String {
        let (uid, gid) = ids_of("nobody");
        let output = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(self.test.dir.path())
            .env("HOME", self.test.dir.path())
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Commits `content` as page.txt and pushes main; the new commit.
    fn push(&self, content: &str, subject: &str) -> String {
        fs::write(self.at("git/work/page.txt"), content).unwrap();
        nobody_owns(&self.at("git/work/page.txt"));
        self.git(&["-C", "git/work", "add", "page.txt"]);
        self.git(&["-C", "git/work", "commit", "--quiet", "-m", subject]);
        self.git(&["-C", "git/work", "push", "--quiet", "origin", "main"]);
        self.git(&["-C", "git/work", "rev-parse", "HEAD"])
    }

    /// A playbook that checks out `version` (YAML, or none) of the repository into srv/app as
    /// nobody, with `more` lines.
    fn playbook(&self, version: Option<&str>, more: &str) -> &Repo {
        let version = version.map(|v| format!("\n    version: \"{v}\"")).unwrap_or_default();
        let yaml = format!(
            "resources:\n  - git: {}\n    repo: {}{version}\n    owner: nobody\n{more}",
            self.at("srv/app").display(),
            self.at("git/app.git").display()
        );
        fs::write(self.test.playbook_path(), yaml).unwrap();
        self
    }

    fn plan(&self) -> Run {
        self.test.run_args(&["plan", "{playbook}"])
    }

    fn apply(&self) -> Run {
        self.test.run_args(&["apply", "{playbook}"])
    }

    fn page(&self) -> String {
        fs::read_to_string(self.at("srv/app/page.txt")).unwrap()
    }

    /// The commit the checkout has checked out, by git.
    fn head(&self) -> String {
        self.git(&["-C", "srv/app", "rev-parse", "HEAD"])
    }
}

fn nobody_owns(path: &Path) {
    let (uid, gid) = ids_of("nobody");
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// Paths under `dir` (itself included) that `uid` does not own.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let meta = fs::symlink_metadata(dir).unwrap();
    if meta.uid() != uid {
        found.push(dir.to_owned());
    }
    if meta.is_dir() {
        for entry in fs::read_dir(dir).unwrap() {
            found.extend(not_owned_by(&entry.unwrap().path(), uid));
        }
    }
    found
}

fn a_branch_is_cloned_then_followed_when_it_moves() {
    require!(Root, Tool("git"));
    let repo = Repo::new();
    let first = repo.push("one\n", "First page");
    let out = repo.playbook(Some("main"), "").plan().code(2).stdout;
    assert!(out.contains(&format!("commit: {} (branch main, by git ls-remote)", &first[..7])), "{out}");
    repo.apply().success();
    assert_eq!(repo.page(), "one\n");
    assert_eq!(repo.head(), first);
    assert_eq!(not_owned_by(&repo.at("srv/app"), ids_of("nobody").0), Vec::<PathBuf>::new(), "all nobody's");
    let out = repo.apply().success().stdout;
    assert!(out.starts_with("No changes."), "{out}");

    // The branch moves: the plan shows both commits and, once fetched, the subjects between.
    let second = repo.push("two\n", "Second page");
    let out = repo.plan().code(2).stdout;
    assert!(out.contains(&format!("commit: {} -> {} (branch main", &first[..7], &second[..7])), "{out}");
    assert!(out.contains("log: commits unknown until fetched"), "{out}");
    repo.git(&["-C", "srv/app", "fetch", "--quiet", "origin"]);
    let out = repo.plan().code(2).stdout;
    assert!(out.contains(&format!("log: + {} Second page", &second[..7])), "{out}");
    repo.apply().success();
    assert_eq!((repo.page(), repo.head()), ("two\n".into(), second));
    assert_eq!(not_owned_by(&repo.at("srv/app"), ids_of("nobody").0), Vec::<PathBuf>::new(), "all nobody's");
    assert!(repo.apply().success().stdout.starts_with("No changes."));
}

fn a_tag_and_a_commit_are_checked_out_exactly() {
    require!(Root, Tool("git"));
    let repo = Repo::new();
    let first = repo.push("one\n", "First page");
    repo.git(&["-C", "git/work", "tag", "-a", "-m", "release 1", "v1"]);
    repo.git(&["-C", "git/work", "push", "--quiet", "origin", "v1"]);
    let second = repo.push("two\n", "Second page");

    // An annotated tag: its commit, not the tag object.
    repo.playbook(Some("v1"), "").apply().success();
    assert_eq!((repo.page(), repo.head()), ("one\n".into(), first.clone()));
    assert!(repo.apply().success().stdout.starts_with("No changes."));

    // A full commit, then a short one: exactly that commit, going back shows `-` lines.
    let out = repo.playbook(Some(&second), "").plan().code(2).stdout;
    assert!(out.contains(&format!("commit: {} -> {}\n", &first[..7], &second[..7])), "{out}");
    repo.apply().success();
    assert_eq!((repo.page(), repo.head()), ("two\n".into(), second.clone()));
    let out = repo.playbook(Some(&first[..9]), "").plan().code(2).stdout;
    assert!(out.contains(&format!("log: - {} Second page", &second[..7])), "{out}");
    repo.apply().success();
    assert_eq!((repo.page(), repo.head()), ("one\n".into(), first));

    // No version: the remote's HEAD (main).
    repo.playbook(None, "").apply().success();
    assert_eq!(repo.head(), second);
}

fn local_changes_and_commits_are_refused_unless_force() {
    require!(Root, Tool("git"));
    let repo = Repo::new();
    repo.push("one\n", "First page");
    repo.playbook(Some("main"), "").apply().success();

    // A hand edit of a tracked file: moving is refused, naming it, and the file stays.
    fs::write(repo.at("srv/app/page.txt"), "edited here\n").unwrap();
    fs::write(repo.at("srv/app/untracked.txt"), "not git's\n").unwrap();
    let second = repo.push("two\n", "Second page");
    let err = crate::downloads::flat(&repo.apply().code(1).stderr);
    assert!(err.contains("would throw away local changes to page.txt;"), "{err}");
    assert!(err.contains("force: true"), "{err}");
    assert_eq!(repo.page(), "edited here\n");
    // With force: thrown away (untracked files are not git's: they stay).
    let out = repo.playbook(Some("main"), "    force: true\n").plan().code(2).stdout;
    assert!(out.contains("discard: local changes to page.txt"), "{out}");
    repo.apply().success();
    assert_eq!((repo.page(), repo.head()), ("two\n".into(), second.clone()));
    assert!(repo.at("srv/app/untracked.txt").exists());

    // A commit made in the checkout that the remote does not have: refused, by its subject.
    fs::write(repo.at("srv/app/page.txt"), "hotfix\n").unwrap();
    repo.git(&["-C", "srv/app", "commit", "--quiet", "-am", "Hotfix made on the server"]);
    repo.push("three\n", "Third page");
    let err = crate::downloads::flat(&repo.playbook(Some("main"), "").plan().code(1).stderr);
    assert!(err.contains("commits that no branch of") && err.contains("Hotfix made on the server"), "{err}");
    assert_eq!(repo.page(), "hotfix\n");
    let out = repo.playbook(Some("main"), "    force: true\n").plan().code(2).stdout;
    assert!(out.contains("local commit") && out.contains("Hotfix made on the server"), "{out}");
    repo.apply().success();
    assert_eq!(repo.page(), "three\n");
    // At the wanted commit, force also puts back a hand edit; without force it is left alone.
    fs::write(repo.at("srv/app/page.txt"), "edited again\n").unwrap();
    assert!(repo.playbook(Some("main"), "").apply().success().stdout.starts_with("No changes."));
    assert_eq!(repo.page(), "edited again\n");
    repo.playbook(Some("main"), "    force: true\n").apply().success();
    assert_eq!(repo.page(), "three\n");
}

fn options_and_command_transports_are_refused_at_their_line() {
    let test = Test::new().playbook(
        r#"resources:
  - git: /srv/a
    repo: "--upload-pack=touch /tmp/pwned"
  - git: /srv/b
    repo: "ext::sh -c touch% /tmp/pwned"
  - git: /srv/c
    repo: https://example.org/app.git
    version: "--orphan=x"
  - git: /srv/d
    repo: app.git
  - git: /srv/e
    version: main
"#,
    );
    let err = crate::downloads::flat(&test.validate().code(1).err());
    for (line, message) in [
        (3, "it starts with `-`, which git would take for an option"),
        (5, "`TRANSPORT::ADDRESS` runs a remote helper"),
        (8, "`--orphan=x` is not a branch, tag or commit: it starts with `-`"),
        (10, "a relative path"),
        (11, "a git checkout needs `repo`"),
    ] {
        let at = err.find(message).unwrap_or_else(|| panic!("no `{message}` in:\n{err}"));
        let place = err[at..].split("playbook.yml:").nth(1).unwrap_or_default();
        assert!(place.starts_with(&format!("{line}:")), "`{message}` at line {line}:\n{err}");
    }
    assert!(!Path::new("/tmp/pwned").exists());
}
