//! Path safety (docs/paths.md): every path converge acts on is the path it checked, and stays
//! inside its root, against symlinks in the image, hostile users and hostile unit files.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Test, ids_of};

tests![
    absolute_symlinks_of_an_image_resolve_inside_the_root,
    dotdot_in_a_symlink_never_climbs_out_of_the_root,
    paths_that_climb_or_name_the_root_are_errors_at_their_line,
    one_path_written_two_ways_is_a_duplicate,
    a_hostile_alias_in_a_unit_file_is_refused,
    a_unit_name_in_the_playbook_is_checked_as_systemd_does,
    a_fifo_or_a_device_as_template_or_source_is_an_error_not_a_hang,
    a_fifo_at_a_managed_path_is_an_error_not_a_hang,
    a_huge_managed_file_is_compared_by_digest,
    any_legal_file_name_can_be_managed,
    temporary_files_of_a_killed_run_are_removed,
    a_users_symlink_or_directory_never_leads_to_anothers_files,
    swapping_a_managed_path_for_a_symlink_never_changes_what_it_points_at,
    an_ordinary_user_converges_the_example_into_a_folder_of_their_own,
];

/// An error as one line: miette wraps long messages at 100 columns and decorates them.
fn flat(text: &str) -> String {
    let words = text.lines().map(|l| l.trim_start_matches([' ', '│', '╰', '─', '▶', '×']).trim());
    words.filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A Debian image's absolute symlinks (`var/run -> /run`, `lib -> usr/lib`) resolve inside the
/// root, as after a chroot: nothing lands on this machine's /run.
fn absolute_symlinks_of_an_image_resolve_inside_the_root() {
    let name = format!("converge-test-{}", std::process::id());
    let test = Test::new().playbook(&format!(
        "resources:\n  - file: /var/run/{name}\n    content: run\n  - file: /lib/{name}.conf\n    content: lib\n  - directory: /var/run/{name}.d\n"
    ));
    for dir in ["run", "usr/lib", "var"] {
        fs::create_dir_all(test.host_path(dir)).unwrap();
    }
    symlink("/run", test.host_path("/var/run")).unwrap();
    symlink("usr/lib", test.host_path("/lib")).unwrap();

    test.apply().success();
    test.expect_file(&format!("/run/{name}"), "run").expect_file(&format!("/usr/lib/{name}.conf"), "lib");
    assert!(test.host_path(&format!("/run/{name}.d")).is_dir());
    assert!(!Path::new("/run").join(&name).exists(), "a write reached this machine's /run");
    assert!(!Path::new("/run").join(format!("{name}.d")).exists(), "a directory was made on this machine's /run");
    test.plan().code(0);
}

/// A relative symlink that climbs with `..` stops at the root, as `/..` does.
fn dotdot_in_a_symlink_never_climbs_out_of_the_root() {
    let test = Test::new().playbook("resources:\n  - file: /etc/up/escaped\n    content: x\n");
    symlink("../../../../../../..", test.host_path("/etc/up")).unwrap();
    test.apply().success();
    // `/etc/up` leads to the root itself: the file lands there, never above it.
    test.expect_file("/escaped", "x");
    assert!(!test.dir.path().join("escaped").exists());
}

fn paths_that_climb_or_name_the_root_are_errors_at_their_line() {
    let test = Test::new().playbook(
        "resources:\n  - file: /../../x\n    content: x\n  - directory: \"/\"\n    state: absent\n  - file: /etc/x/../a\n    content: a\n",
    );
    let run = test.validate().code(1);
    let err = run.err();
    assert!(err.contains("`/../../x` has a `..` component"), "{err}");
    assert!(err.contains("`/` cannot be a directory"), "{err}");
    assert!(err.contains("`/etc/x/../a` has a `..` component"), "{err}");
    assert!(err.contains("playbook.yml:2:11"), "{err}");
    assert!(err.contains("playbook.yml:4:16"), "{err}");
    // apply stops before touching anything: the root is still there.
    test.apply().code(1);
    assert!(test.root().join("etc").is_dir());
}

fn one_path_written_two_ways_is_a_duplicate() {
    let test =
        Test::new().playbook("resources:\n  - file: /etc/a\n    content: a\n  - file: /etc//./a/\n    content: b\n");
    let err = test.validate().code(1).err();
    assert!(err.contains("file:/etc/a"), "{err}");
    assert!(err.to_lowercase().contains("duplicate") || err.contains("twice"), "{err}");
}

/// A unit file in the image that names a link outside the unit directory is refused, naming
/// the file and line, and nothing is removed.
fn a_hostile_alias_in_a_unit_file_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, "keep me").unwrap();
    let depth = "../".repeat(12);
    let unit = format!(
        "[Unit]\nDescription=evil\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nAlias={depth}{}\n",
        victim.display().to_string().trim_start_matches('/')
    );
    let test = Test::new()
        .host_file("/lib/systemd/system/evil.service", &unit)
        .playbook("resources:\n  - unit: evil.service\n    enabled: false\n");
    let err = flat(&test.apply().code(1).stderr);
    assert!(err.contains("/lib/systemd/system/evil.service (or a drop-in of it), line 7: `Alias="), "{err}");
    assert!(err.contains("is not a unit name"), "{err}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");

    let wanted = Test::new()
        .host_file("/lib/systemd/system/evil.service", "[Install]\nWantedBy=../../../../../../tmp/x\n")
        .playbook("resources:\n  - unit: evil.service\n    enabled: true\n");
    let err = flat(&wanted.apply().code(1).stderr);
    assert!(err.contains("line 2: `WantedBy=") && err.contains("is not a unit name"), "{err}");
    assert!(err.contains("converge makes and removes no link for it"), "{err}");
}

