//! What a playbook says never turns into code, and a secret reaches no output (issue 11):
//! string commands split before rendering, names validated before any tool sees them, secrets
//! hidden from every channel, terminal-safe output.

use crate::support::Test;

tests![
    a_variable_in_a_string_command_is_exactly_one_argument,
    names_that_would_reach_a_tool_as_options_are_refused,
    a_secret_reaches_no_output,
    a_secret_variable_from_the_command_line_or_a_file_is_hidden_too,
    a_name_declared_secret_stays_secret_when_a_vars_file_gives_it,
    an_error_of_a_sensitive_resource_shows_no_value,
    an_undefined_variable_in_when_is_an_error_that_names_it,
    values_mean_what_ansible_users_expect,
    bytes_from_the_host_reach_the_terminal_escaped,
    a_wrong_id_given_to_a_module_is_reported_at_the_use_line,
    with_output_json_errors_and_warnings_are_records_on_stdout,
    validate_catches_what_used_to_slip_through,
    apply_shows_no_secret_even_when_a_tool_echoes_it,
    a_usage_mistake_is_a_json_record_too,
    a_unit_name_suggestion_never_adds_a_second_suffix,
    a_long_secret_in_an_error_is_not_wrapped_out_of_sight,
    a_mistake_next_to_a_sensitive_value_does_not_show_it,
];

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

fn names_that_would_reach_a_tool_as_options_are_refused() {
    let test = Test::new().playbook(
        "vars:\n  evil: \"-ou0\"\nresources:\n  - user: \"{{ evil }}\"\n  - user: \"\"\n  - group: \"a,b\"\n  - user: app\n    group: \"--help\"\n    groups: [sudo, \"x y\"]\n    shell: \"/bin/sh:0\"\n    home: relative\n  - apt: [\"-oDebug::pkgDPkgPm=1\", nginx]\n  - apt: curl\n    version: \"1.0 -o\"\n  - file: \"/etc/a\\0b\"\n    content: x\n  - directory: /srv/d\n    owner: \"\"\n    group: \"-g0\"\n  - virtualenv: /srv/v\n    packages: [\"-rhttp://evil/r.txt\", \"--index-url=http://evil\"]\n  - nginx_site: ../../etc/cron.d/x\n    content: x\n",
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
        "`-rhttp://evil/r.txt` is not a valid requirement",
        "`--index-url=http://evil` is not a valid requirement",
        "`../../etc/cron.d/x` is not a site name",
        "`` is not a user name",
        "`-g0` is not a group name",
        "15 errors in the playbook",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
}

const SECRET: &str = "Tok3n-Qz9-secret";

/// Every kind, with the secret planted in each attribute that takes a value.
fn secret_playbook() -> String {
    r#"secrets:
  token: "Tok3n-Qz9-secret"
vars:
  url: "https://u:{{ token }}@pypi.example/simple"
resources:
  - file: /etc/app.conf
    content: "password={{ token }}\n"
  - directory: "/srv/{{ token }}"
  - file: /etc/plain.conf
    content: "literal Tok3n-Qz9-secret\n"
    sensitive: true
  - symlink: /etc/app.link
    target: "/srv/{{ token }}"
  - command: "mysql -p{{ token }} -e 'select 1'"
    creates: "/var/lib/{{ token }}"
    environment:
      PGPASSWORD: "{{ token }}"
  - command: ["/bin/echo", "Tok3n-Qz9-secret"]
    name: literal-echo
    creates: /var/lib/echoed
    sensitive: true
  - user: app
    home: "/home/{{ token }}"
    shell: "/bin/{{ token }}"
  - group: appgroup
    gid: "{{ '4242' if token else '1' }}"
  - nginx_site: mysite
    content: "server { listen 80; # {{ token }}\n}\n"
  - unit: app.service
    content: "[Service]\nExecStart=/bin/app --token {{ token }}\n"
  - virtualenv: /srv/venv
    packages: [requests]
    index_url: "{{ url }}"
    extra_index_urls: ["{{ url }}"]
    pip_args: "--trusted-host {{ token }}"
  - apt: curl
    version: "{{ '1.0' if token else '2.0' }}"
  - use: nginx-proxy
    with: {name: proxied, upstream: "{{ token }}.example:8000"}
  - command: "echo {{ token }}"
    creates: /x
    when: false
"#
    .to_owned()
}

fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(SECRET) && !text.contains("Qz9"), "{what} shows the secret:\n{text}");
}

