//! file, directory and symlink against a real filesystem: content, modes, real owners, and a
//! second apply that changes nothing (same inode, same mtime).

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::support::{Test, ids_of};

tests![
    apply_writes_content_template_and_source,
    modes_are_octal_as_written,
    real_owners_and_groups,
    second_apply_changes_nothing_on_disk,
    content_drift_is_rewritten_and_the_diff_shown,
    absent_removes_files_directories_and_links,
    symlinks_are_repointed_and_never_replace_files,
    a_file_whose_directory_is_missing_fails_with_a_hint,
    variables_from_the_command_line_win,
    parent_directories_are_ordered_first,
    for_each_makes_one_resource_per_item_and_a_second_apply_changes_nothing,
    for_each_over_a_secret_never_prints_its_items,
];

fn apply_writes_content_template_and_source() {
    let test = Test::new()
        .playbook(
            "vars:\n  name: demo\n  port: 8000\nresources:\n  - directory: /etc/demo\n  - file: /etc/demo/inline.conf\n    content: \"name={{ name }}\\n\"\n  - file: /etc/demo/rendered.conf\n    template: templates/app.conf.j2\n  - file: /etc/demo/copied.bin\n    source: files/raw.txt\n",
        )
        .file("templates/app.conf.j2", "{% for i in range(2) %}worker{{ i }}\n{% endfor %}port = {{ port }}\n")
        .file("files/raw.txt", "{{ not rendered }}\n");
    test.apply().success();
    test.expect_file("/etc/demo/inline.conf", "name=demo\n")
        .expect_file("/etc/demo/rendered.conf", "worker0\nworker1\nport = 8000\n")
        .expect_file("/etc/demo/copied.bin", "{{ not rendered }}\n");
}

fn modes_are_octal_as_written() {
    let test = Test::new().playbook(
        "resources:\n  - file: /a\n    content: a\n    mode: 0640\n  - file: /b\n    content: b\n    mode: \"u=rw,g=r,o=\"\n  - file: /c\n    content: c\n  - directory: /d\n    mode: \"2750\"\n  - directory: /e\n",
    );
    test.apply().success();
    let me = (fs::metadata("/proc/self").unwrap().uid(), fs::metadata("/proc/self").unwrap().gid());
    test.expect_stat("/a", 0o640, me.0, me.1).expect_stat("/b", 0o640, me.0, me.1).expect_stat("/c", 0o644, me.0, me.1);
    test.expect_stat("/d", 0o2750, me.0, me.1).expect_stat("/e", 0o755, me.0, me.1);
}

fn real_owners_and_groups() {
    require!(Root);
    let test = Test::new().with_accounts().playbook(
        "resources:\n  - directory: /srv/www\n    owner: www-data\n    group: www-data\n    mode: \"0750\"\n  - file: /srv/www/index.html\n    content: hi\n    owner: nobody\n    group: www-data\n    mode: \"0640\"\n",
    );
    test.apply().success();
    let (www, www_gid) = ids_of("www-data");
    let (nobody, _) = ids_of("nobody");
    test.expect_stat("/srv/www", 0o750, www, www_gid).expect_stat("/srv/www/index.html", 0o640, nobody, www_gid);

    // Drift: a hand chown and chmod is planned as an update and put back.
    std::os::unix::fs::chown(test.host_path("/srv/www/index.html"), Some(0), Some(0)).unwrap();
    let run = test.plan().code(2);
    assert!(
        run.stdout.contains("owner: root -> nobody") && run.stdout.contains("group: root -> www-data"),
        "{}",
        run.stdout
    );
    test.apply().success();
    test.expect_stat("/srv/www/index.html", 0o640, nobody, www_gid);
}

