//! Exit codes and flags: --check, --detailed-exitcode, the lock, --help.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Test, wait_until};

tests![
    detailed_exitcode_says_whether_something_changed,
    check_is_a_plan_and_exits_like_it,
    every_help_example_works_as_written,
    quiet_prints_only_the_summary,
    a_second_run_waits_for_no_one_it_says_who_holds_the_lock,
    lock_wait_waits_for_the_other_run_then_proceeds,
    no_color_flag_and_no_color_variable_on_a_terminal,
    missing_playbook_is_a_clear_error,
    no_color_when_not_a_terminal,
    help_names_every_command,
    verbose_lists_unchanged_resources,
    spinners_on_a_terminal_only,
    completions_and_man_pages,
];

const PLAYBOOK: &str = "resources:\n  - file: /etc/motd\n    content: \"hi\\n\"\n";

fn detailed_exitcode_says_whether_something_changed() {
    let test = Test::new().playbook(PLAYBOOK);
    test.run_args(&["apply", "{playbook}", "--root", "{root}", "--detailed-exitcode"]).code(2);
    test.run_args(&["apply", "{playbook}", "--root", "{root}", "--detailed-exitcode"]).code(0);
}

fn check_is_a_plan_and_exits_like_it() {
    let test = Test::new().playbook(PLAYBOOK);
    let run = test.run_args(&["apply", "{playbook}", "--root", "{root}", "--check"]).code(2);
    assert!(run.stdout.contains("Plan: 1 to create"), "{}", run.stdout);
    test.expect_absent("/etc/motd");
    test.run_args(&["apply", "{playbook}", "--root", "{root}", "--check", "--detailed-exitcode"]).code(2);
    test.plan().code(2);
    test.apply().success();
    test.run_args(&["apply", "{playbook}", "--root", "{root}", "--check"]).code(0);
    test.plan().code(0);
    let broken = Test::new().playbook("resources:\n  - file: relative\n");
    broken.run_args(&["apply", "{playbook}", "--root", "{root}", "--check"]).code(1);
}

