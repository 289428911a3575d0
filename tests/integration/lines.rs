//! `line_in_file` in a temporary root (the edits, the bytes kept, what is refused, the mistakes
//! at their lines) and `validate:` on the live host inside a temp dir, with `sh` as the checker
//! (the real `sshd -t` and `visudo` are in lines_e2e.rs).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::support::Test;

tests![
    a_line_is_set_and_the_rest_of_the_file_stays_byte_for_byte,
    lines_are_removed_by_match_or_by_their_text,
    a_symlink_or_a_directory_is_refused_and_left_alone,
    a_missing_file_is_planned_as_waited_for_and_fails_apply,
    create_makes_the_missing_file_with_its_mode_and_group,
    mistakes_are_errors_at_their_lines,
    entries_on_one_file_are_checked_and_written_once,
    a_refused_candidate_leaves_the_file_and_names_the_checker,
];

const CONFIG: &str = "/etc/app.conf";

/// An error report as one line: miette's frame (`×`, `│`) and its wrapping undone, so that a test
/// finds a phrase wherever the terminal's width broke it.
pub fn flat(report: &str) -> String {
    let words = report.lines().map(|line| line.trim_start().trim_start_matches(['×', '│', '╰', '─', '▶']).trim());
    words.filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ")
}

fn a_line_is_set_and_the_rest_of_the_file_stays_byte_for_byte() {
    // CRLF endings and no final newline: both stay.
    let test = Test::new().host_file(CONFIG, "# app\r\n#Port 80\r\nName app").playbook(&format!(
        "resources:\n  - line_in_file: {CONFIG}\n    line: Port 8080\n    match: '^#?Port '\n  - line_in_file: {CONFIG}\n    line: Debug no\n    insert_before: '^Name'\n  - line_in_file: {CONFIG}\n    line: Last yes\n"
    ));
    fs::set_permissions(test.host_path(CONFIG), fs::Permissions::from_mode(0o600)).unwrap();
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("~ line_in_file:/etc/app.conf (update)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("-#Port 80\n") && plan.stdout.contains("+Port 8080\n"), "{}", plan.stdout);
    assert_eq!(plan.stdout.matches("+++ /etc/app.conf").count(), 3, "one diff per entry: {}", plan.stdout);
    test.apply().success();
    let bytes = fs::read(test.host_path(CONFIG)).unwrap();
    assert_eq!(String::from_utf8(bytes).unwrap(), "# app\r\nPort 8080\r\nDebug no\r\nName app\r\nLast yes");
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    test.expect_stat(CONFIG, 0o600, uid, gid);
    let inode = fs::metadata(test.host_path(CONFIG)).unwrap().ino();
    let run = test.plan().code(0);
    assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
    test.apply().success();
    assert_eq!(fs::metadata(test.host_path(CONFIG)).unwrap().ino(), inode, "a no-op writes nothing");
}

fn lines_are_removed_by_match_or_by_their_text() {
    let test = Test::new().host_file(CONFIG, "keep\n# old 1\nX=1\n#   old 2\nX=1\n").playbook(&format!(
        "resources:\n  - line_in_file: {CONFIG}\n    state: absent\n    match: '^#\\s*old'\n  - line_in_file: {CONFIG}\n    state: absent\n    line: X=1\n"
    ));
    test.apply().success();
    test.expect_file(CONFIG, "keep\n");
    test.plan().code(0);
}

fn a_symlink_or_a_directory_is_refused_and_left_alone() {
    let test = Test::new().host_file("/etc/real.conf", "a\n").playbook(
        "resources:\n  - line_in_file: /etc/link.conf\n    line: b\n  - line_in_file: /etc/dir.conf\n    line: b\n",
    );
    std::os::unix::fs::symlink("real.conf", test.host_path("/etc/link.conf")).unwrap();
    fs::create_dir(test.host_path("/etc/dir.conf")).unwrap();
    let err = flat(&test.apply().code(1).stderr);
    assert!(err.contains("/etc/link.conf is a symlink (to real.conf)"), "{err}");
    assert!(err.contains("never follows a link"), "{err}");
    test.expect_file("/etc/real.conf", "a\n");
    let test = test.playbook("resources:\n  - line_in_file: /etc/dir.conf\n    line: b\n");
    let err = flat(&test.apply().code(1).stderr);
    assert!(err.contains("/etc/dir.conf is a directory, not a regular file"), "{err}");
}

fn a_missing_file_is_planned_as_waited_for_and_fails_apply() {
    let test = Test::new().playbook(&format!("resources:\n  - line_in_file: {CONFIG}\n    line: a\n"));
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("lines: the file is not there yet -> edited once an earlier resource makes it"));
    let err = flat(&test.apply().code(1).stderr);
    assert!(err.contains("/etc/app.conf does not exist: line_in_file edits a file that is there"), "{err}");
    assert!(err.contains("add `create: true`"), "{err}");
    test.expect_absent(CONFIG);
    // Removing a line from a file that is not there is nothing to do.
    let test = test.playbook(&format!("resources:\n  - line_in_file: {CONFIG}\n    state: absent\n    line: a\n"));
    test.plan().code(0);
}

