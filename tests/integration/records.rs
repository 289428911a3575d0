//! The `--output json` stream (docs/output.md) as programs and the remote controller read it:
//! one snapshot per kind, of `plan` and then `apply` in a temporary root (the triggers an
//! offline root skips included). The records of triggers that need systemd are snapshotted at
//! the unit level (src/engine/record.rs).

use crate::support::Test;

tests![
    file,
    directory_and_symlink,
    unit,
    tmpfiles,
    user_and_group,
    nginx_site,
    command_apt_and_virtualenv_plans,
    sensitive_values_are_hidden_in_records,
];

/// `plan`, `apply` and `plan` again, with `--output json`: the records, the test's directory
/// as `[TMP]`, converge's version as `[VERSION]` and times as `[MS]`.
fn stream(test: &Test, apply: bool) -> String {
    let mut text = String::new();
    let runs: &[&str] = if apply { &["plan", "apply", "plan"] } else { &["plan"] };
    for command in runs {
        let run = test.run_args(&[command, "{playbook}", "--root", "{root}", "--output", "json"]);
        assert!(matches!(run.code, 0 | 2), "converge {command}:\n{}\n{}", run.stdout, run.stderr);
        let out =
            run.out().replace(&format!("\"converge\":\"{}\"", env!("CARGO_PKG_VERSION")), "\"converge\":\"[VERSION]\"");
        text += &format!("$ converge {command} --output json\n{}", without_times(&out));
    }
    text
}

/// The records with their times (`"duration_ms":12`) as `"duration_ms":"[MS]"`, and the
/// slowest resources (whose order depends on them) as `"[SLOWEST]"`.
fn without_times(out: &str) -> String {
    let mut text = out.to_owned();
    while let Some(start) = text.find("\"slowest\":[") {
        let end = start + text[start..].find(']').expect("the list ends");
        text.replace_range(start..=end, "\"slowest\":\"[SLOWEST]\"");
    }
    for key in ["\"duration_ms\":", "\"started_ms\":"] {
        let mut parts = text.split(key);
        let mut joined = parts.next().unwrap_or_default().to_owned();
        for part in parts {
            joined += key;
            joined += "\"[MS]\"";
            joined += part.trim_start_matches(|c: char| c.is_ascii_digit());
        }
        text = joined;
    }
    text
}

fn file() {
    let test = Test::new()
        .playbook("resources:\n  - file: /etc/app.conf\n    content: \"port = 81\\n\"\n    mode: \"0640\"\n    notify: [\"restart app.service\"]\n  - file: /etc/blob\n    source: blob.bin\n  - file: /etc/old.conf\n    state: absent\n    notify: [\"reload nginx.service\"]\n")
        .file("blob.bin", "\0\u{1}binary")
        .host_file("/etc/app.conf", "port = 80\n")
        .host_file("/etc/old.conf", "old\n");
    insta::assert_snapshot!(stream(&test, true));
}

fn directory_and_symlink() {
    let test = Test::new().playbook(
        "resources:\n  - directory: /srv/app\n    mode: \"0750\"\n  - symlink: /srv/current\n    target: /srv/app\n",
    );
    insta::assert_snapshot!(stream(&test, true));
}

fn unit() {
    let test = Test::new().playbook(
        "resources:\n  - unit: app.socket\n    content: |\n      [Socket]\n      ListenStream=/run/app.sock\n      [Install]\n      WantedBy=sockets.target\n    enabled: true\n",
    );
    insta::assert_snapshot!(stream(&test, true));
}

fn tmpfiles() {
    let test = Test::new().playbook("resources:\n  - tmpfiles: app\n    entries: [\"d /run/app 0755 root root -\"]\n");
    insta::assert_snapshot!(stream(&test, true));
}

fn user_and_group() {
    require!(Root); // the shadow tools under --root
    let test = Test::new()
        .with_accounts()
        .playbook("resources:\n  - group: converge-records\n  - user: converge-records\n    group: converge-records\n    shell: /bin/sh\n    home: /home/converge-records\n");
    insta::assert_snapshot!(stream(&test, true));
}

fn nginx_site() {
    require!(Nginx); // .ci/run installs it
    let test = Test::new()
        .host_file("/etc/nginx/nginx.conf", "events {}\nhttp {\n    include sites-enabled/*;\n}\n")
        .playbook("resources:\n  - nginx_site: app\n    content: |\n      server {\n          listen 8080;\n      }\n");
    insta::assert_snapshot!(stream(&test, true));
}

fn command_apt_and_virtualenv_plans() {
    // Planned only: applying them would run programs inside the root, or reach the network.
    let test = Test::new()
        .playbook("resources:\n  - command: [touch, /srv/done]\n    creates: /srv/done\n  - apt: [nginx, curl]\n  - apt: vim\n    state: absent\n  - directory: /srv\n  - virtualenv: /srv/venv\n    packages: [\"demo-pkg==1.0\"]\n")
        .host_file("/var/lib/dpkg/status", "Package: nginx\nStatus: install ok installed\nVersion: 1.22\n\nPackage: vim\nStatus: install ok installed\nVersion: 9\n");
    insta::assert_snapshot!(stream(&test, false));
}

fn sensitive_values_are_hidden_in_records() {
    let test = Test::new()
        .playbook("resources:\n  - file: /etc/secret\n    content: \"password=hunter2\\n\"\n    mode: \"0600\"\n    sensitive: true\n")
        .host_file("/etc/secret", "password=old\n");
    insta::assert_snapshot!(stream(&test, true));
}
