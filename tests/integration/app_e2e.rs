//! playbooks/app-from-git.yml end to end, in a fresh container booted with systemd (both Debian
//! releases): from nothing to the app of a git repository served by gunicorn behind nginx, with
//! sshd taking keys only; a second run changes nothing; a commit pushed to the repository is
//! checked out and restarts gunicorn (the checkout is a restart trigger), and its page is served.
//! A checkout at the commit `version:` names spawns no git at all; a branch costs one
//! `git ls-remote`. Offline, as scenario_e2e.rs: nginx from a local apt repository, gunicorn
//! from wheels. And the kind over `--host`: the target's git clones; without it, the error
//! names the package.

use std::time::{Duration, Instant};

use crate::scenario_e2e::{converge, machine};
use crate::systemd_e2e::Container;

tests![from_nothing_then_nothing_then_a_pushed_commit_restarts_the_app, over_ssh_the_target_s_git_clones];

const PLAYBOOK: &str = "/root/playbooks/app-from-git.yml";
const FIRST: &str = "Hello from the git checkout, deployed by converge.";
const SECOND: &str = "Hello from the git checkout, commit two.";

fn apply(c: &Container, vars: &[&str]) -> String {
    let (code, out, err) = converge(c, &["apply"], PLAYBOOK, vars);
    assert_eq!(code, 0, "apply {vars:?}\nstdout:\n{out}\nstderr:\n{err}");
    out
}

/// nginx's answer on port 80 becomes `page` (nginx and gunicorn restart gracefully).
fn serves(c: &Container, page: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = c.sh("curl -sS --max-time 10 http://127.0.0.1/ || true");
    while got != page && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = c.sh("curl -sS --max-time 10 http://127.0.0.1/ || true");
    }
    assert_eq!(got, page, "through nginx");
}

fn from_nothing_then_nothing_then_a_pushed_commit_restarts_the_app() {
    let c = machine("app-from-git");
    apply(&c, &[]);
    serves(&c, FIRST);
    assert_eq!(c.sh("find /srv/app ! -user app | wc -l"), "0", "every file of the checkout is app's");
    assert_eq!(c.sh("sshd -T | grep -i '^passwordauthentication '"), "passwordauthentication no");
    assert_eq!(c.show("ssh.service", "ActiveState"), "active", "sshd still runs");
    let out = apply(&c, &[]);
    assert!(out.starts_with("No changes. The host matches the playbook."), "{out}");

    // Every git process from now on is logged (the owner's too).
    c.sh("mv /usr/bin/git /usr/bin/git.real && printf '#!/bin/sh\\necho \"git $*\" >> /tmp/git-calls\\nexec /usr/bin/git.real \"$@\"\\n' > /usr/bin/git && chmod 755 /usr/bin/git && touch /tmp/git-calls && chmod 666 /tmp/git-calls");
    // A commit pushed to the repository, as its owner.
    c.sh(&format!(
        "cd /tmp && runuser -u app -- env HOME=/tmp sh -c 'git clone -q /srv/git/app.git work && cd work && \
         sed -i \"s/deployed by converge/commit two/\" wsgi.py && git -c user.name=t -c user.email=t@example.org \
         commit -qam \"Commit two\" && git push -q origin main' && grep -q '{SECOND}' /tmp/work/wsgi.py"
    ));
    let head = c.sh("runuser -u app -- git -C /tmp/work rev-parse HEAD");
    c.sh("rm -rf /tmp/work && : > /tmp/git-calls");
    let pid = c.show("gunicorn.service", "MainPID");
    let (code, plan, err) = converge(&c, &["plan"], PLAYBOOK, &[]);
    assert_eq!(code, 2, "{plan}{err}");
    assert!(plan.contains(&format!("-> {} (branch main, by git ls-remote)", &head[..7])), "{plan}");
    // Socket-activated: the old gunicorn stops, and the socket starts the new one.
    assert!(plan.contains("stop gunicorn.service   (git:/srv/app changed;"), "{plan}");
    let out = apply(&c, &[]);
    assert!(out.contains("git:/srv/app: updated") && out.contains("stop gunicorn.service: done"), "{out}");
    serves(&c, SECOND);
    assert_ne!(c.show("gunicorn.service", "MainPID"), pid, "gunicorn restarted");
    assert_eq!(c.sh("find /srv/app ! -user app | wc -l"), "0", "every file of the checkout is app's");

    // A no-op: a branch costs one ls-remote; the commit itself, no git at all.
    c.sh(": > /tmp/git-calls");
    assert!(apply(&c, &[]).starts_with("No changes."));
    let calls = c.sh("cat /tmp/git-calls");
    assert_eq!(calls.lines().count(), 1, "{calls}");
    assert!(calls.contains(" ls-remote -- /srv/git/app.git refs/heads/main"), "{calls}");
    c.sh(": > /tmp/git-calls");
    assert!(apply(&c, &["--var", &format!("version={head}")]).starts_with("No changes."));
    assert_eq!(c.sh("cat /tmp/git-calls"), "", "a checkout at its commit spawns no git");

    // The README's example, as written, on the same machine.
    let example = readme_example();
    assert!(example.starts_with("- git: /srv/www\n"), "{example}");
    let out = c.apply(&format!("resources:\n{example}"));
    assert!(out.contains("git:/srv/www: created") && out.contains("restart gunicorn.service: done"), "{out}");
    assert_eq!(c.sh("cat /srv/www/wsgi.py | grep -c 'commit two'"), "1");
    assert_eq!(c.sh("find /srv/www ! -user app | wc -l"), "0");
    assert!(c.apply(&format!("resources:\n{example}")).starts_with("No changes."));
}

