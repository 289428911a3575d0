//! `line_in_file` and `validate:` against the real checkers, in a booted container of the
//! project's Debian rootfs (harness/): Debian's own sshd_config checked by `sshd -t`, sudoers
//! drop-ins checked by `visudo -cf`. What the tests assert is read back from the host (the file's
//! bytes, `sshd -T`, `sudo -l`), never from converge's report alone.

use crate::lines::flat;
use crate::systemd_e2e::Container;

tests![
    sshd_refuses_a_broken_line_and_the_file_stays_as_it_was,
    two_lines_in_sshd_config_are_one_write_checked_once_then_a_no_op,
    visudo_refuses_a_broken_sudoers_drop_in_and_the_old_one_stays,
    the_readme_examples_work_as_written,
];

const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";

/// A `line_in_file` entry on sshd_config for one setting, with sshd's own check.
fn setting(name: &str, value: &str, validate: &str) -> String {
    format!(
        "  - line_in_file: {SSHD_CONFIG}\n    line: {name} {value}\n    match: '^#?\\s*{name}\\s'\n    validate: {validate}\n"
    )
}

/// The file's bytes, mode and owner as the container has them, and its temporary files.
fn state_of(container: &Container, path: &str) -> (String, String) {
    let dir = path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("/");
    let facts = container.sh(&format!("sha256sum {path} && stat -c '%a %U:%G %i' {path} && ls -A {dir}"));
    (facts, container.sh(&format!("cat {path}")))
}

fn sshd_refuses_a_broken_line_and_the_file_stays_as_it_was() {
    let container = Container::boot("sshd_refuses_a_broken_line");
    let before = state_of(&container, SSHD_CONFIG);
    let playbook = format!("resources:\n{}", setting("PasswordAuthentication", "maybe", "sshd -t -f %s"));
    let (code, out, err) = container.converge(&["apply"], &playbook);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("+PasswordAuthentication maybe"), "the plan showed the line: {out}");
    let err = flat(&err);
    assert!(err.contains("line_in_file:/etc/ssh/sshd_config"), "{err}");
    assert!(err.contains("refused the new content (exit status: 255)"), "{err}");
    assert!(err.contains("unsupported option \"maybe\""), "sshd's own message: {err}");
    assert!(err.contains("/etc/ssh/sshd_config was left as it was"), "{err}");
    assert_eq!(state_of(&container, SSHD_CONFIG), before, "bytes, mode, owner, inode and no candidate left");
    assert_eq!(container.sh("sshd -T | grep -i '^passwordauthentication '"), "passwordauthentication yes");
}

fn two_lines_in_sshd_config_are_one_write_checked_once_then_a_no_op() {
    let container = Container::boot("two_lines_in_sshd_config");
    let original = container.sh(&format!("cat {SSHD_CONFIG}"));
    let mode_owner = container.sh(&format!("stat -c '%a %U:%G' {SSHD_CONFIG}"));
    // Each run of the checker is counted, then it is sshd's own check.
    let check = r#"["sh", "-c", "echo checked >> /root/checks && exec sshd -t -f \"$1\"", "sh", "%s"]"#;
    let playbook = format!(
        "resources:\n{}{}    notify: reload ssh.service\n",
        setting("PasswordAuthentication", "no", check),
        setting("PermitRootLogin", "no", check),
    );
    let plan = container.converge(&["plan"], &playbook).1;
    assert_eq!(plan.matches("~ line_in_file:/etc/ssh/sshd_config (update)").count(), 1, "one resource: {plan}");
    assert_eq!(plan.matches("+++ /etc/ssh/sshd_config").count(), 2, "one diff per entry: {plan}");
    assert!(plan.contains("+PasswordAuthentication no") && plan.contains("+PermitRootLogin no"));

    let out = container.apply(&playbook);
    assert!(out.contains("line_in_file:/etc/ssh/sshd_config: updated"), "{out}");
    assert!(out.contains("reload ssh.service"), "{out}");
    assert_eq!(container.sh("cat /root/checks"), "checked", "both lines were written and checked once");
    let expected = original
        .replace("\n#PasswordAuthentication yes\n", "\nPasswordAuthentication no\n")
        .replace("\n#PermitRootLogin prohibit-password\n", "\nPermitRootLogin no\n");
    assert_ne!(expected, original);
    assert_eq!(container.sh(&format!("cat {SSHD_CONFIG}")), expected, "the rest of the file byte for byte");
    assert_eq!(container.sh(&format!("stat -c '%a %U:%G' {SSHD_CONFIG}")), mode_owner);
    let effective = container.sh("sshd -T | grep -iE '^(passwordauthentication|permitrootlogin) ' | sort");
    assert_eq!(effective, "passwordauthentication no\npermitrootlogin no");
    assert_eq!(container.show("ssh.service", "ActiveState"), "active");

    let again = container.apply(&playbook);
    assert!(again.starts_with("No changes."), "{again}");
    assert_eq!(container.sh("cat /root/checks"), "checked", "a no-op runs no checker");
}