/// Every example of `converge --help`, run as written (in order, from the repository's folder,
/// its scratch root swapped for a temporary one), exits as its comment says.
fn every_help_example_works_as_written() {
    let test = Test::new();
    let help = test.run_args(&["--help"]).success().stdout;
    let examples: Vec<&str> = help
        .lines()
        .skip_while(|line| !line.starts_with("Examples"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .collect();
    assert!(examples.len() >= 4, "too few examples in --help:\n{help}");
    let scratch = test.dir.path().join("demo");
    for example in examples {
        let (command, comment) = example.split_once('#').unwrap_or((example, ""));
        let words = shell_words::split(command).unwrap();
        assert_eq!(words[0], "converge", "{example}");
        let args: Vec<String> =
            words[1..].iter().map(|w| w.replace("/tmp/converge-demo", &scratch.display().to_string())).collect();
        let expected = match comment.split_once("(exit ") {
            Some((_, rest)) => rest[..1].parse::<i32>().unwrap(),
            None => 0,
        };
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_converge"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(expected),
            "`{example}` exited {:?}:\n{}{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(scratch.join("etc/systemd/system/gunicorn.service").is_file(), "the examples' apply wrote nothing");
}

fn quiet_prints_only_the_summary() {
    let test = Test::new().playbook(PLAYBOOK);
    let run = test.run_args(&["apply", "{playbook}", "--root", "{root}", "-q"]).success();
    assert_eq!(
        run.stdout,
        "Plan: 1 to create, 0 to update, 0 to remove; 0 triggers.\nApply complete: 1 created, 0 updated, 0 removed; 0 triggers run.\n"
    );
}

/// util-linux flock holding the same kind of lock as converge on the root directory (src/lock.rs),
/// once it holds it: it runs its command, which says so, only with the lock taken.
fn hold_the_lock(test: &Test) -> std::process::Child {
    let held = test.dir.path().join("held");
    let holder = Command::new("flock")
        .arg("-o")
        .arg(test.root())
        .args(["sh", "-c", "touch \"$0\" && exec sleep 60"])
        .arg(&held)
        .stdout(Stdio::null())
        .spawn()
        .expect("flock(1)");
    assert!(wait_until(Duration::from_secs(30), || held.exists()), "flock never took the lock");
    holder
}

fn a_second_run_waits_for_no_one_it_says_who_holds_the_lock() {
    let test = Test::new().playbook(PLAYBOOK);
    let mut holder = hold_the_lock(&test);
    let output =
        test.command(&["apply", "{playbook}", "--root", "{root}"]).env("CONVERGE_LOCK_WAIT", "0").output().unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("another converge run holds the lock"), "{stderr}");
    test.expect_absent("/etc/motd");
    test.apply().success();
}

/// `--lock-wait SECONDS`: a run waits while another holds the lock and goes on once it is
/// released; a wait that runs out fails as if it had not waited.
fn lock_wait_waits_for_the_other_run_then_proceeds() {
    let test = Test::new().playbook(PLAYBOOK);
    let mut holder = hold_the_lock(&test);
    let mut waiting = test
        .command(&["apply", "{playbook}", "--root", "{root}", "--lock-wait", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // For a second and a half it waits: it neither ends nor writes anything.
    let ended = wait_until(Duration::from_millis(1500), || waiting.try_wait().unwrap().is_some());
    assert!(!ended, "it did not wait for the lock: {:?}", waiting.wait_with_output());
    test.expect_absent("/etc/motd");
    holder.kill().unwrap();
    holder.wait().unwrap();
    let output = waiting.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Apply complete: 1 created"));
    test.expect_file("/etc/motd", "hi\n");

    // Held for longer than it waits: it fails after its wait, and changes nothing.
    let test = Test::new().playbook(PLAYBOOK);
    let mut holder = hold_the_lock(&test);
    let started = std::time::Instant::now();
    let run = test.run_args(&["apply", "{playbook}", "--root", "{root}", "--lock-wait", "1"]).code(1);
    let waited = started.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(run.stderr.contains("another converge run holds the lock"), "{}", run.stderr);
    assert!(waited >= Duration::from_secs(1), "it gave up after {waited:?}");
    test.expect_absent("/etc/motd");
}

fn missing_playbook_is_a_clear_error() {
    let run = Test::new().run_args(&["plan", "nope.yml"]).code(1);
    assert!(run.stderr.contains("cannot read nope.yml") && run.stderr.contains("No such file"), "{}", run.stderr);
}

fn no_color_when_not_a_terminal() {
    let test = Test::new().playbook(PLAYBOOK);
    let run = test.plan().code(2);
    assert!(!run.stdout.contains('\x1b'), "{}", run.stdout);
}

/// What converge prints (stdout and stderr) on a pseudo-terminal (util-linux `script`), with
/// NO_COLOR set to `no_color` or unset.
fn on_a_terminal(test: &Test, command: &str, extra: &str, no_color: Option<&str>) -> String {
    let line = format!(
        "{} {command} {} --root {} {extra}",
        env!("CARGO_BIN_EXE_converge"),
        test.playbook_path().display(),
        test.root().display()
    );
    let mut script = Command::new("script");
    script.args(["-qec", &line, "/dev/null"]).env_remove("NO_COLOR");
    if let Some(value) = no_color {
        script.env("NO_COLOR", value);
    }
    String::from_utf8_lossy(&script.output().expect("script(1)").stdout).into_owned()
}

/// On a terminal converge colors its output; `--no-color`, or NO_COLOR set to anything but the
/// empty string (no-color.org), leaves every escape code out: of a plan, and of an error.
fn no_color_flag_and_no_color_variable_on_a_terminal() {
    require!(Tool("script"));
    let test = Test::new().playbook(PLAYBOOK);
    let colored = on_a_terminal(&test, "plan", "", None);
    assert!(colored.contains("\x1b[") && colored.contains("file:/etc/motd (create)"), "no colors:\n{colored}");
    assert_eq!(on_a_terminal(&test, "plan", "", Some("")), colored, "an empty NO_COLOR is no NO_COLOR");
    let plain = on_a_terminal(&test, "plan", "--no-color", None);
    for (how, out) in [("--no-color", plain.clone()), ("NO_COLOR=1", on_a_terminal(&test, "plan", "", Some("1")))] {
        assert!(!out.contains('\x1b'), "{how}: an escape code in:\n{out:?}");
        assert!(out.contains("+ file:/etc/motd (create)") && out.contains("Plan: 1 to create"), "{how}:\n{out}");
    }
    let broken = Test::new().playbook("resources:\n  - fiel: /etc/motd\n");
    let colored = on_a_terminal(&broken, "plan", "", None);
    assert!(colored.contains("\x1b[") && colored.contains("did you mean"), "no colors:\n{colored}");
    for (extra, no_color) in [("--no-color", None), ("", Some("1"))] {
        let out = on_a_terminal(&broken, "plan", extra, no_color);
        assert!(!out.contains('\x1b') && out.contains("did you mean"), "{extra} {no_color:?}:\n{out:?}");
    }
}

fn help_names_every_command() {
    let run = Test::new().run_args(&["--help"]).success();
    for word in ["plan", "apply", "validate", "--root", "--var", "--vars-file", "--output", "--no-color", "Exit codes"]
    {
        assert!(run.stdout.contains(word), "--help lacks {word}:\n{}", run.stdout);
    }
}

fn verbose_lists_unchanged_resources() {
    let test = Test::new().playbook(PLAYBOOK).host_file("/etc/motd", "hi\n");
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "-v"]).code(0);
    assert_eq!(run.stdout, "  = file:/etc/motd (no change)\nNo changes. The host matches the playbook.\n");
}

/// A long step shows a spinner line on a terminal only: under a pseudo-terminal (util-linux
/// `script`) with human output, not with `--output json`, and not into a pipe.
fn spinners_on_a_terminal_only() {
    let playbook = "resources:\n  - unit: x.service\n    content: \"[Service]\\nExecStart=/bin/true\\n\"\n";
    let spinner = "unit:x.service (systemd)";
    let in_a_terminal = |extra: &str| {
        let test = Test::new().playbook(playbook);
        let line = format!(
            "{} apply {} --root {} {extra}",
            env!("CARGO_BIN_EXE_converge"),
            test.playbook_path().display(),
            test.root().display()
        );
        let output = Command::new("script").args(["-qec", &line, "/dev/null"]).output().expect("script(1)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    require!(Tool("script")); // util-linux script(1) gives converge a terminal
    let human = in_a_terminal("");
    assert!(human.contains(spinner), "no spinner in:\n{human}");
    assert!(human.contains("Apply complete"), "{human}");
    let json = in_a_terminal("--output json");
    assert!(!json.contains(spinner), "a spinner with --output json:\n{json}");
    let test = Test::new().playbook(playbook);
    let piped = test.apply().success();
    assert!(!piped.stdout.contains(spinner) && !piped.stderr.contains(spinner), "{}{}", piped.stdout, piped.stderr);
}

/// Completions for each shell name every command; the man pages are roff, one per command.
fn completions_and_man_pages() {
    let test = Test::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = test.run_args(&["completions", shell]).success();
        for word in ["plan", "apply", "validate", "modules", "schema", "--lock-wait", "--root"] {
            // fish writes long options as `-l lock-wait`.
            assert!(run.stdout.contains(word.trim_start_matches('-')), "{shell} completions lack {word}");
        }
    }
    test.run_args(&["completions", "tcsh"]).code(2);
    let page = test.run_args(&["man"]).success().stdout;
    assert!(page.starts_with(".ie") || page.contains(".TH converge 1"), "{page}");
    assert!(page.contains("converge\\-apply(1)") || page.contains("converge-apply(1)"), "{page}");
    let apply = test.run_args(&["man", "apply"]).success().stdout;
    assert!(apply.contains(".TH converge-apply 1") || apply.contains(".TH converge\\-apply 1"), "{apply}");
    assert!(apply.contains("lock\\-wait"), "{apply}");
    let run = test.run_args(&["man", "nope"]).code(1);
    assert!(run.stderr.contains("no command `nope`"), "{}", run.stderr);
    // Where man(1) is installed, it renders the page.
    if let Ok(mut man) = Command::new("man").args(["-l", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn() {
        use std::io::Write;
        man.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
        let out = man.wait_with_output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("SYNOPSIS"));
    }
}
