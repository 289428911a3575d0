//! The plan as a user reads it: Terraform's vocabulary, unified diffs, triggers, a summary, and
//! exit codes 0 (converged) and 2 (changes pending).

use crate::support::Test;

tests![
    plan_of_create_update_remove_with_triggers,
    converged_plan_exits_zero,
    sensitive_content_never_shows,
    binary_content_shows_digests,
    json_output_has_one_record_per_resource_and_trigger,
];

fn plan_of_create_update_remove_with_triggers() {
    let test = Test::new()
        .playbook(
            "vars:\n  port: 8000\nresources:\n  - file: /etc/app.conf\n    content: |\n      port = {{ port }}\n      workers = 3\n    mode: \"0640\"\n    notify: [\"restart app.service\"]\n  - file: /etc/new.conf\n    content: \"new\\n\"\n  - file: /etc/old.conf\n    state: absent\n    notify: [\"reload nginx.service\"]\n  - symlink: /etc/link\n    target: /etc/app.conf\n",
        )
        .host_file("/etc/app.conf", "port = 80\nworkers = 3\n")
        .host_file("/etc/old.conf", "old\n");
    let run = test.plan().code(2);
    insta::assert_snapshot!(run.out());
    // plan wrote nothing
    test.expect_file("/etc/app.conf", "port = 80\nworkers = 3\n")
        .expect_absent("/etc/new.conf")
        .expect_file("/etc/old.conf", "old\n");
}

fn converged_plan_exits_zero() {
    let test = Test::new()
        .playbook("resources:\n  - file: /etc/motd\n    content: \"hi\\n\"\n")
        .host_file("/etc/motd", "hi\n");
    let run = test.plan().code(0);
    assert_eq!(run.stdout, "No changes. The host matches the playbook.\n");
}

fn sensitive_content_never_shows() {
    let test = Test::new()
        .playbook("resources:\n  - file: /etc/secret\n    content: \"password=hunter2\\n\"\n    sensitive: true\n")
        .host_file("/etc/secret", "password=old-secret\n");
    for args in [
        ["plan", "{playbook}", "--root", "{root}"].as_slice(),
        &["plan", "{playbook}", "--root", "{root}", "--output", "json"],
        &["apply", "{playbook}", "--root", "{root}", "-v"],
    ] {
        let run = test.run_args(args);
        for secret in ["hunter2", "old-secret"] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{secret} leaked by {args:?}:\n{}",
                run.stdout
            );
        }
        assert!(run.stdout.contains("file:/etc/secret") || args[0] == "apply", "{}", run.stdout);
    }
    test.expect_file("/etc/secret", "password=hunter2\n");
}

fn binary_content_shows_digests() {
    let test = Test::new()
        .playbook("resources:\n  - file: /etc/blob\n    source: blob.bin\n")
        .file("blob.bin", "\0\u{1}binary");
    let run = test.plan().code(2);
    assert!(run.stdout.contains("content: nothing -> sha256:"), "{}", run.stdout);
    assert!(!run.stdout.contains("+++"), "no text diff for binary content:\n{}", run.stdout);
}

fn json_output_has_one_record_per_resource_and_trigger() {
    let test = Test::new().playbook("resources:\n  - file: /etc/a\n    content: \"a\\n\"\n    notify: [\"restart a.service\"]\n  - directory: /srv\n");
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "--output", "json"]).code(2);
    let records: Vec<serde_json::Value> =
        // After the stream record.
        run.stdout.lines().skip(1).map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(records.len(), 4, "{}", run.stdout);
    assert_eq!(records[0]["id"], "file:/etc/a");
    assert_eq!(records[0]["action"], "create");
    assert!(
        records[0]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["attr"] == "content" && c["diff"].as_str().unwrap().contains("+a"))
    );
    assert_eq!(records[1]["id"], "directory:/srv");
    assert_eq!(records[2]["type"], "trigger");
    assert_eq!(records[2]["unit"], "a.service");
    assert_eq!(records[3]["type"], "plan");
    assert_eq!(records[3]["create"], 2);
}