fn second_apply_changes_nothing_on_disk() {
    let test = Test::new().playbook(
        "resources:\n  - directory: /srv\n  - file: /srv/a\n    content: a\n  - symlink: /srv/link\n    target: a\n",
    );
    test.apply().success();
    let stat = |p: &str| {
        let m = fs::symlink_metadata(test.host_path(p)).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec(), m.ctime_nsec())
    };
    let before = [stat("/srv"), stat("/srv/a"), stat("/srv/link")];
    let run = test.apply().success();
    assert!(run.stdout.starts_with("No changes. The host matches the playbook."), "{}", run.stdout);
    assert_eq!(before, [stat("/srv"), stat("/srv/a"), stat("/srv/link")]);
}

fn content_drift_is_rewritten_and_the_diff_shown() {
    let test = Test::new()
        .playbook("resources:\n  - file: /etc/motd\n    content: \"welcome\\n\"\n")
        .host_file("/etc/motd", "hacked\n");
    let run = test.apply().success();
    assert!(run.stdout.contains("-hacked\n") && run.stdout.contains("+welcome\n"), "{}", run.stdout);
    assert!(run.stdout.contains("file:/etc/motd: updated"), "{}", run.stdout);
    test.expect_file("/etc/motd", "welcome\n");
}

fn absent_removes_files_directories_and_links() {
    let test = Test::new()
        .playbook("resources:\n  - file: /etc/old\n    state: absent\n  - directory: /var/cache/old\n    state: absent\n  - symlink: /etc/nginx/sites-enabled/default\n    state: absent\n")
        .host_file("/etc/old", "x")
        .host_file("/var/cache/old/inside/file", "x");
    fs::create_dir_all(test.host_path("/etc/nginx/sites-enabled")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/nginx/sites-available/default",
        test.host_path("/etc/nginx/sites-enabled/default"),
    )
    .unwrap();
    let run = test.apply().success();
    assert!(run.stdout.contains("Apply complete: 0 created, 0 updated, 3 removed"), "{}", run.stdout);
    test.expect_absent("/etc/old").expect_absent("/var/cache/old").expect_absent("/etc/nginx/sites-enabled/default");
    test.plan().code(0);
}

fn symlinks_are_repointed_and_never_replace_files() {
    let test = Test::new().playbook("resources:\n  - symlink: /etc/current\n    target: /opt/v2\n");
    fs::create_dir_all(test.host_path("/etc")).unwrap();
    std::os::unix::fs::symlink("/opt/v1", test.host_path("/etc/current")).unwrap();
    let run = test.apply().success();
    assert!(run.stdout.contains("target: /opt/v1 -> /opt/v2"), "{}", run.stdout);
    assert_eq!(fs::read_link(test.host_path("/etc/current")).unwrap().to_str(), Some("/opt/v2"));

    let blocked = Test::new()
        .playbook("resources:\n  - symlink: /etc/current\n    target: /opt/v2\n")
        .host_file("/etc/current", "a file");
    let run = blocked.apply().code(1);
    assert!(run.stderr.contains("is a file, not a symlink"), "{}", run.stderr);
    blocked.expect_file("/etc/current", "a file");
}

fn a_file_whose_directory_is_missing_fails_with_a_hint() {
    let test = Test::new().playbook("resources:\n  - file: /nowhere/app.conf\n    content: x\n");
    let run = test.plan().code(1);
    assert!(run.stderr.contains("its directory /nowhere does not exist"), "{}", run.stderr);
}

fn variables_from_the_command_line_win() {
    let test = Test::new()
        .playbook("vars:\n  env: dev\n  greeting: \"hello {{ env }}\"\nresources:\n  - file: /etc/env\n    content: \"{{ greeting }} {{ region }}\\n\"\n  - file: /etc/prod-only\n    content: x\n    when: env == \"prod\"\n")
        .file("vars.yml", "region: eu\nenv: staging\n");
    test.run_args(&["apply", "{playbook}", "--root", "{root}", "--vars-file", "vars.yml"]).success();
    test.expect_file("/etc/env", "hello staging eu\n").expect_absent("/etc/prod-only");
    test.run_args(&["apply", "{playbook}", "--root", "{root}", "--vars-file", "vars.yml", "--var", "env=prod"])
        .success();
    test.expect_file("/etc/env", "hello prod eu\n").expect_file("/etc/prod-only", "x");
}

