//! nginx and apt on a real system (a booted container): a site proxying to a socket-activated
//! app serves through nginx, a broken edit is refused while the old site keeps serving, a change
//! reloads nginx once; apt installs from a local repository and a converged list runs no apt.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::wait_until;
use crate::systemd_e2e::{Container, pair};

tests![
    nginx_serves_the_app_refuses_a_broken_edit_and_reloads_once,
    apt_installs_what_is_missing_and_nothing_when_converged,
    a_run_killed_during_nginx_test_is_finished_by_the_next,
    the_first_request_after_a_reload_gets_the_new_site,
    a_rolled_back_site_is_tested_before_nginx_reloads,
];

fn site(body: &str) -> String {
    format!(
        "  - nginx_site: app\n    remove_default: true\n    content: |\n      server {{\n          listen 80;\n{body}      }}\n"
    )
}

const PROXY: &str = "          location / { proxy_pass http://unix:/run/app/socket; }\n";

/// What nginx serves on port 80, once it says `expected`: a reload is graceful, so the old
/// workers answer for a moment after systemd's reload job is done.
fn serves(c: &Container, args: &str, expected: &str) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        last = c.sh(&format!("curl -sS --max-time 10 {args} http://127.0.0.1/ || true"));
        if last.contains(expected) {
            return last;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nginx never served {expected:?}; last answer:\n{last}");
}

fn master_and_workers(c: &Container) -> (String, String) {
    let master = c.sh("cat /run/nginx.pid");
    let workers = c.sh(&format!("pgrep -P {master} | sort | tr '\\n' ' '"));
    (master, workers)
}

fn nginx_serves_the_app_refuses_a_broken_edit_and_reloads_once() {
    let c = Container::boot("nginx");
    let playbook = pair("hello", "", "") + &site(PROXY);
    let out = c.apply(&playbook);
    assert!(out.contains("reload nginx.service: done"), "{out}");
    serves(&c, "", "hello from ");
    assert_eq!(c.exec(&["test", "-e", "/etc/nginx/sites-enabled/default"]).status.code(), Some(1));

    // A broken edit: refused, rolled back byte for byte, nothing reloaded, the old site still
    // serves. First the first reload's old workers leave.
    let old_workers = || c.sh("pgrep -f 'nginx: worker process is shutting dow[n]' >/dev/null && echo yes || echo no");
    assert!(wait_until(Duration::from_secs(30), || old_workers() == "no"), "nginx's old workers never left");
    let (master, workers) = master_and_workers(&c);
    let good_site = c.sh("cat /etc/nginx/sites-available/app");
    let broken = pair("hello", "", "") + &site("          locaton / { }\n");
    let (code, out, err) = c.converge(&["apply"], &broken);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("unknown directive \"locaton\""), "{err}");
    assert_eq!(c.sh("cat /etc/nginx/sites-available/app"), good_site, "the site is put back");
    nginx_accepts(&c);
    assert_eq!(master_and_workers(&c), (master.clone(), workers.clone()), "nginx was not touched");
    assert!(c.sh("curl -sS --max-time 10 http://127.0.0.1/").starts_with("hello from "));

    // A good change: one reload; the master stays, the workers are new.
    let changed = pair("hello", "", "") + &site(&format!("          add_header X-Converge yes;\n{PROXY}"));
    let out = c.apply(&changed);
    assert_eq!(out.matches("reload nginx.service: done").count(), 1, "{out}");
    serves(&c, "-i", "X-Converge: yes");
    let (master_after, workers_after) = master_and_workers(&c);
    assert_eq!(master_after, master, "a reload keeps the master");
    assert_ne!(workers_after, workers, "a reload replaces the workers");
    assert!(c.apply(&changed).starts_with("No changes."));

    // `converge rollback` puts the previous site back, nginx accepts it and is reloaded: the
    // next request gets the previous site.
    let out = c.sh("converge rollback");
    assert_eq!(out.matches("reload nginx.service: done").count(), 1, "{out}");
    assert_eq!(c.sh("cat /etc/nginx/sites-available/app"), good_site, "the site before the change");
    let answer = c.sh("curl -sS -i --max-time 10 http://127.0.0.1/");
    assert!(!answer.contains("X-Converge") && answer.contains("hello from "), "{answer}");
}

