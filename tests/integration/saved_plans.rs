//! Saved plans under `--root`: `plan --out FILE`, `show FILE`, `apply --plan FILE`, which
//! applies exactly what was saved or, when the host changed since, refuses and changes nothing.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::support::Test;

tests![
    saved_plan_is_json_with_desired_state_observation_and_inputs,
    show_prints_the_saved_plan_as_plan_did,
    apply_plan_refuses_when_a_managed_file_was_edited_and_changes_nothing,
    apply_plan_refuses_on_a_changed_mode_of_an_unchanged_resource,
    apply_plan_applies_the_saved_desired_state_not_the_edited_playbook,
    apply_plan_of_a_converged_host_changes_nothing,
    a_plan_with_a_secret_is_not_saved_unless_allowed,
    a_secret_variable_that_no_resource_uses_is_never_written,
    bad_plan_files_and_targets_are_clear_errors,
];

const V1: &str = "vars:\n  greeting: hello\nresources:\n  - directory: /etc/app\n  - file: /etc/app/app.conf\n    content: \"{{ greeting }} v1\\n\"\n    mode: \"0640\"\n  - file: /etc/app/other.conf\n    content: \"other\\n\"\n  - symlink: /etc/app/current\n    target: /etc/app/app.conf\n";

fn plan_out(test: &Test, extra: &[&str]) -> crate::support::Run {
    let mut args = vec!["plan", "{playbook}", "--root", "{root}", "--out", "plan.json"];
    args.extend_from_slice(extra);
    test.run_args(&args)
}

fn apply_plan(test: &Test) -> crate::support::Run {
    test.run_args(&["apply", "--plan", "plan.json", "--root", "{root}"])
}

fn saved(test: &Test) -> serde_json::Value {
    serde_json::from_slice(&fs::read(test.dir.path().join("plan.json")).expect("the plan file")).unwrap()
}

