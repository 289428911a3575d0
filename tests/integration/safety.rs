//! What a playbook says never turns into code, and a secret reaches no output (issue 11):
//! string commands split before rendering, names validated before any tool sees them, secrets
//! hidden from every channel, terminal-safe output.

use crate::support::Test;

/// The ids a `plan --output json` lists.
fn planned_ids(test: &Test, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["plan", "{playbook}", "--root", "{root}", "--output", "json"];
    args.extend_from_slice(extra);
    let run = test.run_args(&args);
    assert!(run.code == 2 || run.code == 0, "plan failed\n{}\n{}", run.stdout, run.stderr);
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["type"] == "resource")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_variable_in_a_string_command_is_exactly_one_argument() {
    let test = Test::new().playbook(
        "vars:\n  name: \"app /tmp/x; rm -rf /\"\nresources:\n  - command: \"touch /srv/{{ name }} '{{ name }}' x{{ name }}y\"\n    creates: /srv/done\n",
    );
    // shell_words::join quotes each argument: four arguments, three of them holding the variable.
    let ids = planned_ids(&test, &[]);
    assert_eq!(ids, ["command:touch '/srv/app /tmp/x; rm -rf /' 'app /tmp/x; rm -rf /' 'xapp /tmp/x; rm -rf /y'"]);
    // And the same for a --var, whatever quotes it holds.
    let ids = planned_ids(&test, &["--var", "name=a' b\" c"]);
    let value = "a' b\" c";
    let words = ["touch".to_owned(), format!("/srv/{value}"), value.to_owned(), format!("x{value}y")];
    assert_eq!(ids, [format!("command:{}", shell_words::join(&words))]);
}

#[test]
fn names_that_would_reach_a_tool_as_options_are_refused() {
    let test = Test::new().playbook(
        "vars:\n  evil: \"-ou0\"\nresources:\n  - user: \"{{ evil }}\"\n  - user: \"\"\n  - group: \"a,b\"\n  - user: app\n    group: \"--help\"\n    groups: [sudo, \"x y\"]\n    shell: \"/bin/sh:0\"\n    home: relative\n  - apt: [\"-oDebug::pkgDPkgPm=1\", nginx]\n  - apt: curl\n    version: \"1.0 -o\"\n  - file: \"/etc/a\\0b\"\n    content: x\n",
    );
    let run = test.validate().code(1);
    let err = run.err();
    for expected in [
        "`-ou0` is not a valid user name",
        "`` is not a valid user name",
        "`a,b` is not a valid group name",
        "`--help` is not a valid group name",
        "`x y` is not a valid group name",
        "`/bin/sh:0` is not a valid shell",
        "`relative` is not a valid home",
        "`-oDebug::pkgDPkgPm=1` is not a Debian package name",
        "`1.0 -o` is not a Debian version",
        "`file` contains a NUL byte",
        "10 errors in the playbook",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
}