fn a_secret_reaches_no_output() {
    let test = Test::new().with_accounts().playbook(&secret_playbook());
    for args in [
        &["plan", "{playbook}", "--root", "{root}", "-v"][..],
        &["plan", "{playbook}", "--root", "{root}", "-vv", "--output", "json"],
        &["validate", "{playbook}"],
        &["validate", "{playbook}", "--output", "json"],
    ] {
        let run = test.run_args(args);
        assert!(run.code == 0 || run.code == 2, "{args:?}\n{}\n{}", run.stdout, run.stderr);
        assert_hidden(&format!("stdout of {args:?}"), &run.stdout);
        assert_hidden(&format!("stderr of {args:?}"), &run.stderr);
    }
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "-v"]);
    // The non-secret names stay, the rest is hidden; a command without `name:` by its line.
    for shown in [
        "file:/etc/app.conf",
        "content: (sensitive value changed)",
        "directory:(sensitive, line 8)",
        "command:(sensitive, line 14)",
        "symlink:/etc/app.link",
        "command:literal-echo (runs: (sensitive guard))",
        "user:app",
        "home: (sensitive value changed)",
        "nginx_site:mysite",
        "command:(sensitive, line 40) (skipped: when false is false)",
        "nginx_site:proxied (create)",
    ] {
        assert!(run.stdout.contains(shown), "missing {shown:?} in\n{}", run.stdout);
    }
}

fn a_secret_variable_from_the_command_line_or_a_file_is_hidden_too() {
    let test = Test::new()
        .file("secrets.yml", "db_password: Tok3n-Qz9-secret\n")
        .playbook("resources:\n  - file: /etc/db.conf\n    content: \"{{ db_password }} {{ other }}\\n\"\n  - file: \"/etc/{{ other }}\"\n    content: x\n");
    for flags in [
        &["--secrets-file", "secrets.yml", "--secret-var", "other=An0ther-secret"][..],
        &["--secret-var", "db_password=Tok3n-Qz9-secret", "--secret-var", "other=An0ther-secret"],
    ] {
        let mut args = vec!["plan", "{playbook}", "--root", "{root}", "-v"];
        args.extend_from_slice(flags);
        let run = test.run_args(&args).code(2);
        assert_hidden("plan", &run.stdout);
        assert!(!run.stderr.contains("not used"), "a secrets file is not checked for unused names: {}", run.stderr);
        assert!(!run.stdout.contains("An0ther"), "{}", run.stdout);
        assert!(run.stdout.contains("file:/etc/db.conf (create)"), "{}", run.stdout);
        assert!(run.stdout.contains("file:(sensitive, line 4) (create)"), "{}", run.stdout);
    }
}

fn a_name_declared_secret_stays_secret_when_a_vars_file_gives_it() {
    let test = Test::new().file("prod.yml", "db_password: Tok3n-Qz9-secret\n").playbook(
        "secrets:\n  db_password: \"\"\nresources:\n  - file: /etc/db.conf\n    content: \"{{ db_password }}\\n\"\n",
    );
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "--vars-file", "prod.yml"]).code(2);
    assert_hidden("plan", &run.stdout);
    assert!(run.stdout.contains("content: (sensitive value changed)"), "{}", run.stdout);
}