fn saved_plan_is_json_with_desired_state_observation_and_inputs() {
    let test = Test::new().playbook(V1).host_file("/etc/app/other.conf", "old\n");
    let run = plan_out(&test, &[]).code(2);
    assert!(run.stdout.contains("Saved the plan to plan.json"), "{}", run.stdout);
    let meta = fs::metadata(test.dir.path().join("plan.json")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "a plan file is private");
    let plan = saved(&test);
    assert_eq!(plan["format"], "converge-plan");
    assert_eq!(plan["format_version"], 2);
    assert_eq!(plan["converge_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(plan["root"], fs::canonicalize(test.root()).unwrap().display().to_string());
    let files = plan["playbook"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let digest = sha256_hex(&fs::read(test.playbook_path()).unwrap());
    assert_eq!(files[0]["sha256"], digest);
    assert_eq!(plan["variables"][0]["name"], "greeting");
    assert_eq!(plan["variables"][0]["value"], "hello");
    let resources = plan["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 4, "every resource, changed or not");
    let conf = &resources[1];
    assert_eq!(conf["id"], "file:/etc/app/app.conf");
    assert_eq!(conf["desired"]["content"]["text"], "hello v1\n");
    assert_eq!(conf["desired"]["mode"], "0640");
    assert_eq!(conf["observed"]["facts"]["exists"], "no");
    let other = &resources[2];
    assert_eq!(other["observed"]["facts"]["sha256"], sha256_hex(b"old\n"));
    assert_eq!(other["observed"]["digest"].as_str().unwrap().len(), 64);
}

fn show_prints_the_saved_plan_as_plan_did() {
    let test = Test::new().playbook(V1).host_file("/etc/app/other.conf", "old\n");
    let planned = plan_out(&test, &[]).code(2);
    let shown = test.run_args(&["show", "plan.json", "--no-color"]).code(2);
    let plan_text = planned.stdout.lines().filter(|l| !l.starts_with("Saved the plan")).collect::<Vec<_>>().join("\n");
    let (header, body) = shown.stdout.split_once("\n\n").unwrap();
    assert!(header.starts_with("Saved plan of"), "{}", shown.stdout);
    assert_eq!(body.trim_end(), plan_text.trim_end());
    assert!(body.contains("-old\n") && body.contains("+other\n"), "{body}");

    let json = test.run_args(&["show", "plan.json", "--output", "json"]).code(2);
    let records: Vec<serde_json::Value> =
        // After the stream record.
        json.stdout.lines().skip(1).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records[0]["type"], "saved_plan");
    assert_eq!(records.last().unwrap()["type"], "plan");
    assert_eq!(records.last().unwrap()["create"], 2);
    assert_eq!(records.last().unwrap()["update"], 1);
}

fn apply_plan_refuses_when_a_managed_file_was_edited_and_changes_nothing() {
    let test = Test::new().playbook(V1).host_file("/etc/app/other.conf", "old\n");
    plan_out(&test, &[]).code(2);
    fs::write(test.host_path("/etc/app/other.conf"), "edited by hand\n").unwrap();
    let run = apply_plan(&test).code(1);
    assert!(run.stderr.contains("the plan is stale"), "{}", run.stderr);
    assert!(run.stderr.contains("file:/etc/app/other.conf changed since the plan"), "{}", run.stderr);
    let (old, new) = (sha256_hex(b"old\n"), sha256_hex(b"edited by hand\n"));
    let expected = format!("sha256 {} -> {}", &old[..12], &new[..12]);
    assert!(
        run.stderr.replace(['\n', '│'], " ").split_whitespace().collect::<Vec<_>>().join(" ").contains(&expected),
        "{}",
        run.stderr
    );
    // Checked before anything was applied: the resources before it were not created either.
    test.expect_file("/etc/app/other.conf", "edited by hand\n")
        .expect_absent("/etc/app/app.conf")
        .expect_absent("/etc/app/current");
}

fn apply_plan_refuses_on_a_changed_mode_of_an_unchanged_resource() {
    let test = Test::new().playbook(V1);
    test.apply().success();
    plan_out(&test, &[]).code(0);
    fs::set_permissions(test.host_path("/etc/app/other.conf"), fs::Permissions::from_mode(0o600)).unwrap();
    let run = apply_plan(&test).code(1);
    assert!(
        run.stderr.contains("file:/etc/app/other.conf changed since the plan (mode 0644 -> 0600)"),
        "{}",
        run.stderr
    );
    assert_eq!(fs::metadata(test.host_path("/etc/app/other.conf")).unwrap().mode() & 0o7777, 0o600);
}

fn apply_plan_applies_the_saved_desired_state_not_the_edited_playbook() {
    let test = Test::new().playbook(V1);
    plan_out(&test, &[]).code(2);
    // The playbook moves on after the review: the plan still applies v1.
    fs::write(test.playbook_path(), V1.replace("v1", "v2").replace("0640", "0600")).unwrap();
    let run = apply_plan(&test).success();
    assert!(run.stdout.contains("Apply complete: 4 created"), "{}", run.stdout);
    test.expect_file("/etc/app/app.conf", "hello v1\n").expect_file("/etc/app/other.conf", "other\n");
    assert_eq!(fs::metadata(test.host_path("/etc/app/app.conf")).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(fs::read_link(test.host_path("/etc/app/current")).unwrap().to_str(), Some("/etc/app/app.conf"));
    // The new playbook is a new plan; the applied one cannot be applied twice.
    let fresh = test.plan().code(2);
    assert!(fresh.stdout.contains("-hello v1") && fresh.stdout.contains("+hello v2"), "{}", fresh.stdout);
    apply_plan(&test).code(1);
    test.expect_file("/etc/app/app.conf", "hello v1\n");
}

fn apply_plan_of_a_converged_host_changes_nothing() {
    let test = Test::new().playbook(V1);
    test.apply().success();
    plan_out(&test, &[]).code(0);
    let before = fs::metadata(test.host_path("/etc/app/app.conf")).unwrap();
    let run = apply_plan(&test).success();
    assert!(run.stdout.contains("No changes"), "{}", run.stdout);
    let after = fs::metadata(test.host_path("/etc/app/app.conf")).unwrap();
    assert_eq!((before.ino(), before.mtime_nsec()), (after.ino(), after.mtime_nsec()));
}

fn a_plan_with_a_secret_is_not_saved_unless_allowed() {
    let playbook =
        "resources:\n  - file: /etc/token\n    content: \"{{ token }}\\n\"\n  - file: /etc/plain\n    content: plain\n";
    let test = Test::new().playbook(playbook);
    let run = test
        .run_args(&[
            "plan",
            "{playbook}",
            "--root",
            "{root}",
            "--out",
            "plan.json",
            "--secret-var",
            "token=s3cr3t-value",
        ])
        .code(1);
    assert!(run.stderr.contains("not saving the plan") && run.stderr.contains("file:/etc/token"), "{}", run.stderr);
    assert!(run.stderr.contains("--allow-secrets"), "{}", run.stderr);
    assert!(!test.dir.path().join("plan.json").exists(), "no plan file is written");

    let args = [
        "plan",
        "{playbook}",
        "--root",
        "{root}",
        "--out",
        "plan.json",
        "--secret-var",
        "token=s3cr3t-value",
        "--allow-secrets",
    ];
    test.run_args(&args).code(2);
    let plan = saved(&test);
    assert_eq!(plan["contains_secrets"], true);
    assert_eq!(
        plan["variables"][0],
        serde_json::json!({"name": "token", "secret": true}),
        "a secret variable's value is never written"
    );
    let shown = test.run_args(&["show", "plan.json"]).code(2);
    assert!(!shown.stdout.contains("s3cr3t-value"), "{}", shown.stdout);
    let applied = apply_plan(&test).success();
    assert!(!applied.stdout.contains("s3cr3t-value"), "{}", applied.stdout);
    test.expect_file("/etc/token", "s3cr3t-value\n");
}

fn a_secret_variable_that_no_resource_uses_is_never_written() {
    let test = Test::new().playbook("resources:\n  - file: /etc/plain\n    content: plain\n");
    test.run_args(&[
        "plan",
        "{playbook}",
        "--root",
        "{root}",
        "--out",
        "plan.json",
        "--secret-var",
        "unused=hidden-value",
    ])
    .code(2);
    let text = fs::read_to_string(test.dir.path().join("plan.json")).unwrap();
    assert!(!text.contains("hidden-value"), "{text}");
}

fn bad_plan_files_and_targets_are_clear_errors() {
    let test = Test::new().playbook(V1).file("notaplan.json", "{\"resources\": []}").file("broken.json", "{");
    let run = test.run_args(&["show", "notaplan.json"]).code(1);
    assert!(run.stderr.contains("notaplan.json is not a plan converge can apply"), "{}", run.stderr);
    let run = test.run_args(&["apply", "--plan", "broken.json", "--root", "{root}"]).code(1);
    assert!(run.stderr.contains("invalid JSON"), "{}", run.stderr);

    plan_out(&test, &[]).code(2);
    let mut plan = saved(&test);
    plan["format_version"] = 99.into();
    fs::write(test.dir.path().join("future.json"), plan.to_string()).unwrap();
    let run = test.run_args(&["apply", "--plan", "future.json", "--root", "{root}"]).code(1);
    assert!(run.stderr.contains("format_version is 99"), "{}", run.stderr);

    fs::create_dir(test.dir.path().join("other")).unwrap();
    let run = test.run_args(&["apply", "--plan", "plan.json", "--root", "other"]).code(1);
    assert!(run.stderr.contains("the plan was made for --root"), "{}", run.stderr);
    let run = test.run_args(&["apply", "--plan", "plan.json", "--host", "web1"]).code(1);
    assert!(run.stderr.contains("no saved plan for host web1"), "one file per host: {}", run.stderr);
    let run = test.run_args(&["apply", "{playbook}", "--plan", "plan.json"]).code(2);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
    test.expect_absent("/etc/app/app.conf");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
