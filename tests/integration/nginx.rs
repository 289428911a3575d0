//! `nginx_site` against the real nginx of the build machine: `nginx -t` checks the whole
//! configuration of the root (its nginx.conf includes sites-enabled relatively, so nginx runs with
//! the root as its prefix); a rejected site is rolled back byte for byte.

use std::fs;
use std::path::Path;

use crate::support::Test;

tests![
    a_good_site_goes_live_and_reloads_nginx,
    a_broken_edit_is_rolled_back_byte_for_byte,
    a_broken_new_site_leaves_no_trace,
    disabled_and_absent_sites,
    apt_before_sites,
    installed_packages_are_read_from_the_dpkg_database,
    killed_during_nginx_test_a_good_site_is_accepted_by_the_next_run,
    killed_during_nginx_test_a_broken_site_is_rolled_back_by_the_next_run,
    sigterm_during_nginx_test_finishes_the_site_and_starts_nothing_after_it,
    a_refused_sensitive_site_shows_none_of_its_lines,
    a_rejected_edit_puts_back_mode_owner_and_the_default_site,
    rollback_puts_back_the_site_its_mode_owner_and_the_default_site,
    a_rolled_back_site_is_tested_and_undone_again_when_nginx_rejects_it,
];

// No access log: nginx -t opens it, and /var/log/nginx is root's (the tests run as anyone).
const NGINX_CONF: &str = "events {}\nhttp {\n    access_log off;\n    include sites-enabled/*;\n}\n";

fn nginx_root() -> Test {
    require!(Nginx); // .ci/run installs it
    Test::new().host_file("/etc/nginx/nginx.conf", NGINX_CONF)
}

const GOOD: &str = "server {\n    listen 8080;\n    location / { proxy_pass http://unix:/run/gunicorn/socket; }\n}\n";
const BROKEN: &str = "server {\n    listen 8080;\n    locaton / { proxy_pass http://unix:/run/gunicorn/socket; }\n}\n";

fn site(content: &str) -> String {
    let indented: String = content.lines().map(|l| format!("      {l}\n")).collect();
    format!("resources:\n  - nginx_site: mysite\n    remove_default: true\n    content: |\n{indented}")
}

fn a_good_site_goes_live_and_reloads_nginx() {
    let test = nginx_root();
    let test = test.playbook(&site(GOOD)).host_file("/etc/nginx/sites-available/default", "server { listen 80; }\n");
    fs::create_dir_all(test.host_path("/etc/nginx/sites-enabled")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/nginx/sites-available/default",
        test.host_path("/etc/nginx/sites-enabled/default"),
    )
    .unwrap();
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("reload nginx.service   (nginx_site:mysite changed)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("default site: enabled -> removed"), "{}", plan.stdout);
    test.apply().success();
    test.expect_file("/etc/nginx/sites-available/mysite", GOOD);
    assert_eq!(
        fs::read_link(test.host_path("/etc/nginx/sites-enabled/mysite")).unwrap(),
        Path::new("../sites-available/mysite")
    );
    test.expect_absent("/etc/nginx/sites-enabled/default");
    test.plan().code(0);
}

fn a_broken_edit_is_rolled_back_byte_for_byte() {
    let test = nginx_root();
    let test = test.playbook(&site(GOOD));
    test.apply().success();
    let link = fs::read_link(test.host_path("/etc/nginx/sites-enabled/mysite")).unwrap();

    let test = test.playbook(&site(BROKEN));
    let run = test.apply().code(1);
    assert!(run.stderr.contains("nginx rejected the configuration"), "{}", run.stderr);
    assert!(run.stderr.contains("unknown directive \"locaton\""), "nginx's own message: {}", run.stderr);
    assert!(run.stderr.contains("line 3: locaton / {"), "the line nginx names: {}", run.stderr);
    assert!(!run.stdout.contains("reload nginx.service: "), "nothing reloaded: {}", run.stdout);
    test.expect_file("/etc/nginx/sites-available/mysite", GOOD);
    assert_eq!(fs::read_link(test.host_path("/etc/nginx/sites-enabled/mysite")).unwrap(), link);
}

fn a_broken_new_site_leaves_no_trace() {
    let test = nginx_root();
    let test = test.playbook(&site(BROKEN));
    let run = test.apply().code(1);
    // nginx's own verdict stopped it, not an earlier failure: the site was written and tested.
    assert!(run.stderr.contains("nginx rejected the configuration"), "{}", run.stderr);
    assert!(run.stderr.contains("unknown directive \"locaton\""), "nginx's own message: {}", run.stderr);
    assert!(run.stderr.contains("line 3: locaton / {"), "the line of the new site nginx names: {}", run.stderr);
    test.expect_absent("/etc/nginx/sites-available/mysite").expect_absent("/etc/nginx/sites-enabled/mysite");
}

fn disabled_and_absent_sites() {
    let test = nginx_root();
    let test = test.playbook(&site(GOOD));
    test.apply().success();
    let test = test.playbook(&(site(GOOD) + "    enabled: false\n"));
    let run = test.apply().success();
    assert!(run.stdout.contains("enabled: true -> false"), "{}", run.stdout);
    test.expect_absent("/etc/nginx/sites-enabled/mysite").expect_file("/etc/nginx/sites-available/mysite", GOOD);
    let test = test.playbook("resources:\n  - nginx_site: mysite\n    state: absent\n");
    test.apply().success();
    test.expect_absent("/etc/nginx/sites-available/mysite");
    test.plan().code(0);
}

fn apt_before_sites() {
    let test =
        Test::new().playbook("resources:\n  - nginx_site: a\n    content: \"server {}\\n\"\n  - apt: [curl, nginx]\n");
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "-v"]).code(2);
    let apt = run.stdout.find("apt:curl,nginx").expect("apt planned");
    let site = run.stdout.find("nginx_site:a").expect("site planned");
    assert!(apt < site, "the packages come first:\n{}", run.stdout);
}