fn an_error_of_a_sensitive_resource_shows_no_value() {
    // The guard's program is missing from the root: an error, which names the program only.
    let test = Test::new().playbook(
        "resources:\n  - command: [\"/bin/db-tool\", \"--password\", \"Tok3n-Qz9-secret\"]\n    unless: [\"/bin/db-check\", \"Tok3n-Qz9-secret\"]\n    sensitive: true\n",
    );
    let run = test.plan().code(1);
    assert!(run.stderr.contains("command:(sensitive, line 2)") && run.stderr.contains("db-check"), "{}", run.stderr);
    assert_hidden("the error", &run.stderr);
    // And a playbook error near a secret shows its place, not its value.
    let test = Test::new().playbook("secrets:\n  token: Tok3n-Qz9-secret\nresourcs: []\n");
    let run = test.validate().code(1);
    assert!(run.stderr.contains("token: (sensitive)"), "{}", run.stderr);
    assert_hidden("the error", &run.stderr);
}

fn an_undefined_variable_in_when_is_an_error_that_names_it() {
    for when in ["envirnoment", "enviroment == \"prod\"", "not envirnoment"] {
        let yaml = format!(
            "vars:\n  environment: prod\nresources:\n  - file: /etc/motd\n    content: hi\n    when: {}\n",
            serde_json::to_string(when).unwrap()
        );
        let run = Test::new().playbook(&yaml).validate().code(1);
        let err = run.err();
        let name = if when.contains("enviroment") { "enviroment" } else { "envirnoment" };
        assert!(err.contains(&format!("undefined variable `{name}`")), "{when}: {err}");
        assert!(err.contains("did you mean `environment`?"), "{when}: {err}");
        assert!(err.contains("playbook.yml:6:11"), "at the `when:` value: {err}");
        assert!(!err.contains("pass --var"), "no secret on the command line: {err}");
    }
    // Asking about it is fine.
    let yaml = "resources:\n  - file: /etc/motd\n    content: hi\n    when: debug is defined and debug\n";
    Test::new().playbook(yaml).validate().success();
}

fn values_mean_what_ansible_users_expect() {
    let test = Test::new()
        .file("vars.yml", "wrokers: 4\n")
        .playbook(
            "vars:\n  workers: 2\nresources:\n  - file: /etc/a\n    content: \"{{ version }} {{ workers }}\"\n    when: flag\n  - file: /etc/b\n    content: b\n    when: \"'false' | bool\"\n  - file: /etc/c\n    content: c\n    when: \"'yes' | bool and not flag\"\n",
        );
    let run = test.run_args(&[
        "plan",
        "{playbook}",
        "--root",
        "{root}",
        "-v",
        "--var",
        "flag=false",
        "--var",
        "version=1.10",
        "--vars-file",
        "vars.yml",
    ]);
    let run = run.code(2);
    assert!(run.stdout.contains("file:/etc/a (skipped: when flag is false)"), "{}", run.stdout);
    assert!(run.stdout.contains("file:/etc/b (skipped: when \"'false' | bool\" is false)"), "{}", run.stdout);
    assert!(run.stdout.contains("+ file:/etc/c (create)"), "{}", run.stdout);
    assert!(run.stderr.contains("variable `wrokers` is not used"), "{}", run.stderr);
    assert!(run.stderr.contains("did you mean `workers`?"), "{}", run.stderr);
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "--var", "flag=true", "--var", "version=1.10"]);
    assert!(run.code(2).stdout.contains("+1.10 2"), "a string stays a string");
    // A value the bool filter cannot read is an error, not a guess.
    let run = Test::new()
        .playbook("resources:\n  - file: /etc/a\n    content: a\n    when: \"'maybe' | bool\"\n")
        .validate()
        .code(1);
    assert!(run.stderr.contains("`maybe` is not a boolean"), "{}", run.stderr);
}

