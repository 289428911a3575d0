//! Exit codes and flags: --check, --detailed-exitcode, the lock, --help.

use std::process::{Command, Stdio};

use crate::support::Test;

tests![
    detailed_exitcode_says_whether_something_changed,
    check_is_a_plan_and_exits_like_it,
    every_help_example_works_as_written,
    quiet_prints_only_the_summary,
    a_second_run_waits_for_no_one_it_says_who_holds_the_lock,
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

fn a_second_run_waits_for_no_one_it_says_who_holds_the_lock() {
    let test = Test::new().playbook(PLAYBOOK);
    // util-linux flock holds the same kind of lock on the root directory.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(test.root())
        .args(["sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .expect("flock(1)");
    std::thread::sleep(std::time::Duration::from_millis(300));
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

fn missing_playbook_is_a_clear_error() {
    let run = Test::new().run_args(&["plan", "nope.yml"]).code(1);
    assert!(run.stderr.contains("cannot read nope.yml") && run.stderr.contains("No such file"), "{}", run.stderr);
}

fn no_color_when_not_a_terminal() {
    let test = Test::new().playbook(PLAYBOOK);
    let run = test.plan().code(2);
    assert!(!run.stdout.contains('\x1b'), "{}", run.stdout);
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
