//! `directory` with `source:`: a tree copied from beside the playbook into a real filesystem,
//! with real owners, modes, `purge`, a plan that lists each file, and a second run that changes
//! nothing; symlinks in the source or the destination are refused, never followed.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use crate::support::{Test, ids_of};

tests![
    a_tree_is_copied_with_modes_and_owners_and_a_second_run_is_a_no_op,
    purge_removes_what_the_source_lacks_and_the_plan_lists_each_file,
    file_mode_and_dir_mode_apply_to_the_whole_tree,
    a_symlink_in_the_destination_is_refused_and_never_followed,
    a_symlink_in_the_source_is_an_error_at_its_line,
    tree_attributes_without_source_are_errors_at_their_line,
];

const SITE: &str = "resources:\n  - directory: /srv/site\n    source: files/site/\n    owner: www-data\n    group: www-data\n    mode: \"0750\"\n";

/// A source tree: a page, a stylesheet in a folder, a script its owner may run, and an image
/// (binary).
fn site(test: Test) -> Test {
    let test = test
        .file("files/site/index.html", "<h1>hello</h1>\n")
        .file("files/site/css/site.css", "body { margin: 0 }\n")
        .file("files/site/bin/run.sh", "#!/bin/sh\necho run\n");
    let dir = test.dir.path().join("files/site");
    fs::set_permissions(dir.join("bin/run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(dir.join("logo.png"), b"\x89PNG\r\n\x1a\n\0\0binary").unwrap();
    test
}

fn a_tree_is_copied_with_modes_and_owners_and_a_second_run_is_a_no_op() {
    require!(Root);
    let test = site(Test::new().with_accounts().playbook(SITE));
    let run = test.apply().success();
    assert!(run.stdout.contains("directory:/srv/site: created"), "{}", run.stdout);
    let (www, www_gid) = ids_of("www-data");
    test.expect_stat("/srv/site", 0o750, www, www_gid)
        .expect_stat("/srv/site/css", 0o755, www, www_gid)
        .expect_stat("/srv/site/index.html", 0o644, www, www_gid)
        .expect_stat("/srv/site/css/site.css", 0o644, www, www_gid)
        .expect_stat("/srv/site/bin/run.sh", 0o755, www, www_gid)
        .expect_file("/srv/site/index.html", "<h1>hello</h1>\n")
        .expect_file("/srv/site/bin/run.sh", "#!/bin/sh\necho run\n");
    assert_eq!(fs::read(test.host_path("/srv/site/logo.png")).unwrap(), b"\x89PNG\r\n\x1a\n\0\0binary");

    let stat = |p: &str| {
        let m = fs::symlink_metadata(test.host_path(p)).unwrap();
        (m.ino(), m.mtime_nsec(), m.ctime_nsec())
    };
    let before = [stat("/srv/site/index.html"), stat("/srv/site/logo.png"), stat("/srv/site/css")];
    let run = test.apply().success();
    assert!(run.stdout.starts_with("No changes. The host matches the playbook."), "{}", run.stdout);
    assert_eq!(before, [stat("/srv/site/index.html"), stat("/srv/site/logo.png"), stat("/srv/site/css")]);

    // Drift of one file's owner and another's mode: only those are planned and put back.
    std::os::unix::fs::chown(test.host_path("/srv/site/css/site.css"), Some(0), None).unwrap();
    fs::set_permissions(test.host_path("/srv/site/index.html"), fs::Permissions::from_mode(0o600)).unwrap();
    let run = test.plan().code(2);
    assert!(run.stdout.contains("~ /srv/site/css/site.css: owner: root -> www-data"), "{}", run.stdout);
    assert!(run.stdout.contains("~ /srv/site/index.html: mode: 0600 -> 0644"), "{}", run.stdout);
    test.apply().success();
    test.expect_stat("/srv/site/css/site.css", 0o644, www, www_gid).expect_stat("/srv/site/index.html", 0o644, www, www_gid);
    test.plan().code(0);
}

fn purge_removes_what_the_source_lacks_and_the_plan_lists_each_file() {
    let playbook = "resources:\n  - directory: /srv/site\n    source: files/site\n    purge: true\n";
    let test = site(Test::new().playbook(playbook))
        .host_file("/srv/site/index.html", "<h1>old</h1>\n")
        .host_file("/srv/site/old.html", "gone\n")
        .host_file("/srv/site/olddir/inside", "gone too\n")
        .host_file("/srv/site/css/old.css", "gone\n");
    let run = test.plan().code(2);
    let out = run.out();
    for line in [
        "~ directory:/srv/site (update)",
        "- /srv/site/css/old.css",
        "- /srv/site/old.html",
        "- /srv/site/olddir",
        "+ /srv/site/bin",
        "--- /srv/site/index.html",
        "-<h1>old</h1>",
        "+<h1>hello</h1>",
        "--- /dev/null",
        "+++ /srv/site/bin/run.sh",
        "content of /srv/site/logo.png: nothing -> sha256:",
    ] {
        assert!(out.contains(line), "no `{line}` in the plan:\n{out}");
    }
    assert!(!out.contains("/srv/site/olddir/inside"), "removing a directory takes what is inside:\n{out}");
    test.apply().success();
    test.expect_absent("/srv/site/old.html").expect_absent("/srv/site/olddir").expect_absent("/srv/site/css/old.css");
    test.expect_file("/srv/site/index.html", "<h1>hello</h1>\n").expect_file("/srv/site/css/site.css", "body { margin: 0 }\n");
    test.plan().code(0);

    // The run kept what purge removed, inside a removed directory too: a rollback puts it back.
    test.run_args(&["rollback", "--root", "{root}"]).success();
    test.expect_file("/srv/site/old.html", "gone\n")
        .expect_file("/srv/site/olddir/inside", "gone too\n")
        .expect_file("/srv/site/css/old.css", "gone\n")
        .expect_file("/srv/site/index.html", "<h1>old</h1>\n")
        .expect_absent("/srv/site/bin");

    // Without purge, what the source lacks stays.
    let kept = site(Test::new().playbook("resources:\n  - directory: /srv/site\n    source: files/site\n"))
        .host_file("/srv/site/extra.html", "mine\n");
    kept.apply().success();
    kept.expect_file("/srv/site/extra.html", "mine\n");
    kept.plan().code(0);
}

fn file_mode_and_dir_mode_apply_to_the_whole_tree() {
    let playbook = "resources:\n  - directory: /srv/site\n    source: files/site\n    file_mode: \"0640\"\n    dir_mode: \"u=rwx,g=rx\"\n";
    let test = site(Test::new().playbook(playbook));
    test.apply().success();
    let me = (fs::metadata("/proc/self").unwrap().uid(), fs::metadata("/proc/self").unwrap().gid());
    test.expect_stat("/srv/site/bin/run.sh", 0o640, me.0, me.1)
        .expect_stat("/srv/site/index.html", 0o640, me.0, me.1)
        .expect_stat("/srv/site/css", 0o750, me.0, me.1)
        .expect_stat("/srv/site", 0o755, me.0, me.1);
    test.plan().code(0);
}

fn a_symlink_in_the_destination_is_refused_and_never_followed() {
    let test = site(Test::new().playbook("resources:\n  - directory: /srv/site\n    source: files/site\n"));
    fs::create_dir_all(test.host_path("/srv/site")).unwrap();
    fs::create_dir_all(test.host_path("/etc/secret")).unwrap();
    symlink("/etc/secret", test.host_path("/srv/site/css")).unwrap();
    let run = test.apply().code(1);
    let err = crate::downloads::flat(&run.err());
    assert!(err.contains("/srv/site/css is a symlink (to /etc/secret)"), "{err}");
    assert!(err.contains("never writes through a link"), "{err}");
    test.expect_absent("/etc/secret/site.css").expect_absent("/srv/site/index.html");

    // A symlink where the source has a file is refused as well (its target is left alone).
    let test = site(Test::new().playbook("resources:\n  - directory: /srv/site\n    source: files/site\n"))
        .host_file("/etc/passwd-like", "root:x:0:0\n");
    fs::create_dir_all(test.host_path("/srv/site")).unwrap();
    symlink("/etc/passwd-like", test.host_path("/srv/site/index.html")).unwrap();
    test.apply().code(1);
    test.expect_file("/etc/passwd-like", "root:x:0:0\n");
}

fn a_symlink_in_the_source_is_an_error_at_its_line() {
    let test = site(Test::new().playbook("resources:\n  - directory: /srv/site\n    source: files/site\n"));
    symlink("/etc/shadow", test.dir.path().join("files/site/leak")).unwrap();
    let run = test.validate().code(1);
    let err = crate::downloads::flat(&run.err());
    assert!(err.contains("files/site/leak is a symlink"), "{err}");
    assert!(err.contains("playbook.yml:3:13"), "{err}");
    test.plan().code(1);
    test.expect_absent("/srv/site");
}

fn tree_attributes_without_source_are_errors_at_their_line() {
    let test = Test::new().playbook("resources:\n  - directory: /srv/site\n    purge: true\n    file_mode: \"0644\"\n");
    let run = test.validate().code(1);
    let err = run.err();
    assert!(err.contains("`purge` is for a copied tree") && err.contains("`file_mode` is for a copied tree"), "{err}");
    assert!(err.contains("playbook.yml:3:12"), "{err}");
    let absent = Test::new()
        .playbook("resources:\n  - directory: /srv/site\n    state: absent\n    source: files/site\n")
        .file("files/site/a", "a");
    let run = absent.validate().code(1);
    assert!(run.err().contains("`source` copies a tree into a directory that is present"), "{}", run.err());
}