fn a_unit_name_in_the_playbook_is_checked_as_systemd_does() {
    let test = Test::new().playbook(
        "resources:\n  - unit: ../../etc/passwd.service\n    content: x\n  - unit: ssh.servic\n    enabled: true\n",
    );
    let err = test.validate().code(1).err();
    assert!(err.contains("`../../etc/passwd.service` is not a unit name"), "{err}");
    assert!(err.contains("such as ssh.service"), "{err}");
    assert!(!err.contains("ssh.servic.service"), "{err}");
}

/// The tool under a timeout: a hang is a failure, not a stuck test.
fn converge_within(test: &Test, seconds: u64, args: &[&str]) -> std::process::Output {
    let mut command = Command::new("timeout");
    command.arg(seconds.to_string()).arg(env!("CARGO_BIN_EXE_converge"));
    let playbook = test.playbook_path().display().to_string();
    let root = test.root().display().to_string();
    command.args(args.iter().map(|a| a.replace("{playbook}", &playbook).replace("{root}", &root)));
    command.output().unwrap()
}

fn a_fifo_or_a_device_as_template_or_source_is_an_error_not_a_hang() {
    let test = Test::new()
        .playbook("resources:\n  - file: /etc/a\n    template: fifo.j2\n  - file: /etc/b\n    source: /dev/zero\n");
    nix::unistd::mkfifo(&test.dir.path().join("fifo.j2"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = converge_within(&test, 20, &["validate", "{playbook}"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("fifo.j2") && err.contains("not a regular file"), "{err}");
    assert!(err.contains("/dev/zero"), "{err}");
}

fn a_fifo_at_a_managed_path_is_an_error_not_a_hang() {
    let test = Test::new().playbook("resources:\n  - file: /etc/app.conf\n    content: x\n");
    nix::unistd::mkfifo(&test.host_path("/etc/app.conf"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = converge_within(&test, 20, &["apply", "{playbook}", "--root", "{root}"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("special file"), "{err}");
}

/// A managed file bigger than converge reads into memory (sparse here: 256 MiB that take no disk)
/// is compared by its streamed digest, and replaced.
fn a_huge_managed_file_is_compared_by_digest() {
    let test = Test::new().playbook("resources:\n  - file: /etc/big\n    content: small\n");
    let big = fs::File::create(test.host_path("/etc/big")).unwrap();
    big.set_len(1 << 28).unwrap();
    drop(big);
    let run = test.plan().code(2);
    assert!(run.stdout.contains("(268435456 bytes) -> sha256:"), "{}", run.stdout);
    test.apply().success();
    test.expect_file("/etc/big", "small");
}

fn any_legal_file_name_can_be_managed() {
    let long = "n".repeat(255);
    let test = Test::new().playbook(&format!(
        "resources:\n  - file: /etc/{long}\n    content: x\n  - symlink: /etc/l{}\n    target: /x\n",
        &long[1..]
    ));
    test.apply().success();
    test.expect_file(&format!("/etc/{long}"), "x");
    test.plan().code(0);
}

/// A killed run leaves its temporary file; the next run that writes beside it removes it.
fn temporary_files_of_a_killed_run_are_removed() {
    let test = Test::new()
        .host_file("/etc/.cvg.k1ll3drn", "half written")
        .host_file("/etc/.cvg.keepthis-not-ours", "not a temp name")
        .playbook("resources:\n  - file: /etc/app.conf\n    content: x\n");
    test.apply().success();
    test.expect_absent("/etc/.cvg.k1ll3drn");
    test.expect_file("/etc/.cvg.keepthis-not-ours", "not a temp name");
    let left: Vec<_> = fs::read_dir(test.host_path("/etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cvg.") && n.len() == 13)
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// systemd-tmpfiles' rule: from what an unprivileged user owns, only to that user's things.
fn a_users_symlink_or_directory_never_leads_to_anothers_files() {
    require!(Root);
    let (nobody, nogroup) = ids_of("nobody");
    let test = Test::new().with_accounts().playbook(
        "resources:\n  - file: /srv/app/link/owned\n    content: x\n  - file: /srv/app/rootdir/x\n    content: x\n",
    );
    let app = test.host_path("/srv/app");
    fs::create_dir_all(app.join("rootdir")).unwrap();
    std::os::unix::fs::chown(&app, Some(nobody), Some(nogroup)).unwrap();
    symlink("/etc", app.join("link")).unwrap();
    std::os::unix::fs::lchown(app.join("link"), Some(nobody), Some(nogroup)).unwrap();

    let err = flat(&test.apply().code(1).stderr);
    assert!(err.contains("refused /srv/app/link/owned (in the root"), "{err}");
    assert!(
        err.contains("`link` is a symlink owned by nobody (uid 65534), and it leads to `/`, a directory owned by root"),
        "{err}"
    );
    test.expect_absent("/etc/owned");

    // The symlink gone, the root-owned directory inside nobody's is refused the same way.
    fs::remove_file(app.join("link")).unwrap();
    fs::create_dir(app.join("link")).unwrap();
    std::os::unix::fs::chown(app.join("link"), Some(nobody), Some(nogroup)).unwrap();
    let err = flat(&test.apply().code(1).stderr);
    assert!(err.contains("`app` is a directory owned by nobody"), "{err}");
    assert!(err.contains("`rootdir`, a directory owned by root"), "{err}");
    test.expect_absent("/srv/app/rootdir/x");

    // Given to nobody, the same tree is nobody's alone: converge goes on.
    std::os::unix::fs::chown(app.join("rootdir"), Some(nobody), Some(nogroup)).unwrap();
    test.apply().success();
    test.expect_file("/srv/app/link/owned", "x").expect_file("/srv/app/rootdir/x", "x");
}

/// The race of the issue: while converge fixes a managed directory's and a managed file's mode
/// again and again, their owner swaps each for a symlink to a file of root's (renameat2
/// RENAME_EXCHANGE in a tight loop). What the symlinks point at never changes.
fn swapping_a_managed_path_for_a_symlink_never_changes_what_it_points_at() {
    require!(Root);
    let (nobody, nogroup) = ids_of("nobody");
    let outside = tempfile::tempdir().unwrap();
    let victim_file = outside.path().join("shadow");
    let victim_dir = outside.path().join("secrets");
    fs::write(&victim_file, "secret").unwrap();
    fs::set_permissions(&victim_file, fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(&victim_dir).unwrap();
    fs::set_permissions(&victim_dir, fs::Permissions::from_mode(0o700)).unwrap();

    // A directory and a file whose mode alone changes on every run: a change of mode is the step
    // that once followed a symlink (chmod by path after lstat: an old build fails this test).
    const PAIRS: usize = 1;
    let playbook = |mode: &str| {
        let mut yaml = String::from("resources:\n");
        for i in 0..PAIRS {
            yaml += &format!("  - directory: /srv/app/d{i}\n    mode: \"{mode}\"\n");
            yaml += &format!("  - file: /srv/app/f{i}\n    content: app\n    mode: \"{mode}\"\n");
        }
        yaml
    };
    let test = Test::new().with_accounts().playbook(&playbook("0755"));
    let app = test.host_path("/srv/app");
    fs::create_dir_all(&app).unwrap();
    test.apply().success();
    // The app user owns all of it, and has symlinks ready: to a file of root's outside the root,
    // and (relative, climbing) to a directory of root's.
    let climb = format!("{}{}", "../".repeat(20), victim_dir.display().to_string().trim_start_matches('/'));
    std::os::unix::fs::lchown(&app, Some(nobody), Some(nogroup)).unwrap();
    for i in 0..PAIRS {
        symlink(&victim_file, app.join(format!("sf{i}"))).unwrap();
        symlink(&climb, app.join(format!("sd{i}"))).unwrap();
        for entry in ["d", "f", "sf", "sd"] {
            std::os::unix::fs::lchown(app.join(format!("{entry}{i}")), Some(nobody), Some(nogroup)).unwrap();
        }
    }

    // One swap at a time, so that most runs get as far as the change itself: first the
    // directory, then the file, each swapped in a tight loop while converge applies.
    for (managed, link) in [("d0", "sd0"), ("f0", "sf0")] {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let stop = stop.clone();
            let app = app.clone();
            std::thread::spawn(move || {
                let dir = fs::File::open(&app).unwrap();
                let mut swaps = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let flags = nix::fcntl::RenameFlags::RENAME_EXCHANGE;
                    if nix::fcntl::renameat2(&dir, managed, &dir, link, flags).is_ok() {
                        swaps += 1;
                    }
                }
                swaps
            })
        };
        // Ten seconds, and longer on a busy machine, until thirty applies got through (a minute
        // at most).
        let start = Instant::now();
        let (mut runs, mut applied) = (0, 0);
        while (start.elapsed() < Duration::from_secs(10) || applied < 30) && start.elapsed() < Duration::from_secs(60) {
            fs::write(test.playbook_path(), playbook(if runs % 2 == 0 { "0777" } else { "0750" })).unwrap();
            // Refusals are expected; only what happens outside the managed paths matters.
            applied += (test.apply().code == 0) as u32;
            runs += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        // Stopped at any moment: put the managed one back in its place for the next phase.
        if fs::symlink_metadata(app.join(managed)).unwrap().file_type().is_symlink() {
            let flags = nix::fcntl::RenameFlags::RENAME_EXCHANGE;
            let dir = fs::File::open(&app).unwrap();
            nix::fcntl::renameat2(&dir, managed, &dir, link, flags).unwrap();
        }
        assert!(applied >= 30 && swaps > 1000, "the race ran: {applied} of {runs} applies, {swaps} swaps of {managed}");
    }

    let meta = fs::metadata(&victim_file).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o600, 0, 0), "the file the symlink points at");
    assert_eq!(fs::read_to_string(&victim_file).unwrap(), "secret", "its content");
    let meta = fs::metadata(&victim_dir).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o700, 0, 0), "the directory the symlink points at");
    assert_eq!(fs::read_dir(&victim_dir).unwrap().count(), 0, "nothing was written into it");
    // Nothing was created outside the root either.
    let outside_entries: Vec<_> = fs::read_dir(outside.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(outside_entries.len(), 2, "{outside_entries:?}");
}

/// Trying converge needs no root: the example site converges into a folder of an ordinary
/// user's, whose files become theirs; asking for another owner is refused before any write.
fn an_ordinary_user_converges_the_example_into_a_folder_of_their_own() {
    require!(Root); // setpriv needs root to become the ordinary user
    let scratch = tempfile::Builder::new().prefix("converge-noroot").tempdir().unwrap();
    let (nobody, nogroup) = ids_of("nobody");
    std::os::unix::fs::chown(scratch.path(), Some(nobody), Some(nogroup)).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_converge"))
            .args(args)
            .current_dir(repo)
            .env("HOME", scratch.path())
            .output()
            .unwrap()
    };
    let root = scratch.path().join("demo");
    let root = root.to_str().unwrap();
    let out = as_nobody(&["apply", "playbooks/mysite.yml", "--root", root]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unit = fs::metadata(scratch.path().join("demo/etc/systemd/system/gunicorn.socket")).unwrap();
    assert_eq!((unit.uid(), unit.gid()), (nobody, nogroup));
    let out = as_nobody(&["plan", "playbooks/mysite.yml", "--root", root]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

    let playbook = scratch.path().join("owned.yml");
    fs::write(&playbook, "resources:\n  - file: /etc/owned\n    content: x\n    owner: root\n").unwrap();
    std::os::unix::fs::chown(&playbook, Some(nobody), Some(nogroup)).unwrap();
    let out = as_nobody(&["apply", playbook.to_str().unwrap(), "--root", root]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("changing the owner to `root` needs root"), "{err}");
    assert!(!scratch.path().join("demo/etc/owned").exists(), "nothing is written");
}