fn create_makes_the_missing_file_with_its_mode_and_group() {
    let test = Test::new().with_accounts().playbook(&format!(
        "resources:\n  - line_in_file: {CONFIG}\n    line: a = 1\n    create: true\n    group: daemon\n    mode: \"0640\"\n  - line_in_file: {CONFIG}\n    line: b = 2\n"
    ));
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("+ line_in_file:/etc/app.conf (create)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+a = 1\n") && plan.stdout.contains("+b = 2\n"), "{}", plan.stdout);
    test.apply().success();
    test.expect_file(CONFIG, "a = 1\nb = 2\n");
    let meta = fs::metadata(test.host_path(CONFIG)).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.gid(), crate::support::ids_of("daemon").1);
    test.plan().code(0);
    // Without `create: true`, `mode` is a mistake at its line.
    let test = test.playbook(&format!("resources:\n  - line_in_file: {CONFIG}\n    line: a = 1\n    mode: \"0600\"\n"));
    let err = flat(&test.validate().code(1).stderr);
    assert!(err.contains("`owner`, `group` and `mode` are those of the file `create: true` makes"), "{err}");
    assert!(err.contains(":4:"), "{err}");
}

fn mistakes_are_errors_at_their_lines() {
    let test = Test::new().playbook(
        r#"resources:
  - line_in_file: /etc/ssh/sshd_config
    line: PasswordAuthentication no
    match: '^#?PasswordAuthentication('
  - line_in_file: /etc/ssh/sshd_config
    line: PasswordAuthentication no
    match: '^#?PermitRootLogin\s'
  - line_in_file: /etc/a
    state: absent
    line: x
    match: 'x'
  - line_in_file: /etc/b
    state: absent
    insert_after: '^x'
  - line_in_file: /etc/c
    line: "two\nlines"
  - file: /etc/sudoers.d/app
    content: "app ALL=(ALL) NOPASSWD: ALL\n"
    validate: visudo -c
  - line_in_file: /etc/d
    line: x
    validate: sshd -t -f %s
  - line_in_file: /etc/d
    line: z
    validate: visudo -cf %s
"#,
    );
    let err = flat(&test.validate().code(1).err());
    for (line, message) in [
        (4, "`match` is not a valid regular expression: unclosed group"),
        (7, "`match` does not find the line it writes (`PasswordAuthentication no`)"),
        (11, "with `state: absent`, `line` and `match` cannot both be given"),
        (14, "`insert_after` places a new line, and `state: absent` adds none"),
        (12, "this line_in_file removes nothing: it needs `line` or `match`"),
        (16, "`line` holds a line break"),
        (19, "`validate` never names the file to check: none of its arguments holds `%s`"),
        (23, "need the same `validate`"),
    ] {
        let at = err.find(message).unwrap_or_else(|| panic!("no `{message}` in:\n{err}"));
        let place = err[at..].split("playbook.yml:").nth(1).unwrap_or_default();
        assert!(place.starts_with(&format!("{line}:")), "`{message}` at line {line}:\n{err}");
    }
}

