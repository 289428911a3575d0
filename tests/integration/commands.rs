//! `command`: argv without a shell, and only when `creates`, `unless` or `onlyif` says so.

use std::process::Command;

use crate::support::Test;

tests![
    runs_once_because_of_creates,
    unless_and_onlyif_guard_and_no_shell_is_involved,
    a_failing_command_fails_the_run_with_its_message,
    apply_writes_what_differs_when_the_host_changed_since_the_plan,
    under_root_commands_run_inside_it_isolated_and_with_a_clean_environment,
    an_on_change_command_runs_once_after_what_it_names_changed_and_only_then,
    an_on_change_command_owed_by_a_failed_run_runs_on_the_next,
    a_failed_on_change_command_fails_the_run_and_stays_owed,
];

fn runs_once_because_of_creates() {
    require!(Root); // without --root, apply takes /run/converge.lock
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

fn unless_and_onlyif_guard_and_no_shell_is_involved() {
    require!(Root);
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

fn a_failing_command_fails_the_run_with_its_message() {
    require!(Root);
    let test = Test::new();
    let yaml = format!(
        "resources:\n  - command: [sh, -c, 'echo broken pipe >&2; exit 3']\n    creates: {}/never\n",
        test.dir.path().display()
    );
    let run = test.playbook(&yaml).run_args(&["apply", "{playbook}"]).code(1);
    assert!(run.stderr.contains("broken pipe") && run.stderr.contains("exit status: 3"), "{}", run.stderr);
}

fn apply_writes_what_differs_when_the_host_changed_since_the_plan() {
    require!(Root);
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

/// Copies programs of this machine, with the libraries `ldd` names, into an offline root: a
/// root in which commands can really run.
fn root_with_programs(test: &Test, programs: &[&str]) {
    for program in programs {
        let path = String::from_utf8(
            Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap().stdout,
        )
        .unwrap()
        .trim()
        .to_owned();
        let ldd = String::from_utf8(Command::new("ldd").arg(&path).output().unwrap().stdout).unwrap();
        let libs = ldd.split_whitespace().filter(|w| w.starts_with('/')).map(str::to_owned);
        for file in std::iter::once(path.clone()).chain(libs) {
            let target = test.host_path(&file);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&file, &target).unwrap();
        }
    }
    std::fs::create_dir_all(test.host_path("/proc")).unwrap();
}

/// Under `--root`, a command runs inside the root, in namespaces of its own, with a clean
/// environment: what it does to the hostname or the network stays there, and the operator's
/// environment never reaches it.
fn under_root_commands_run_inside_it_isolated_and_with_a_clean_environment() {
    require!(Root); // namespaces and chroot need root
    let test = Test::new().playbook(
        "resources:\n  - directory: /work\n  - command: [sh, -c, 'env > /env.txt; hostname converge-inside; hostname > /hostname.txt; cat /proc/net/dev > /net.txt; pwd > /pwd.txt']\n    cwd: /work\n    creates: /env.txt\n",
    );
    root_with_programs(&test, &["sh", "env", "hostname", "cat"]);
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let run = test
        .command(&["apply", "{playbook}", "--root", "{root}"])
        .env("PIP_FIND_LINKS", "/from/the/operator")
        .env("PYTHONPATH", "/leak")
        .env("CONVERGE_TEST_LEAK", "1")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let env = std::fs::read_to_string(test.host_path("/env.txt")).unwrap();
    assert!(env.contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"), "{env}");
    assert!(env.contains("HOME=/root\n") && env.contains("LANG=C.UTF-8\n"), "{env}");
    for leak in ["PIP_FIND_LINKS", "PYTHONPATH", "CONVERGE_TEST_LEAK"] {
        assert!(!env.contains(leak), "{leak} leaked:\n{env}");
    }
    assert_eq!(std::fs::read_to_string(test.host_path("/hostname.txt")).unwrap().trim(), "converge-inside");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name,
        "this machine's hostname is unchanged"
    );
    let net = std::fs::read_to_string(test.host_path("/net.txt")).unwrap();
    let interfaces: Vec<&str> = net.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(interfaces, ["lo"], "no network but its own loopback");
    assert_eq!(std::fs::read_to_string(test.host_path("/pwd.txt")).unwrap().trim(), "/work", "cwd inside the root");

    // A guard whose program is not in the root is an error, as on a live host.
    let missing = Test::new().playbook("resources:\n  - command: [sh, -c, 'true']\n    unless: [no-such-program]\n");
    root_with_programs(&missing, &["sh"]);
    let run = missing.plan().code(1);
    assert!(run.stderr.contains("cannot run `no-such-program`: no such program in the root"), "{}", run.stderr);
}

/// The file and an `on_change:` command written before it (the edge moves it after the file):
/// it appends a line to /ran, inside the root, and fails while /broken exists.
const ON_CHANGE: &str = "resources:
  - command: [sh, -c, 'test ! -e /broken && echo ran >> /ran']
    name: reload-app
    on_change: [file:/etc/app.conf, file:/etc/other.conf]
  - file: /etc/app.conf
    content: \"{{ v }}\\n\"
  - file: /etc/other.conf
    content: \"{{ v }}\\n\"
";

const JOURNAL: &str = "/var/lib/converge/pending-triggers.json";

fn on_change_test(yaml: &str) -> Test {
    let test = Test::new().playbook(yaml);
    root_with_programs(&test, &["sh"]);
    test
}

fn apply_v(test: &Test, v: &str) -> crate::support::Run {
    test.run_args(&["apply", "{playbook}", "--root", "{root}", "--var", &format!("v={v}")])
}

fn ran(test: &Test) -> usize {
    std::fs::read_to_string(test.host_path("/ran")).map(|t| t.lines().count()).unwrap_or(0)
}

fn an_on_change_command_runs_once_after_what_it_names_changed_and_only_then() {
    require!(Root); // chroot
    let test = on_change_test(ON_CHANGE);
    let plan = test.run_args(&["plan", "{playbook}", "--root", "{root}", "--var", "v=1"]).code(2);
    let line = "> command:reload-app (runs: because file:/etc/app.conf, file:/etc/other.conf change)";
    assert!(plan.stdout.contains(line), "{}", plan.stdout);
    let at = |text: &str| plan.stdout.find(text).unwrap();
    assert!(at("command:reload-app") > at("file:/etc/other.conf (create)"), "after both: {}", plan.stdout);
    let run = apply_v(&test, "1").success();
    assert_eq!(ran(&test), 1, "once for two changes: {}", run.stdout);
    assert!(!run.stdout.contains("changed since the plan"), "{}", run.stdout);

    let run = apply_v(&test, "1").success();
    assert!(run.stdout.starts_with("No changes."), "nothing changed, nothing runs: {}", run.stdout);
    assert_eq!(ran(&test), 1);
    apply_v(&test, "2").success();
    assert_eq!(ran(&test), 2);
    test.expect_absent(JOURNAL);
}

/// A run that fails after the file changed and before the command ran (a command ordered
/// between them fails) hands the command to the next run, which runs it although the file
/// matches by then.
fn an_on_change_command_owed_by_a_failed_run_runs_on_the_next() {
    require!(Root);
    let yaml = "resources:
  - file: /etc/app.conf
    content: \"{{ v }}\\n\"
  - command: [sh, -c, 'test -e /fixed']
    name: breaks
    unless: [sh, -c, 'test -e /fixed']
  - command: [sh, -c, 'echo ran >> /ran']
    name: reload-app
    on_change: [file:/etc/app.conf]
    after: [command:breaks]
";
    let test = on_change_test(yaml);
    let run = apply_v(&test, "1").code(1);
    assert!(run.stderr.contains("command:breaks"), "{}", run.stderr);
    assert_eq!(ran(&test), 0);
    let journal = std::fs::read_to_string(test.host_path(JOURNAL)).expect("journaled before the change");
    assert!(journal.contains("command:reload-app") && journal.contains("file:/etc/app.conf changed"), "{journal}");

    std::fs::write(test.host_path("/fixed"), "").unwrap();
    let run = apply_v(&test, "1").success();
    let line = "command:reload-app (runs: because file:/etc/app.conf changed (in a run that did not finish))";
    assert!(run.stdout.contains(line), "{}", run.stdout);
    assert_eq!(ran(&test), 1);
    test.expect_absent(JOURNAL);
    let run = apply_v(&test, "1").success();
    assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
    assert_eq!(ran(&test), 1);
}

fn a_failed_on_change_command_fails_the_run_and_stays_owed() {
    require!(Root);
    let test = on_change_test(ON_CHANGE);
    std::fs::write(test.host_path("/broken"), "").unwrap();
    let run = apply_v(&test, "1").code(1);
    assert!(run.stderr.contains("command:reload-app"), "{}", run.stderr);
    assert!(std::fs::read_to_string(test.host_path(JOURNAL)).unwrap().contains("command:reload-app"));
    // The run record keeps it as a command: a rollback says it cannot undo it.
    let rollback = test.run_args(&["rollback", "--check", "--root", "{root}"]);
    let said = format!("{}{}", rollback.stdout, rollback.stderr);
    assert!(said.contains("command:reload-app") && said.contains("not restored"), "{said}");

    std::fs::remove_file(test.host_path("/broken")).unwrap();
    apply_v(&test, "1").success();
    assert_eq!(ran(&test), 1, "the owed command ran");
    test.expect_absent(JOURNAL);
}