/// A site v1 that includes a snippet, v2 that does not. With the snippet deleted, nginx rejects
/// v1 when a rollback puts it back: the rollback undoes it again and nginx is not touched. With
/// the snippet back, the rollback's site is tested, then nginx reloads and serves v1.
fn a_rolled_back_site_is_tested_before_nginx_reloads() {
    let c = Container::boot("nginx-rollback");
    c.write("/etc/nginx/snippets/v1.conf", "add_header X-Version v1;\n");
    let v = |body: &str| "resources:\n".to_owned() + &site(&format!("          location / {{ {body} return 200 \"served\\n\"; }}\n"));
    c.apply(&v("include snippets/v1.conf;"));
    serves(&c, "-i", "X-Version: v1");
    let v2 = v("add_header X-Version v2;");
    c.apply(&v2);
    serves(&c, "-i", "X-Version: v2");
    let v2_site = c.sh("cat /etc/nginx/sites-available/app");

    c.sh("mv /etc/nginx/snippets/v1.conf /root/v1.conf");
    let old_workers = || c.sh("pgrep -f 'nginx: worker process is shutting dow[n]' >/dev/null && echo yes || echo no");
    assert!(wait_until(Duration::from_secs(30), || old_workers() == "no"), "nginx's old workers never left");
    let before = master_and_workers(&c);
    let out = c.exec(&["converge", "rollback"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("nginx rejected the configuration the rollback put back"), "{stderr}");
    assert!(stderr.contains("snippets/v1.conf"), "nginx's own message: {stderr}");
    assert_eq!(c.sh("cat /etc/nginx/sites-available/app"), v2_site, "v2 is put back");
    nginx_accepts(&c);
    assert_eq!(master_and_workers(&c), before, "nginx was not touched");
    assert!(c.sh("curl -sS -i --max-time 10 http://127.0.0.1/").contains("X-Version: v2"));

    c.sh("mv /root/v1.conf /etc/nginx/snippets/v1.conf");
    let out = c.sh("converge rollback");
    assert!(out.contains("reload nginx.service: done"), "{out}");
    let answer = c.sh("curl -sS -i --max-time 10 http://127.0.0.1/");
    assert!(answer.contains("X-Version: v1"), "the first request after the rollback gets v1: {answer}");
    assert_eq!(master_and_workers(&c).0, before.0, "a reload keeps the master");
}

/// `nginx -t` inside accepts the configuration.
fn nginx_accepts(c: &Container) {
    let out = c.exec(&["nginx", "-t", "-q"]);
    assert!(out.status.success(), "nginx -t rejects it: {}", String::from_utf8_lossy(&out.stderr));
}

/// The packages of the local repository: tiny .debs, each with a README that says its name.
const PACKAGES: [&str; 3] = ["converge-hello", "converge-fresh", "converge-stale"];

/// Builds tiny .debs and a flat apt repository of them on the host.
fn local_repository(dir: &Path) {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for name in PACKAGES {
        let pkg = dir.join("build").join(name);
        std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(pkg.join(format!("usr/share/{name}"))).unwrap();
        std::fs::write(pkg.join("DEBIAN/control"), format!("Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: converge <converge@localhost>\nDescription: a test package\n")).unwrap();
        let readme = if name == "converge-hello" { "hello\n".to_owned() } else { format!("{name}\n") };
        std::fs::write(pkg.join(format!("usr/share/{name}/README")), readme).unwrap();
        let built = Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&pkg)
            .arg(repo.join(format!("{name}_1.0_all.deb")))
            .output()
            .unwrap();
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    }
    let packages = Command::new("dpkg-scanpackages").arg(".").current_dir(&repo).output().unwrap();
    assert!(packages.status.success(), "{}", String::from_utf8_lossy(&packages.stderr));
    std::fs::write(repo.join("Packages"), packages.stdout).unwrap();
}