/// `validate:` (indented for an entry) with `sh` as the checker: it counts its runs in `log`,
/// then accepts the candidate only when it holds every one of `lines`.
fn counting_checker(log: &std::path::Path, lines: &[&str]) -> String {
    let greps: Vec<String> = lines.iter().map(|l| format!("grep -qx ''{l}'' \"$1\"")).collect();
    let script = format!(
        "echo checked >> {} && {} || {{ echo \"missing a line in $1\" >&2; exit 3; }}",
        log.display(),
        greps.join(" && ")
    );
    format!("    validate:\n      - sh\n      - -c\n      - '{script}'\n      - sh\n      - '%s'\n")
}

fn entries_on_one_file_are_checked_and_written_once() {
    require!(Root); // without --root, apply takes /run/converge.lock
    let test = Test::new();
    let config = test.dir.path().join("app.conf");
    let log = test.dir.path().join("checks");
    fs::write(&config, "Port 80\n").unwrap();
    let check = counting_checker(&log, &["Port 8080", "Debug no"]);
    let entry = |line: &str| {
        let key = line.split(' ').next().unwrap();
        format!("  - line_in_file: {}\n    line: {line}\n    match: '^{key} '\n{check}", config.display())
    };
    let test = test.playbook(&format!("resources:\n{}{}", entry("Port 8080"), entry("Debug no")));
    let run = test.run_args(&["apply", "{playbook}"]).success();
    assert_eq!(run.stdout.matches(": updated").count(), 1, "{}", run.stdout);
    assert_eq!(fs::read_to_string(&config).unwrap(), "Port 8080\nDebug no\n");
    assert_eq!(fs::read_to_string(&log).unwrap(), "checked\n", "one candidate held both lines");
    let run = test.run_args(&["apply", "{playbook}"]).success();
    assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
    assert_eq!(fs::read_to_string(&log).unwrap(), "checked\n", "a no-op runs no checker");
}

fn a_refused_candidate_leaves_the_file_and_names_the_checker() {
    require!(Root);
    let test = Test::new();
    let config = test.dir.path().join("app.conf");
    let log = test.dir.path().join("checks");
    fs::write(&config, "old\n").unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o640)).unwrap();
    let before = fs::metadata(&config).unwrap();
    let check = counting_checker(&log, &["good"]);
    let playbook = |content: &str| {
        format!("resources:\n  - file: {}\n    content: \"{content}\\n\"\n{check}", config.display())
    };
    let test = test.playbook(&playbook("bad"));
    let err = flat(&test.run_args(&["apply", "{playbook}"]).code(1).stderr);
    assert!(err.contains("refused the new content (exit status: 3)"), "{err}");
    assert!(err.contains("It said: missing a line in ") && err.contains("/.cvg."), "{err}");
    assert!(err.contains(&format!("{} was left as it was", config.display())), "{err}");
    let after = fs::metadata(&config).unwrap();
    assert_eq!((after.ino(), after.mtime_nsec(), after.mode()), (before.ino(), before.mtime_nsec(), before.mode()));
    assert_eq!(fs::read_to_string(&config).unwrap(), "old\n");
    let left: Vec<String> =
        fs::read_dir(test.dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.iter().any(|name| name.starts_with(".cvg.")), "no candidate left: {left:?}");

    let test = test.playbook(&playbook("good"));
    test.run_args(&["apply", "{playbook}"]).success();
    assert_eq!(fs::read_to_string(&config).unwrap(), "good\n");
    assert_eq!(fs::metadata(&config).unwrap().mode() & 0o7777, 0o640, "the candidate had the file's mode");
    assert_eq!(fs::read_to_string(&log).unwrap(), "checked\nchecked\n");
}
