//! Every kind of playbook mistake, rendered as the user sees it: file, line, column, a label on
//! the offending YAML and a help line. And nothing on the host is touched.

use crate::support::Test;

tests![
    bad_yaml,
    unknown_kind,
    misspelled_attribute,
    unknown_attribute_lists_the_known_ones,
    wrong_type,
    bad_mode,
    undefined_variable,
    duplicate_resource,
    dependency_cycle,
    missing_template_file,
    undefined_variable_inside_a_template_file_points_into_it,
    unknown_after_and_bad_notify,
    command_without_a_guard,
    validate_reports_every_mistake_at_once,
    apply_of_a_wrong_playbook_touches_nothing,
    socket_inside_the_services_runtime_directory_is_a_warning,
    restart_triggers_name_resources_of_the_playbook,
    a_directory_under_run_is_a_warning_with_its_line_and_the_two_ways,
    tmpfiles_entries_are_checked_at_their_line,
    on_change_names_resources_of_the_playbook,
    for_each_errors_name_their_item_and_duplicate_ids_both_items,
    for_each_of_a_string_variable_says_what_it_holds,
];

fn error_of(yaml: &str) -> String {
    let test = Test::new().playbook(yaml);
    let run = test.validate().code(1);
    assert_eq!(run.stdout, "", "nothing on stdout when the playbook is wrong");
    run.err()
}

fn bad_yaml() {
    insta::assert_snapshot!(error_of("resources:\n  - file: /etc/motd\n    content: [unclosed\n"));
}

fn unknown_kind() {
    insta::assert_snapshot!(error_of("resources:\n  - fiel: /etc/motd\n    content: hi\n"));
}

fn misspelled_attribute() {
    insta::assert_snapshot!(error_of("resources:\n  - file: /etc/motd\n    content: hi\n    ownr: root\n"));
}

fn unknown_attribute_lists_the_known_ones() {
    insta::assert_snapshot!(error_of("resources:\n  - directory: /srv/app\n    recursive: true\n"));
}

fn wrong_type() {
    insta::assert_snapshot!(error_of(
        "resources:\n  - file: /etc/motd\n    content: [a, b]\n  - user: app\n    uid: lots\n"
    ));
}

fn bad_mode() {
    insta::assert_snapshot!(error_of("resources:\n  - file: /etc/motd\n    content: hi\n    mode: 0999\n"));
}

fn undefined_variable() {
    insta::assert_snapshot!(error_of(
        "vars:\n  user: app\nresources:\n  - file: /home/{{ usr }}/motd\n    content: hi\n"
    ));
}

fn duplicate_resource() {
    insta::assert_snapshot!(error_of(
        "resources:\n  - file: /etc/motd\n    content: a\n  - file: /etc/motd\n    content: b\n"
    ));
}

fn dependency_cycle() {
    insta::assert_snapshot!(error_of(
        "resources:\n  - file: /etc/a\n    content: a\n    after: [\"file:/etc/b\"]\n  - file: /etc/b\n    content: b\n    after: [\"file:/etc/a\"]\n"
    ));
}

fn missing_template_file() {
    insta::assert_snapshot!(error_of("resources:\n  - file: /etc/app.conf\n    template: templates/app.conf.j2\n"));
}

fn undefined_variable_inside_a_template_file_points_into_it() {
    let test = Test::new()
        .playbook("vars:\n  port: 80\nresources:\n  - file: /etc/app.conf\n    template: app.conf.j2\n")
        .file("app.conf.j2", "[server]\nport = {{ port }}\nhost = {{ hostname }}\n");
    insta::assert_snapshot!(test.validate().code(1).err());
}

fn unknown_after_and_bad_notify() {
    insta::assert_snapshot!(error_of(
        "resources:\n  - file: /etc/a\n    content: a\n    after: [\"file:/etc/bb\"]\n  - file: /etc/b\n    content: b\n    notify: [\"bounce nginx\"]\n"
    ));
}

fn command_without_a_guard() {
    insta::assert_snapshot!(error_of("resources:\n  - command: make install\n"));
}

fn validate_reports_every_mistake_at_once() {
    let err = error_of(
        "resources:\n  - file: /etc/motd\n    ownr: root\n    content: hi\n  - directory: srv\n  - file: /etc/x\n    content: x\n    mode: \"0999\"\n  - user: app\n    shell: 5\n",
    );
    assert!(err.contains("4 errors in the playbook"), "{err}");
    insta::assert_snapshot!(err);
}