fn apt_installs_what_is_missing_and_nothing_when_converged() {
    let c = Container::boot("apt");
    let dir = tempfile::tempdir().unwrap();
    local_repository(dir.path());
    c.copy_in(&dir.path().join("repo"), "/srv/repo");
    // Only the local repository: the container has no network.
    c.sh("echo 'deb [trusted=yes] file:/srv/repo ./' > /etc/apt/sources.list && rm -rf /etc/apt/sources.list.d/*");
    // Every apt-get call is logged: the converged run must make none.
    c.sh("mv /usr/bin/apt-get /usr/bin/apt-get.real && printf '#!/bin/sh\\necho \"$@\" >> /root/apt-calls\\nexec /usr/bin/apt-get.real \"$@\"\\n' > /usr/bin/apt-get && chmod 755 /usr/bin/apt-get");

    let playbook = "resources:\n  - apt: [converge-hello, nginx]\n    update_cache: true\n";
    let out = c.apply(playbook);
    assert!(out.contains("package: converge-hello: install"), "{out}");
    assert!(!out.contains("package: nginx"), "nginx is installed already: {out}");
    assert_eq!(c.sh("cat /usr/share/converge-hello/README"), "hello");
    let calls = c.sh("cat /root/apt-calls");
    // One call per line, exactly: a longer install line (more packages) would not do.
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["update -q", "install -y -q --no-install-recommends -- converge-hello"],
        "{calls}"
    );

    let out = c.apply(playbook);
    assert!(out.starts_with("No changes."), "{out}");
    assert_eq!(c.sh("cat /root/apt-calls"), calls, "a converged run spawns no apt process");

    let (code, out, err) = c.converge(&["apply"], "resources:\n  - apt: converge-helo\n");
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("no such package: converge-helo"), "{err}");

    // `update_cache: SECONDS` updates the lists only when they are older than that: apt-get
    // update just ran, so the lists are fresh; aged by two hours, they are stale.
    let new_calls = |before: &str| c.sh("cat /root/apt-calls").strip_prefix(before).unwrap().trim().to_owned();
    let calls = c.sh("cat /root/apt-calls");
    c.apply("resources:\n  - apt: converge-fresh\n    update_cache: 3600\n");
    assert_eq!(new_calls(&calls), "install -y -q --no-install-recommends -- converge-fresh", "fresh lists");
    let calls = c.sh("cat /root/apt-calls");
    c.sh("touch -d '2 hours ago' /var/cache/apt/pkgcache.bin");
    c.apply("resources:\n  - apt: converge-stale\n    update_cache: 3600\n");
    assert_eq!(
        new_calls(&calls).lines().collect::<Vec<_>>(),
        ["update -q", "install -y -q --no-install-recommends -- converge-stale"],
        "lists older than an hour"
    );
    assert_eq!(c.sh("cat /usr/share/converge-stale/README"), "converge-stale");
    // Nothing to install: no update either, however old the lists.
    let calls = c.sh("cat /root/apt-calls");
    c.sh("touch -d '2 hours ago' /var/cache/apt/pkgcache.bin");
    assert!(c.apply("resources:\n  - apt: converge-stale\n    update_cache: 3600\n").starts_with("No changes."));
    assert_eq!(new_calls(&calls), "", "a converged list runs no apt process");
}

