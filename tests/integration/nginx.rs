//! `nginx_site` against the real nginx of the build machine: `nginx -t` checks the whole
//! configuration of the root (its nginx.conf includes sites-enabled relatively, so nginx runs with
//! the root as its prefix); a rejected site is rolled back byte for byte.

use std::fs;
use std::path::Path;

use crate::support::Test;

const NGINX_CONF: &str = "events {}\nhttp {\n    include sites-enabled/*;\n}\n";

fn nginx_root() -> Option<Test> {
    if !Path::new("/usr/sbin/nginx").exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must run the nginx tests: .ci/run installs nginx");
        eprintln!("skipped: needs nginx (apt-get install nginx)");
        return None;
    }
    Some(Test::new().host_file("/etc/nginx/nginx.conf", NGINX_CONF))
}

const GOOD: &str = "server {\n    listen 8080;\n    location / { proxy_pass http://unix:/run/gunicorn/socket; }\n}\n";
const BROKEN: &str = "server {\n    listen 8080;\n    locaton / { proxy_pass http://unix:/run/gunicorn/socket; }\n}\n";

fn site(content: &str) -> String {
    let indented: String = content.lines().map(|l| format!("      {l}\n")).collect();
    format!("resources:\n  - nginx_site: mysite\n    remove_default: true\n    content: |\n{indented}")
}

#[test]
fn a_good_site_goes_live_and_reloads_nginx() {
    let Some(test) = nginx_root() else { return };
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

#[test]
fn a_broken_edit_is_rolled_back_byte_for_byte() {
    let Some(test) = nginx_root() else { return };
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

#[test]
fn a_broken_new_site_leaves_no_trace() {
    let Some(test) = nginx_root() else { return };
    let test = test.playbook(&site(BROKEN));
    test.apply().code(1);
    test.expect_absent("/etc/nginx/sites-available/mysite").expect_absent("/etc/nginx/sites-enabled/mysite");
}

#[test]
fn disabled_and_absent_sites() {
    let Some(test) = nginx_root() else { return };
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

#[test]
fn apt_before_sites() {
    let test =
        Test::new().playbook("resources:\n  - nginx_site: a\n    content: \"server {}\\n\"\n  - apt: [curl, nginx]\n");
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "-v"]).code(2);
    let apt = run.stdout.find("apt:curl,nginx").expect("apt planned");
    let site = run.stdout.find("nginx_site:a").expect("site planned");
    assert!(apt < site, "the packages come first:\n{}", run.stdout);
}

#[test]
fn installed_packages_are_read_from_the_dpkg_database() {
    let test = Test::new()
        .playbook("resources:\n  - apt: [nginx, python3-venv]\n  - apt: curl\n    state: absent\n")
        .host_file("/var/lib/dpkg/status", "Package: nginx\nStatus: install ok installed\nVersion: 1.22\n\nPackage: python3-venv\nStatus: install ok installed\nVersion: 3.11\n\nPackage: curl\nStatus: deinstall ok config-files\nVersion: 7\n");
    let run = test.plan().code(0);
    assert_eq!(run.stdout, "No changes. The host matches the playbook.\n");
}

#[test]
fn a_refused_sensitive_site_shows_none_of_its_lines() {
    let Some(test) = nginx_root() else { return };
    let secret = "server {\n    listen 8080;\n    proxy_set_header_x Authorization \"Bearer Tok3n-Qz9-secret\";\n}\n";
    let yaml = format!("{}    sensitive: true\n", site(secret));
    let run = test.playbook(&yaml).apply().code(1);
    assert!(run.stderr.contains("nginx rejected the configuration"), "{}", run.stderr);
    assert!(!run.stderr.contains("Qz9") && !run.stderr.contains("proxy_set_header_x"), "{}", run.stderr);
    assert!(!run.stdout.contains("Qz9"), "{}", run.stdout);
}