fn bytes_from_the_host_reach_the_terminal_escaped() {
    let test = Test::new().host_file("/etc/motd", "hello \x1b]0;owned\x07\x1b[2J\rX\n").playbook(
        "resources:\n  - file: /etc/motd\n    content: \"hello\\n\"\n  - file: \"/etc/\\e[31mred\"\n    content: x\n",
    );
    let run = test.plan().code(2);
    assert!(
        !run.stdout.contains('\x1b') && !run.stdout.contains('\x07') && !run.stdout.contains('\r'),
        "{:?}",
        run.stdout
    );
    assert!(run.stdout.contains(r"-hello \x1b]0;owned\x07\x1b[2J\x0d"), "{}", run.stdout);
    assert!(run.stdout.contains(r"file:/etc/\x1b[31mred"), "{}", run.stdout);
    // JSON escapes them as JSON does.
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "--output", "json"]).code(2);
    assert!(!run.stdout.contains('\x1b') && run.stdout.contains(r"\u001b]0;owned\u0007"), "{}", run.stdout);
    // And errors too.
    let run = Test::new().playbook("resources:\n  - file: \"\\e]0;x\\arel\"\n    content: x\n").validate().code(1);
    assert!(
        !run.stderr.contains('\x1b') && run.stderr.contains(r"`\x1b]0;x\x07rel` is not an absolute path"),
        "{}",
        run.stderr
    );
}

fn a_wrong_id_given_to_a_module_is_reported_at_the_use_line() {
    let run = Test::new()
        .playbook(
            "resources:\n  - use: gunicorn\n    with: {user: app, app_dir: /srv/app, venv: /srv/wrong, wsgi: \"app:app\"}\n",
        )
        .validate()
        .code(1);
    let err = run.err();
    assert!(!err.contains("OutOfBounds") && !err.contains("Failed to read"), "{err}");
    assert!(err.contains("playbook.yml:2:10"), "{err}");
}

/// The records after the stream record.
fn json_records(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().skip(1).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn with_output_json_errors_and_warnings_are_records_on_stdout() {
    let test = Test::new().playbook("resources:\n  - file: /etc/x\n    contnet: hi\n    content: hi\n");
    let run = test.run_args(&["validate", "{playbook}", "--output", "json"]).code(1);
    let records = json_records(&run.stdout);
    assert_eq!(records.len(), 1, "{}", run.stdout);
    let r = &records[0];
    assert_eq!((r["type"].as_str(), r["kind"].as_str()), (Some("error"), Some("playbook")));
    assert_eq!(r["message"], "unknown attribute `contnet` for file");
    assert_eq!((r["line"].as_u64(), r["column"].as_u64()), (Some(3), Some(5)));
    assert!(r["file"].as_str().unwrap().ends_with("playbook.yml"));
    assert_eq!(r["help"], "did you mean `content`?");
    assert!(run.stderr.contains("unknown attribute"), "the text stays on stderr");

    // A warning, then the plan.
    let test = Test::new().file("v.yml", "unused_one: 1\n").playbook("resources:\n  - file: /etc/x\n    content: hi\n");
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "--output", "json", "--vars-file", "v.yml"]);
    let records = json_records(&run.code(2).stdout);
    assert_eq!(records[0]["type"], "warning");
    assert_eq!(records[0]["message"], "variable `unused_one` is not used by the playbook");
    assert_eq!(records.last().unwrap()["type"], "plan");

    // A host error names its resource.
    let test = Test::new().playbook("resources:\n  - command: [/bin/nothere]\n    unless: [/bin/nothere-either]\n");
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "--output", "json"]).code(1);
    let records = json_records(&run.stdout);
    assert_eq!(records[0]["kind"], "resource");
    assert_eq!(records[0]["id"], "command:/bin/nothere");
}

fn validate_catches_what_used_to_slip_through() {
    let run = Test::new().playbook("resources:\n  - {}\n  - file: /etc/motd\n    content: hi\n").validate().code(1);
    assert!(run.stderr.contains("an empty resource") && run.stderr.contains("playbook.yml:2:5"), "{}", run.stderr);

    let test = Test::new();
    std::fs::write(test.playbook_path(), b"resources:\n  - file: /etc/caf\xe9\n    content: x\n").unwrap();
    let run = test.validate().code(1);
    assert!(run.stderr.contains("byte 0xe9") && run.stderr.contains("playbook.yml:2:19"), "{}", run.stderr);

    let long = "x".repeat(200_000);
    let run = Test::new()
        .playbook(&format!("resources:\n  - file: /etc/motd\n    content: {long}\n    ownr: root\n"))
        .validate()
        .code(1);
    assert!(run.stderr.len() < 4000 && run.stderr.contains("playbook.yml:4:5"), "{} bytes", run.stderr.len());
    let run = Test::new()
        .playbook(&format!("resources:\n  - file: /etc/motd\n    content: hi\n    mode: \"{long}\"\n"))
        .validate()
        .code(1);
    assert!(
        run.stderr.len() < 4000 && run.stderr.contains("playbook.yml:4:11"),
        "{} bytes:\n{}",
        run.stderr.len(),
        &run.stderr[..run.stderr.len().min(3000)]
    );
}

