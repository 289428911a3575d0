//! `command`: argv without a shell, and only when `creates`, `unless` or `onlyif` says so.

use crate::support::{Test, is_root};

#[test]
fn runs_once_because_of_creates() {
    if !is_root() {
        return; // without --root, apply takes /run/converge.lock
    }
    let test = Test::new();
    let marker = test.dir.path().join("marker");
    let yaml = format!("resources:\n  - command: touch {}\n    creates: {}\n", marker.display(), marker.display());
    let test = test.playbook(&yaml);
    let run = test.run_args(&["apply", "{playbook}"]).success();
    assert!(run.stdout.contains("(runs: ") && run.stdout.contains("does not exist)"), "{}", run.stdout);
    assert!(marker.exists());
    let run = test.run_args(&["apply", "{playbook}"]).success();
    assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
}

#[test]
fn unless_and_onlyif_guard_and_no_shell_is_involved() {
    if !is_root() {
        return;
    }
    let test = Test::new();
    let out = test.dir.path().join("out");
    // `;` and `$HOME` reach the program as they are: there is no shell to interpret them.
    let yaml = format!(
        "resources:\n  - command: [sh, -c, 'printf \"%s\" \"$0\" > {out}', 'a; $HOME']\n    unless: test -e {out}\n  - command: touch {out}-never\n    onlyif: \"false\"\n",
        out = out.display()
    );
    let test = test.playbook(&yaml);
    // A guard's non-zero exit is the guard working: the plan gives its status, not "failed".
    let plan = test.run_args(&["plan", "{playbook}"]).code(2);
    let guard = format!("(runs: `test -e {}` exited 1)", out.display());
    assert!(plan.stdout.contains(&guard), "no {guard} in:\n{}", plan.stdout);
    assert!(!plan.stdout.contains("failed"), "{}", plan.stdout);
    test.run_args(&["apply", "{playbook}"]).success();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "a; $HOME");
    assert!(!test.dir.path().join("out-never").exists());
    test.run_args(&["plan", "{playbook}"]).code(0);
}

#[test]
fn a_failing_command_fails_the_run_with_its_message() {
    if !is_root() {
        return;
    }
    let test = Test::new();
    let yaml = format!(
        "resources:\n  - command: [sh, -c, 'echo broken pipe >&2; exit 3']\n    creates: {}/never\n",
        test.dir.path().display()
    );
    let run = test.playbook(&yaml).run_args(&["apply", "{playbook}"]).code(1);
    assert!(run.stderr.contains("broken pipe") && run.stderr.contains("exit status: 3"), "{}", run.stderr);
}

#[test]
fn apply_writes_what_differs_when_the_host_changed_since_the_plan() {
    if !is_root() {
        return;
    }
    // The command, applied first, rewrites a file that a later resource manages: converge
    // observes it again before writing, applies what differs now, and says it changed.
    let test = Test::new();
    let dir = test.dir.path().display().to_string();
    std::fs::write(test.dir.path().join("managed"), "wanted\n").unwrap();
    let yaml = format!(
        "resources:\n  - command: [sh, -c, 'echo surprise > {dir}/managed; touch {dir}/done']\n    creates: {dir}/done\n  - file: {dir}/managed\n    content: \"wanted\\n\"\n"
    );
    let test = test.playbook(&yaml);
    let run = test.run_args(&["apply", "{playbook}"]).success();
    assert!(run.stdout.contains("Plan: 0 to create, 0 to update, 0 to remove, 1 to run"), "{}", run.stdout);
    assert!(run.stdout.contains("/managed: updated (it changed since the plan:)"), "{}", run.stdout);
    assert!(run.stdout.contains("-surprise"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(test.dir.path().join("managed")).unwrap(), "wanted\n");
    test.run_args(&["plan", "{playbook}"]).code(0);
}