/// The YAML example of the README's `git` section.
fn readme_example() -> String {
    let readme = include_str!("../../README.md");
    let section = readme.split_once("### `git`\n").expect("a git section").1;
    let block = section.split_once("```yaml\n").expect("an example").1;
    block.split_once("```").expect("its end").0.to_owned()
}

/// `--host`: the kind runs on the target, with the target's git; without it, the error names
/// the package to install.
fn over_ssh_the_target_s_git_clones() {
    let c = Container::boot("git-remote");
    c.sh("git init -q --bare --initial-branch=main /srv/git/app.git && git clone -q /srv/git/app.git /tmp/w && \
          cd /tmp/w && echo hello > page.txt && git add page.txt && \
          git -c user.name=t -c user.email=t@example.org commit -qm First && git push -q origin main");
    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("site.yml");
    std::fs::write(&playbook, "resources:\n  - git: /srv/app\n    repo: /srv/git/app.git\n    version: main\n").unwrap();
    let cache = std::env::var_os("CONVERGE_CACHE").unwrap_or_else(|| "/var/cache/converge-e2e".into());
    let key = std::path::Path::new(&cache).join("ssh/id_ed25519");
    let config = dir.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  \
             UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
            key.display()
        ),
    )
    .unwrap();
    let leader = crate::support::harness_script("harness/container.sh").args(["leader", c.name()]).output().unwrap();
    let netns = format!("--net=/proc/{}/ns/net", String::from_utf8_lossy(&leader.stdout).trim());
    let apply = || {
        let out = std::process::Command::new("nsenter")
            .arg(&netns)
            .arg(env!("CARGO_BIN_EXE_converge"))
            .args(["apply", &playbook.display().to_string(), "--host", "root@127.0.0.1", "--ssh-config"])
            .arg(&config)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    c.sh("mv /usr/bin/git /usr/bin/git.off");
    let (code, out) = apply();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("git is not installed on this host: install the package `git` first"), "{out}");
    assert_eq!(c.exec(&["test", "-e", "/srv/app"]).status.code(), Some(1), "nothing made");
    c.sh("mv /usr/bin/git.off /usr/bin/git");
    let (code, out) = apply();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("git:/srv/app: created"), "{out}");
    assert_eq!(c.sh("cat /srv/app/page.txt"), "hello");
}