fn apply_shows_no_secret_even_when_a_tool_echoes_it() {
    require!(Root); // without --root, apply takes /run/converge.lock
    let test = Test::new();
    let dir = test.dir.path().display().to_string();
    let yaml = format!(
        "secrets:\n  token: Tok3n-Qz9-secret\nresources:\n  - file: {dir}/app.conf\n    content: \"password={{{{ token }}}}\\n\"\n  - command: [sh, -c, 'echo \"refused: $0\" >&2; exit 3', '{{{{ token }}}}']\n    creates: {dir}/never\n"
    );
    let test = test.playbook(&yaml);
    for output in ["human", "json"] {
        let run = test.run_args(&["apply", "{playbook}", "--output", output, "-v"]).code(1);
        assert_hidden("stdout of apply", &run.stdout);
        assert_hidden("stderr of apply", &run.stderr);
        assert!(run.stderr.contains("refused: (sensitive)"), "{}", run.stderr);
    }
    assert_eq!(std::fs::read_to_string(test.dir.path().join("app.conf")).unwrap(), format!("password={SECRET}\n"));
}

fn a_usage_mistake_is_a_json_record_too() {
    let run = Test::new().run_args(&["plan", "--output", "json"]).code(2);
    let records = json_records(&run.stdout);
    assert_eq!(records[0]["kind"], "usage", "{}", run.stdout);
    assert!(records[0]["message"].as_str().unwrap().contains("<PLAYBOOK>"), "{}", run.stdout);
    assert!(run.stderr.contains("required arguments"), "the text stays on stderr");
}

fn a_unit_name_suggestion_never_adds_a_second_suffix() {
    let run = Test::new()
        .playbook("resources:\n  - unit: ssh.servic\n    enabled: true\n  - file: /etc/x\n    content: x\n    notify: [\"restart ssh.servic\"]\n")
        .validate()
        .code(1);
    assert_eq!(run.stderr.matches("such as ssh.service\n").count(), 2, "{}", run.stderr);
    assert!(!run.stderr.contains("ssh.servic.service"), "{}", run.stderr);
}

fn a_long_secret_in_an_error_is_not_wrapped_out_of_sight() {
    let secret = "Qz9".repeat(60);
    let test = Test::new().file("s.yml", &format!("token: {secret}\n")).playbook(
        "resources:\n  - command: [/bin/nothere, \"{{ token }}\"]\n    creates: /x\n  - file: \"{{ token }}\"\n    content: x\n",
    );
    let run = test.run_args(&["validate", "{playbook}", "--secrets-file", "s.yml"]).code(1);
    assert!(run.stderr.contains("is not an absolute path"), "{}", run.stderr);
    assert!(!run.stderr.contains("Qz9"), "{}", run.stderr);
}

fn a_mistake_next_to_a_sensitive_value_does_not_show_it() {
    for extra in ["    ownr: root\n", "    mode: \"0999\"\n", ""] {
        let content = "    content: \"password=Tok3n-Qz9-secret\"\n";
        // The content next to the mistake, where the snippet shows it.
        let yaml = if extra.is_empty() {
            format!("resources:\n  - file: relative/path\n{content}    sensitive: true\n")
        } else {
            format!("resources:\n  - file: /etc/db.conf\n    sensitive: true\n{content}{extra}")
        };
        let run = Test::new().playbook(&yaml).validate().code(1);
        assert!(run.stderr.contains("content: \"(sensitive)\""), "{}", run.stderr);
        assert_hidden("the error", &run.stderr);
    }
}