fn visudo_refuses_a_broken_sudoers_drop_in_and_the_old_one_stays() {
    let container = Container::boot("visudo_refuses_a_broken_sudoers");
    let drop_in = "/etc/sudoers.d/app";
    container.write("/root/sudoers.j2", "{{ user }} ALL=(ALL) NOPASSWD{{ colon }} /usr/bin/systemctl\n");
    let playbook = |colon: &str| {
        format!(
            "vars:\n  user: vagrant\n  colon: \"{colon}\"\nresources:\n  - file: {drop_in}\n    template: sudoers.j2\n    \
             mode: \"0440\"\n    validate: visudo -cf %s\n"
        )
    };
    let (code, out, err) = container.converge(&["apply"], &playbook(""));
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let err = flat(&err);
    assert!(err.contains("refused the new content (exit status: 1)") && err.contains("syntax error"), "{err}");
    assert!(err.contains("/etc/sudoers.d/app was left as it was"), "{err}");
    let listing = container.sh("ls -A /etc/sudoers.d");
    assert!(!listing.contains("app") && !listing.contains(".cvg."), "nothing created, no candidate left: {listing}");

    container.apply(&playbook(":"));
    assert_eq!(container.sh(&format!("stat -c '%a %U:%G' {drop_in}")), "440 root:root");
    assert!(container.sh("sudo -l -U vagrant").contains("NOPASSWD: /usr/bin/systemctl"));
    let before = state_of(&container, drop_in);

    let (code, _, err) = container.converge(&["apply"], &playbook(""));
    assert_eq!(code, 1, "{err}");
    let err = flat(&err);
    assert!(err.contains("syntax error"), "visudo's own message: {err}");
    assert_eq!(state_of(&container, drop_in), before, "the old drop-in stays, byte for byte");
    assert!(container.sh("visudo -c").contains("parsed OK"));
    assert!(container.apply(&playbook(":")).starts_with("No changes."));
}

/// The README's example that starts with `first_line`, as a playbook.
fn readme_example(first_line: &str) -> String {
    let readme = include_str!("../../README.md");
    let start = readme.find(&format!("```yaml\n{first_line}\n")).expect("the example is in the README") + 8;
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let items: Vec<String> = example.lines().map(|line| format!("  {line}\n")).collect();
    format!("resources:\n{}", items.concat())
}

fn the_readme_examples_work_as_written() {
    let container = Container::boot("the_readme_examples_work");
    let sshd = readme_example("- line_in_file: /etc/ssh/sshd_config");
    let plan = container.converge(&["plan"], &sshd).1;
    let diffs = plan.split_once("~ line_in_file:/etc/ssh/sshd_config (update)\n").expect("planned").1;
    let shown = diffs.split("\n\n").next().unwrap();
    // The README shows Debian 12's file (13's comments differ).
    let readme = include_str!("../../README.md");
    assert!(crate::support::suite() != "bookworm" || readme.contains(shown), "the README shows the plan:\n{plan}");
    let out = container.apply(&sshd);
    assert!(out.contains("reload ssh.service"), "{out}");
    let effective = container.sh("sshd -T | grep -iE '^(passwordauthentication|permitrootlogin) ' | sort");
    // sshd -T names prohibit-password by its older name on OpenSSH 9.
    let effective = effective.replace("without-password", "prohibit-password");
    assert_eq!(effective, "passwordauthentication no\npermitrootlogin prohibit-password");
    assert!(container.apply(&sshd).starts_with("No changes."));

    let sudoers = readme_example("- file: /etc/sudoers.d/deploy");
    container.apply(&sudoers);
    assert_eq!(container.sh("stat -c '%a %U:%G' /etc/sudoers.d/deploy"), "440 root:root");
    assert!(container.sh("visudo -c").contains("parsed OK"));
    let broken = sudoers.replace("NOPASSWD:", "NOPASSWD");
    let (code, _, err) = container.converge(&["apply"], &broken);
    assert_eq!(code, 1, "{err}");
    assert!(flat(&err).contains("/etc/sudoers.d/deploy was left as it was. It said:"), "{err}");
}
