//! user and group with the shadow tools under `--root`, and a plan that is honest about a user
//! that an earlier resource creates.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::support::Test;

tests![
    users_and_groups_are_created_before_what_they_own,
    user_changes_are_applied_with_usermod,
    an_owner_that_exists_nowhere_is_an_error_before_anything_changes,
    groups_append_or_exact_and_the_plan_says_which_groups_change,
];

fn passwd_line(test: &Test, user: &str) -> Option<String> {
    fs::read_to_string(test.host_path("/etc/passwd"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .map(str::to_owned)
}

const PLAYBOOK: &str = "resources:
  - directory: /srv/app
    owner: app
    group: app
    mode: \"0750\"
  - user: app
    system: true
    group: app
    groups: [www-data]
    home: /srv/app
    shell: /usr/sbin/nologin
  - group: app
    system: true
";

fn users_and_groups_are_created_before_what_they_own() {
    require!(Root);
    let test = Test::new().with_accounts().playbook(PLAYBOOK);
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("owner: app (created above)"), "{}", plan.stdout);
    let order: Vec<&str> = plan.stdout.lines().filter(|l| l.starts_with("  + ")).collect();
    assert_eq!(order, ["  + group:app (create)", "  + user:app (create)", "  + directory:/srv/app (create)"]);

    test.apply().success();
    let line = passwd_line(&test, "app").expect("app in the root's passwd");
    let fields: Vec<&str> = line.split(':').collect();
    assert_eq!((fields[5], fields[6]), ("/srv/app", "/usr/sbin/nologin"));
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {uid}");
    let group = fs::read_to_string(test.host_path("/etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("www-data:") && l.ends_with("app")), "{group}");
    let meta = fs::metadata(test.host_path("/srv/app")).unwrap();
    assert_eq!(meta.uid(), uid);
    assert!(
        !fs::read_to_string("/etc/passwd").unwrap().lines().any(|l| l.starts_with("app:") && l.contains("/srv/app:")),
        "the build machine's passwd is untouched"
    );

    let again = test.apply().success();
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);
}

fn user_changes_are_applied_with_usermod() {
    require!(Root);
    let test = Test::new().with_accounts().playbook("resources:\n  - user: app\n    shell: /bin/sh\n");
    test.apply().success();
    let test = test.playbook("resources:\n  - user: app\n    shell: /bin/bash\n    groups: [www-data]\n");
    let run = test.apply().success();
    assert!(run.stdout.contains("shell: /bin/sh -> /bin/bash"), "{}", run.stdout);
    assert!(passwd_line(&test, "app").unwrap().ends_with(":/bin/bash"));
    test.plan().code(0);

    let removed = test.playbook("resources:\n  - user: app\n    state: absent\n  - group: app\n    state: absent\n");
    removed.apply().success();
    assert!(passwd_line(&removed, "app").is_none());
}

fn an_owner_that_exists_nowhere_is_an_error_before_anything_changes() {
    require!(Root); // as anyone else, changing an owner is refused for that reason first
    let test = Test::new().playbook(
        "resources:\n  - file: /etc/first\n    content: x\n  - file: /etc/app.conf\n    content: x\n    owner: ghost\n",
    );
    let run = test.apply().code(1);
    assert!(run.stderr.contains("user `ghost` does not exist on the host"), "{}", run.stderr);
    test.expect_absent("/etc/first");
}

/// `append: true` (the default) adds groups and keeps the others; `append: false` makes the list
/// exact; the plan names the groups added and removed.
fn groups_append_or_exact_and_the_plan_says_which_groups_change() {
    require!(Root);
    let playbook = |groups: &str, append: &str| {
        format!(
            "resources:\n  - group: g1\n  - group: g2\n  - group: g3\n  - user: app\n    groups: [{groups}]\n{append}"
        )
    };
    let test = Test::new().with_accounts().playbook(&playbook("g1, g2", ""));
    test.apply().success();
    let members = |test: &Test| -> Vec<String> {
        let group = fs::read_to_string(test.host_path("/etc/group")).unwrap();
        let mut names: Vec<String> = group
            .lines()
            .filter(|l| l.starts_with('g') && l.split(':').nth(3).unwrap_or("").split(',').any(|m| m == "app"))
            .map(|l| l.split(':').next().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(members(&test), ["g1", "g2"]);

    // Appending g3: g1 and g2 stay.
    fs::write(test.playbook_path(), playbook("g3", "")).unwrap();
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("groups: g1,g2 -> g1,g2,g3 (+g3)"), "{}", plan.stdout);
    test.apply().success();
    assert_eq!(members(&test), ["g1", "g2", "g3"]);

    // Exactly g2 and g3: g1 goes.
    fs::write(test.playbook_path(), playbook("g2, g3", "    append: false\n")).unwrap();
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("groups: g1,g2,g3 -> g2,g3 (-g1)"), "{}", plan.stdout);
    test.apply().success();
    assert_eq!(members(&test), ["g2", "g3"]);
    test.plan().code(0);
}