fn installed_packages_are_read_from_the_dpkg_database() {
    let test = Test::new()
        .playbook("resources:\n  - apt: [nginx, python3-venv]\n  - apt: curl\n    state: absent\n")
        .host_file("/var/lib/dpkg/status", "Package: nginx\nStatus: install ok installed\nVersion: 1.22\n\nPackage: python3-venv\nStatus: install ok installed\nVersion: 3.11\n\nPackage: curl\nStatus: deinstall ok config-files\nVersion: 7\n");
    let run = test.plan().code(0);
    assert_eq!(run.stdout, "No changes. The host matches the playbook.\n");
}

// A run killed during `nginx -t`. nginx.conf includes `gate.conf`, which the test makes a FIFO:
// nginx blocks opening it until the test opens the other end, so the kill lands while nginx is
// testing the new site, every time. The next plain `apply` must finish that test.

const GATED_CONF: &str = "events {}\nhttp {\n    access_log off;\n    include gate.conf;\n    include sites-enabled/*;\n}\n";
const JOURNAL: &str = "/var/lib/converge/nginx-site-in-test.json";
const GOOD2: &str = "server {\n    listen 8081;\n}\n";

/// A root with a gated nginx.conf and an old site that is not root's and not 0644.
fn gated_root(enabled: bool) -> Test {
    let test = nginx_root();
    require!(Root);
    let test = test
        .host_file("/etc/nginx/nginx.conf", GATED_CONF)
        .host_file("/etc/nginx/gate.conf", "")
        .host_file("/etc/nginx/sites-available/mysite", GOOD)
        .host_file("/etc/nginx/sites-available/default", "server { listen 8082; }\n");
    let old = test.host_path("/etc/nginx/sites-available/mysite");
    std::os::unix::fs::chown(&old, Some(1234), Some(2345)).unwrap();
    fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    fs::create_dir_all(test.host_path("/etc/nginx/sites-enabled")).unwrap();
    let link = |name: &str| {
        std::os::unix::fs::symlink(
            format!("../sites-available/{name}"),
            test.host_path(&format!("/etc/nginx/sites-enabled/{name}")),
        )
        .unwrap()
    };
    link("default");
    if enabled {
        link("mysite");
    }
    test
}

/// The parent pid and command name of a process, from /proc/PID/stat.
fn parent_and_name(pid: u32) -> Option<(u32, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    Some((rest.split_whitespace().nth(1)?.parse().ok()?, name))
}