fn apply_of_a_wrong_playbook_touches_nothing() {
    let test = Test::new().playbook(
        "resources:\n  - file: /etc/good\n    content: fine\n  - file: /etc/bad\n    content: x\n    mode: \"0999\"\n",
    );
    let run = test.apply().code(1);
    assert!(run.stderr.contains("not a valid mode"), "{}", run.stderr);
    let entries: Vec<_> = std::fs::read_dir(test.host_path("/etc")).unwrap().collect();
    assert!(entries.is_empty(), "the root's /etc must stay empty, found {entries:?}");
}

fn socket_inside_the_services_runtime_directory_is_a_warning() {
    let yaml = "resources:
  - unit: gunicorn.socket
    content: |
      [Socket]
      ListenStream=/run/gunicorn/socket
  - unit: gunicorn.service
    content: |
      [Service]
      RuntimeDirectory=gunicorn
      ExecStart=/srv/venv/bin/gunicorn --bind unix:/run/gunicorn/socket app.wsgi
";
    let run = Test::new().playbook(yaml).validate().success();
    assert_eq!(run.stdout, "The playbook is valid: 2 resources.\n");
    insta::assert_snapshot!(run.err());
    // With RuntimeDirectoryPreserve=yes it validates without a word.
    let fixed =
        yaml.replace("RuntimeDirectory=gunicorn\n", "RuntimeDirectory=gunicorn\n      RuntimeDirectoryPreserve=yes\n");
    let run = Test::new().playbook(&fixed).validate().success();
    assert_eq!(run.stderr, "");
}

fn restart_triggers_name_resources_of_the_playbook() {
    insta::assert_snapshot!(error_of(
        "resources:\n  - directory: /srv/venv\n  - unit: app.service\n    content: \"[Service]\\nExecStart=/bin/true\\n\"\n    restart_triggers: [\"directory:/srv/venvv\"]\n"
    ));
}

fn a_directory_under_run_is_a_warning_with_its_line_and_the_two_ways() {
    let yaml = "resources:
  - directory: /srv/app
  - directory: /run/app
    mode: \"0750\"
  - directory: /var/run/other
";
    let run = Test::new().playbook(yaml).validate().success();
    let err = squash(&run.err());
    assert!(err.contains("directory/run/appisonatmpfs"), "{err}");
    assert!(err.contains("directory/var/run/otherisonatmpfs"), "{err}");
    assert!(err.contains("playbook.yml:3:"), "the line of the entry: {err}");
    assert!(err.contains("RuntimeDirectory=app") && err.contains("RuntimeDirectoryPreserve=yes"), "{err}");
    assert!(err.contains("tmpfiles:app") && err.contains("/etc/tmpfiles.d/app.conf"), "{err}");
    assert!(!err.contains("directory/srv/appisonatmpfs"), "{err}");
}

fn tmpfiles_entries_are_checked_at_their_line() {
    let yaml = "resources:
  - tmpfiles: app
    entries:
      - d /run/app 0750 root root -
      - type: d
        path: run/relative
      - y /run/x
      - d /run/y 0999
";
    let run = Test::new().playbook(yaml).validate().code(1);
    let err = squash(&run.err());
    assert!(err.contains("`run/relative`isnotanabsolutepath"), "{err}");
    assert!(err.contains("`y`isnotatmpfiles.dtype"), "{err}");
    assert!(err.contains("`0999`isnotamode"), "{err}");
    assert!(err.contains("playbook.yml:5:"), "{err}");
}

/// The diagnostics without their line wrapping (miette wraps at spaces and slashes): no
/// whitespace, no frame.
fn squash(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace() && *c != '│').collect()
}

/// A missing id in `on_change:` is an error at its place that lists the ids there are.
fn on_change_names_resources_of_the_playbook() {
    insta::assert_snapshot!(error_of(
        "resources:\n  - file: /etc/ssh/sshd_config\n    content: x\n  - file: /etc/motd\n    content: hi\n  - command: systemctl reload ssh\n    on_change: [file:/etc/ssh/sshd_conf, \"user:sshd\"]\n"
    ));
}

/// An instance's mistake points at the field's line and names its item (once, not once per
/// item); two items that make one id are an error at `for_each:` naming both.
fn for_each_errors_name_their_item_and_duplicate_ids_both_items() {
    insta::assert_snapshot!(error_of(
        "resources:\n  - file: \"/etc/app/{{ item | upper }}.conf\"\n    for_each: [a, b, A]\n    content: \"{{ item.port }}\"\n    mode: \"{{ modes }}\"\n"
    ));
}

fn for_each_of_a_string_variable_says_what_it_holds() {
    let err = error_of(
        "vars:\n  sites: web\nresources:\n  - file: \"/etc/{{ item }}\"\n    for_each: \"{{ sites }}\"\n    content: x\n",
    );
    assert!(err.contains("`for_each` must be a list or a mapping, not `sites`, which is a string"), "{err}");
    assert!(err.contains("playbook.yml:5:15"), "at the for_each value: {err}");
}