/// Starts `converge apply` of `playbook` inside, waits until the `nginx -t` it runs is held by
/// the FIFO /etc/nginx/conf.d/gate.conf (nginx blocks opening it), SIGKILLs converge there, then
/// lets nginx go on and makes the gate a plain file again.
fn kill_during_nginx_test(c: &Container, playbook: &str) {
    c.sh("rm -f /etc/nginx/conf.d/gate.conf && mkfifo /etc/nginx/conf.d/gate.conf");
    c.write("/root/playbook.yml", playbook);
    let mut child = crate::support::harness_script("harness/container.sh")
        .args(["exec", c.name(), "converge", "apply", "/root/playbook.yml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while c.sh("pgrep -f '^nginx -t' >/dev/null && echo held || echo no") != "held" {
        assert!(child.try_wait().unwrap().is_none(), "converge ended before it ran nginx -t");
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "nginx -t never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.sh("kill -9 $(pgrep -x converge)");
    assert_ne!(child.wait().unwrap().code(), Some(0));
    // Opening the gate's writing end waits for nginx; closing it gives nginx an empty file.
    c.sh("exec 3>/etc/nginx/conf.d/gate.conf; exec 3>&-; rm /etc/nginx/conf.d/gate.conf; touch /etc/nginx/conf.d/gate.conf");
    assert!(c.sh("cat /var/lib/converge/nginx-site-in-test.json").contains("\"site\": \"app\""));
}

fn a_run_killed_during_nginx_test_is_finished_by_the_next() {
    let c = Container::boot("nginx-killed");
    let page = |text: &str| format!("resources:\n{}", site(&format!("          return 200 \"{text}\\n\";\n")));
    c.apply(&page("old"));
    serves(&c, "", "old");

    // A good site, killed in nginx -t: untested, and the plan says so; the next run tests it,
    // keeps it, and fires the reload the killed run had journaled.
    kill_during_nginx_test(&c, &page("new"));
    assert!(c.sh("cat /var/lib/converge/pending-triggers.json").contains("nginx.service"));
    let (code, plan, _) = c.converge(&["plan"], &page("new"));
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("nginx -t: not run (a run was stopped before nginx answered)"), "{plan}");
    let out = c.apply(&page("new"));
    assert!(
        out.contains("nginx_site:app: a run was stopped before nginx -t answered; nginx -t accepts it now: kept"),
        "{out}"
    );
    assert!(out.contains("reload nginx.service: done"), "{out}");
    serves(&c, "", "new");
    assert!(c.apply(&page("new")).starts_with("No changes."));
    let new_site = c.sh("cat /etc/nginx/sites-available/app");

    // A broken site, killed in nginx -t: the next run rolls it back (and refuses it again).
    let broken = format!("resources:\n{}", site("          locaton / { }\n"));
    kill_during_nginx_test(&c, &broken);
    let (code, out, err) = c.converge(&["apply"], &broken);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("nginx -t rejects it: the previous site was put back"), "{out}");
    assert!(c.sh("cat /etc/nginx/sites-available/app").contains("return 200 \"new\\n\";"));
    assert_eq!(c.sh("cat /etc/nginx/sites-available/app"), new_site, "the site is put back byte for byte");
    nginx_accepts(&c);
    assert_eq!(c.sh("test -e /var/lib/converge/nginx-site-in-test.json || echo gone"), "gone");
    serves(&c, "", "new");
}

fn the_first_request_after_a_reload_gets_the_new_site() {
    let c = Container::boot("nginx-first");
    let playbook = |answer: &str| {
        format!("resources:\n{}", site(&format!("          location / {{ return 200 \"{answer}\\n\"; }}\n")))
    };
    c.apply(&playbook("v0"));
    // Each apply returns once nginx's old workers have left: the very next request, with no
    // retry, is answered by the new configuration. Several rounds, since a lingering old worker
    // answers only some of the time.
    for round in 1..=5 {
        let answer = format!("v{round}");
        let out = c.apply(&playbook(&answer));
        assert!(out.contains("reload nginx.service: done"), "{out}");
        assert_eq!(c.sh("curl -sS --max-time 10 http://127.0.0.1/"), answer, "round {round}");
    }
}