/// Whether an `nginx` process runs below `ancestor` (its child, or further down).
fn nginx_below(ancestor: u32) -> bool {
    fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).any(|pid| {
        let Some((mut parent, name)) = parent_and_name(pid) else { return false };
        if name != "nginx" {
            return false;
        }
        for _ in 0..4 {
            if parent == ancestor {
                return true;
            }
            parent = match parent_and_name(parent) {
                Some((p, _)) if p > 1 => p,
                _ => return false,
            };
        }
        false
    })
}

/// Makes gate.conf a FIFO and starts `apply`; returns it once the nginx -t it started is
/// running. nginx then blocks opening the gate until [`release_nginx`] opens its other end, so
/// the run is held in the middle of `nginx -t`, for as long as the test likes.
fn apply_held_in_nginx_test(test: &Test) -> std::process::Child {
    let gate = test.host_path("/etc/nginx/gate.conf");
    fs::remove_file(&gate).unwrap();
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).unwrap();
    let mut child = test
        .command(&["apply", "{playbook}", "--root", "{root}"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !nginx_below(child.id()) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("converge ended ({status}) before it ran nginx -t");
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "nginx -t never started");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child
}

/// Lets the held nginx go on: opens the gate's writing end once nginx waits on the other (a
/// FIFO opened without blocking fails with ENXIO until then), and closes it: nginx reads an
/// empty file and finishes its test.
fn release_nginx(test: &Test) {
    use std::os::unix::fs::OpenOptionsExt;
    let gate = test.host_path("/etc/nginx/gate.conf");
    let start = std::time::Instant::now();
    loop {
        match fs::OpenOptions::new().write(true).custom_flags(nix::libc::O_NONBLOCK).open(&gate) {
            Ok(_) => return,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                assert!(start.elapsed() < std::time::Duration::from_secs(60), "nginx never opened the gate");
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// gate.conf a plain (empty) file again.
fn open_gate(test: &Test) {
    let gate = test.host_path("/etc/nginx/gate.conf");
    fs::remove_file(&gate).unwrap();
    fs::write(&gate, "").unwrap();
}

/// Runs `apply` and SIGKILLs it while nginx -t, which it started, is reading the new site.
fn kill_during_nginx_test(test: &Test) {
    use std::os::unix::process::ExitStatusExt;
    let mut child = apply_held_in_nginx_test(test);
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    // nginx finishes its test, which nobody hears.
    release_nginx(test);
    open_gate(test);
    let journal = fs::read_to_string(test.host_path(JOURNAL)).expect("the site is journaled before nginx -t");
    assert!(journal.contains("listen 8080"), "the journal has the old site: {journal}");
}

fn killed_during_nginx_test_a_good_site_is_accepted_by_the_next_run() {
    let test = gated_root(true);
    let test = test.playbook(&site(GOOD2));
    kill_during_nginx_test(&test);
    test.expect_file("/etc/nginx/sites-available/mysite", GOOD2);

    // Written and not yet tested: the plan does not call it converged.
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("nginx -t: not run (a run was stopped before nginx answered)"), "{}", plan.stdout);

    let run = test.apply().success();
    assert!(
        run.stdout
            .contains("nginx_site:mysite: a run was stopped before nginx -t answered; nginx -t accepts it now: kept"),
        "{}",
        run.stdout
    );
    test.expect_file("/etc/nginx/sites-available/mysite", GOOD2).expect_absent(JOURNAL);
    test.expect_absent("/etc/nginx/sites-enabled/default");
    test.plan().code(0);
}

fn killed_during_nginx_test_a_broken_site_is_rolled_back_by_the_next_run() {
    // The old site was written by hand, 0640 and not root's, and not enabled; the default site is.
    let test = gated_root(false);
    let test = test.playbook(&site(BROKEN));
    kill_during_nginx_test(&test);
    test.expect_file("/etc/nginx/sites-available/mysite", BROKEN);
    assert!(test.host_path("/etc/nginx/sites-enabled/mysite").exists());
    test.expect_absent("/etc/nginx/sites-enabled/default");
    test.plan().code(2);

    // The interrupted test is finished first (rejected: put back), then the playbook's own
    // attempt is rejected too.
    let run = test.apply().code(1);
    assert!(
        run.stdout.contains(
            "nginx_site:mysite: a run was stopped before nginx -t answered; nginx -t rejects it: the previous site was put back"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("unknown directive \"locaton\""), "nginx's message: {}", run.stdout);
    assert!(run.stderr.contains("nginx rejected the configuration"), "{}", run.stderr);
    test.expect_file("/etc/nginx/sites-available/mysite", GOOD)
        .expect_stat("/etc/nginx/sites-available/mysite", 0o640, 1234, 2345)
        .expect_absent("/etc/nginx/sites-enabled/mysite")
        .expect_absent(JOURNAL);
    assert_eq!(
        fs::read_link(test.host_path("/etc/nginx/sites-enabled/default")).unwrap(),
        Path::new("../sites-available/default"),
        "the default site's link is back"
    );

    // Finished once: a later run has nothing left to finish.
    let test = test.playbook("resources: []\n");
    let run = test.apply().success();
    assert!(!run.stdout.contains("nginx -t"), "{}", run.stdout);
}

fn sigterm_during_nginx_test_finishes_the_site_and_starts_nothing_after_it() {
    let test = gated_root(true);
    let test = test.playbook(&(site(GOOD2) + "  - file: /etc/after\n    content: \"after\\n\"\n"));
    let mut child = apply_held_in_nginx_test(&test);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    // Still there 300 ms on: it waits for nginx's verdict on the site it wrote.
    let ended = crate::support::wait_until(std::time::Duration::from_millis(300), || child.try_wait().unwrap().is_some());
    if ended {
        let status = child.try_wait().unwrap().unwrap();
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        panic!("SIGTERM ended the run in the middle of its step ({status}):\n{stdout}{stderr}");
    }
    release_nginx(&test);
    let out = child.wait_with_output().unwrap();
    open_gate(&test);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(128 + 15), "{stdout}{stderr}");
    assert!(stderr.contains("stopped by SIGTERM: the step in progress was finished"), "{stderr}");
    assert!(stdout.contains("nginx_site:mysite: updated"), "{stdout}");
    assert!(stdout.contains("Applied 1 of 2 before the failure: nginx_site:mysite."), "{stdout}");
    // The site's step is whole: tested, accepted, its journal gone; the file after it untouched.
    test.expect_file("/etc/nginx/sites-available/mysite", GOOD2).expect_absent(JOURNAL).expect_absent("/etc/after");

    let run = test.apply().success();
    assert!(run.stdout.contains("file:/etc/after: created"), "{}", run.stdout);
    assert!(!run.stdout.contains("nginx_site"), "{}", run.stdout);
}

fn a_refused_sensitive_site_shows_none_of_its_lines() {
    let test = nginx_root();
    let secret = "server {\n    listen 8080;\n    proxy_set_header_x Authorization \"Bearer Tok3n-Qz9-secret\";\n}\n";
    let yaml = format!("{}    sensitive: true\n", site(secret));
    let run = test.playbook(&yaml).apply().code(1);
    assert!(run.stderr.contains("nginx rejected the configuration"), "{}", run.stderr);
    assert!(!run.stderr.contains("Qz9") && !run.stderr.contains("proxy_set_header_x"), "{}", run.stderr);
    assert!(!run.stdout.contains("Qz9"), "{}", run.stdout);
}

/// `nginx -t` on the root's whole configuration, as converge runs it (the root as nginx's prefix):
/// its stderr when nginx rejects it.
fn nginx_t(test: &Test) -> Result<(), String> {
    let pid = format!("pid {}/nginx-t.pid;", test.dir.path().display());
    let out = std::process::Command::new("/usr/sbin/nginx")
        .args(["-t", "-q", "-e", "stderr", "-p"])
        .arg(format!("{}/", test.root().display()))
        .arg("-c")
        .arg(test.host_path("/etc/nginx/nginx.conf"))
        .args(["-g", &pid])
        .output()
        .expect("nginx runs");
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// The site as it was before: GOOD, 0640 and 1234:2345 (not what converge writes), enabled; and
/// the default site enabled.
fn hand_made_site() -> Test {
    let test = nginx_root();
    require!(Root); // chown
    let test = test
        .host_file("/etc/nginx/sites-available/mysite", GOOD)
        .host_file("/etc/nginx/sites-available/default", "server { listen 8082; }\n");
    let old = test.host_path("/etc/nginx/sites-available/mysite");
    std::os::unix::fs::chown(&old, Some(1234), Some(2345)).unwrap();
    fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    fs::create_dir_all(test.host_path("/etc/nginx/sites-enabled")).unwrap();
    for name in ["mysite", "default"] {
        let link = test.host_path(&format!("/etc/nginx/sites-enabled/{name}"));
        std::os::unix::fs::symlink(format!("../sites-available/{name}"), link).unwrap();
    }
    nginx_t(&test).expect("the hand-made configuration is valid");
    test
}

/// The hand-made site of [`hand_made_site`] is there, as it was, and nginx accepts it.
fn expect_hand_made_site(test: &Test) {
    test.expect_file("/etc/nginx/sites-available/mysite", GOOD).expect_stat(
        "/etc/nginx/sites-available/mysite",
        0o640,
        1234,
        2345,
    );
    for name in ["mysite", "default"] {
        assert_eq!(
            fs::read_link(test.host_path(&format!("/etc/nginx/sites-enabled/{name}"))).unwrap(),
            Path::new(&format!("../sites-available/{name}")),
            "the {name} site's link is back"
        );
    }
    if let Err(rejected) = nginx_t(test) {
        panic!("nginx -t rejects the configuration put back: {rejected}");
    }
}

/// An edit that nginx rejects puts back the previous site with its mode and owner, and the default
/// site that `remove_default` had removed.
fn a_rejected_edit_puts_back_mode_owner_and_the_default_site() {
    let test = hand_made_site().playbook(&site(BROKEN));
    let run = test.apply().code(1);
    assert!(run.stderr.contains("nginx rejected the configuration"), "{}", run.stderr);
    assert!(run.stderr.contains("unknown directive \"locaton\""), "nginx's own message: {}", run.stderr);
    expect_hand_made_site(&test);
    test.expect_absent(JOURNAL);
}

/// `converge rollback` of a run that replaced a site (converge's mode and owner, the default site
/// removed) puts back the previous file byte for byte with its mode and owner, and both links; the
/// configuration it leaves passes `nginx -t`.
fn rollback_puts_back_the_site_its_mode_owner_and_the_default_site() {
    let test = hand_made_site().playbook(&site(GOOD2));
    test.apply().success();
    test.expect_file("/etc/nginx/sites-available/mysite", GOOD2)
        .expect_stat("/etc/nginx/sites-available/mysite", 0o644, 0, 0)
        .expect_absent("/etc/nginx/sites-enabled/default");
    nginx_t(&test).unwrap();

    let run = test.run_args(&["rollback", "--root", "{root}"]).success();
    assert!(run.stdout.contains("recorded as run 2"), "{}", run.stdout);
    assert!(run.stdout.contains("reload nginx.service: skipped"), "the reload a site change asks for: {}", run.stdout);
    expect_hand_made_site(&test);
}

/// A site put back by a rollback is checked by `nginx -t` before any reload; when nginx rejects
/// it (here, a snippet it includes was deleted since), the rollback undoes it again, says so and
/// reloads nothing; the rest of the rollback stays done, and is recorded.
fn a_rolled_back_site_is_tested_and_undone_again_when_nginx_rejects_it() {
    let v1 = "server {\n    listen 8080;\n    include snippets/extra.conf;\n}\n";
    let playbook = |content: &str, other: &str| {
        site(content) + &format!("  - file: /etc/app.conf\n    content: \"{other}\\n\"\n")
    };
    let test = nginx_root().host_file("/etc/nginx/snippets/extra.conf", "add_header X-Extra yes;\n");
    let test = test.playbook(&playbook(v1, "v1"));
    test.apply().success();
    let test = test.playbook(&playbook(GOOD2, "v2"));
    test.apply().success();
    fs::remove_file(test.host_path("/etc/nginx/snippets/extra.conf")).unwrap();

    let run = test.run_args(&["rollback", "--root", "{root}"]).code(1);
    assert!(run.stderr.contains("nginx rejected the configuration the rollback put back"), "{}", run.stderr);
    assert!(run.stderr.contains("snippets/extra.conf"), "nginx's own message: {}", run.stderr);
    assert!(!run.stdout.contains("reload nginx.service: "), "nothing reloaded: {}", run.stdout);
    test.expect_file("/etc/nginx/sites-available/mysite", GOOD2);
    test.expect_file("/etc/app.conf", "v1\n");
    nginx_t(&test).unwrap();
    let history = test.run_args(&["history", "--root", "{root}"]).success();
    assert!(history.stdout.contains("rollback of run 2"), "the rollback is recorded: {}", history.stdout);
}