fn parent_directories_are_ordered_first() {
    let test = Test::new().playbook("resources:\n  - file: /srv/app/conf/app.ini\n    content: x\n  - directory: /srv/app/conf\n  - directory: /srv/app\n    mode: \"0700\"\n");
    let run = test.apply().success();
    let order: Vec<&str> = run.stdout.lines().filter(|l| l.ends_with(": created")).collect();
    assert_eq!(
        order,
        ["directory:/srv/app: created", "directory:/srv/app/conf: created", "file:/srv/app/conf/app.ini: created"]
    );
    test.expect_file("/srv/app/conf/app.ini", "x");
}

/// `for_each:` over a list, a mapping of mappings, and a list variable from a vars file: one
/// resource each, with its own id; the second apply is a no-op.
fn for_each_makes_one_resource_per_item_and_a_second_apply_changes_nothing() {
    let test = Test::new()
        .playbook(
            "resources:
  - directory: /etc/app
  - file: \"/etc/app/{{ item }}.conf\"
    for_each: [a, b]
    content: \"name={{ item }}\\n\"
  - file: \"/etc/app/{{ key }}.port\"
    for_each:
      web: {port: 80}
      api: {port: 8080}
    content: \"{{ value.port }}\\n\"
    mode: \"0600\"
  - directory: \"/etc/app/{{ item }}\"
    for_each: \"{{ sites }}\"
",
        )
        .file("vars.yml", "sites: [one, two]\n");
    let run = test.run_args(&["apply", "{playbook}", "--root", "{root}", "--vars-file", "vars.yml"]).success();
    for id in ["file:/etc/app/a.conf", "file:/etc/app/b.conf", "file:/etc/app/web.port", "directory:/etc/app/two"] {
        assert!(run.stdout.contains(&format!("{id}: created")), "{id}: {}", run.stdout);
    }
    test.expect_file("/etc/app/b.conf", "name=b\n").expect_file("/etc/app/api.port", "8080\n");
    test.expect_stat("/etc/app/web.port", 0o600, 0, 0);
    assert!(test.host_path("/etc/app/one").is_dir());
    let again = test.run_args(&["apply", "{playbook}", "--root", "{root}", "--vars-file", "vars.yml"]).success();
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);
}

/// Items of a secret variable are named by their number, in ids and errors alike.
fn for_each_over_a_secret_never_prints_its_items() {
    let test = Test::new().playbook(
        "secrets:\n  tokens: [s3cr3t-one, s3cr3t-two]\nresources:\n  - file: \"/etc/{{ item }}\"\n    for_each: \"{{ tokens }}\"\n    content: \"{{ item }}\\n\"\n  - file: /etc/same\n    for_each: \"{{ tokens }}\"\n    content: x\n",
    );
    let err = test.validate().code(1).stderr;
    assert!(err.contains("for_each: item #1 and item #2 both make `file:/etc/same`"), "{err}");
    let test = test.playbook(
        "secrets:\n  tokens: [s3cr3t-one, s3cr3t-two]\nresources:\n  - file: \"/etc/{{ item }}\"\n    for_each: \"{{ tokens }}\"\n    content: \"{{ item }}\\n\"\n",
    );
    let plan = test.plan();
    assert!(plan.stdout.contains("file:(sensitive, line 4, item #2) (create)"), "{}", plan.stdout);
    let run = test.apply().success();
    for output in [plan.stdout, plan.stderr, err, run.stdout, run.stderr] {
        assert!(!output.contains("s3cr3t"), "{output}");
    }
    test.expect_file("/etc/s3cr3t-two", "s3cr3t-two\n");
}
