//! `apt_repository` in a temporary root: the source file and key it writes (apt itself is
//! exercised in apt_repository_e2e.rs), the key's format told by its content, `state: absent`,
//! and every bad value refused at its line with nothing written.

use crate::support::Test;

tests![
    writes_the_source_and_its_key_then_plans_nothing,
    a_binary_key_replaces_the_armored_one_and_absent_removes_both,
    bad_values_are_errors_at_their_lines_and_nothing_is_written,
    the_readme_example_plans_as_written,
    installs_written_after_a_repository_wait_for_it_and_those_before_stay_before,
];

const ARMORED: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ0test\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n";

const VENDOR: &str = "resources:\n  - apt_repository: vendor\n    uris: https://example.org/debian\n    \
                      suites: bookworm\n    components: [main, contrib]\n    architectures: amd64\n    \
                      key: files/vendor.asc\n";

const SOURCE: &str = "# Managed by converge.\nTypes: deb\nURIs: https://example.org/debian\nSuites: bookworm\n\
                      Components: main contrib\nArchitectures: amd64\nSigned-By: /etc/apt/keyrings/vendor.asc\n";

fn owner() -> (u32, u32) {
    (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw())
}

fn writes_the_source_and_its_key_then_plans_nothing() {
    let test = Test::new().playbook(VENDOR).file("files/vendor.asc", ARMORED);
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("+ apt_repository:vendor (create)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+++ /etc/apt/sources.list.d/vendor.sources"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+Components: main contrib"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+++ /etc/apt/keyrings/vendor.asc"), "{}", plan.stdout);
    test.apply().success();
    let (uid, gid) = owner();
    test.expect_file("/etc/apt/sources.list.d/vendor.sources", SOURCE)
        .expect_file("/etc/apt/keyrings/vendor.asc", ARMORED)
        .expect_stat("/etc/apt/sources.list.d/vendor.sources", 0o644, uid, gid)
        .expect_stat("/etc/apt/keyrings/vendor.asc", 0o644, uid, gid);
    test.plan().code(0);
    // A key made unreadable to apt's `_apt` user is put back to 0644.
    let key = test.host_path("/etc/apt/keyrings/vendor.asc");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("~ /etc/apt/keyrings/vendor.asc: mode: 0600 -> 0644"), "{}", plan.stdout);
    test.apply().success();
    test.expect_stat("/etc/apt/keyrings/vendor.asc", 0o644, uid, gid);
}

fn a_binary_key_replaces_the_armored_one_and_absent_removes_both() {
    let test = Test::new().playbook(VENDOR).file("files/vendor.asc", ARMORED);
    test.apply().success();
    // `gpg --export`: a public key packet, whatever the file is called.
    let binary = [0x98, 0x33, 0x04, 0x65, 0x00, 0x01];
    std::fs::write(test.dir.path().join("files/vendor.key"), binary).unwrap();
    let test = test.playbook(&VENDOR.replace("files/vendor.asc", "files/vendor.key"));
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("~ apt_repository:vendor (update)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("content of /etc/apt/keyrings/vendor.gpg: nothing -> sha256:"), "{}", plan.stdout);
    assert!(plan.stdout.contains("- /etc/apt/keyrings/vendor.asc"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+Signed-By: /etc/apt/keyrings/vendor.gpg"), "{}", plan.stdout);
    test.apply().success();
    assert_eq!(std::fs::read(test.host_path("/etc/apt/keyrings/vendor.gpg")).unwrap(), binary);
    test.expect_absent("/etc/apt/keyrings/vendor.asc");
    test.plan().code(0);

    let test = test.playbook("resources:\n  - apt_repository: vendor\n    state: absent\n");
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("- apt_repository:vendor (remove)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("- /etc/apt/sources.list.d/vendor.sources"), "{}", plan.stdout);
    test.apply().success();
    test.expect_absent("/etc/apt/sources.list.d/vendor.sources").expect_absent("/etc/apt/keyrings/vendor.gpg");
    test.plan().code(0);
}

fn bad_values_are_errors_at_their_lines_and_nothing_is_written() {
    let playbook = "resources:\n\
                    \x20 - apt_repository: ../evil\n\
                    \x20   uris: [\"https://user:secret@example.org/debian\", \"gopher://example.org/\"]\n\
                    \x20   suites: \"bookworm\\nTrusted: yes\"\n\
                    \x20   components: [main, -oAPT::x]\n\
                    \x20   types: [deb, rpm]\n\
                    \x20   key: files/vendor.asc\n\
                    \x20 - apt_repository: flat\n\
                    \x20   uris: file:/srv/repo\n\
                    \x20   suites: ./\n\
                    \x20   components: main\n\
                    \x20   key: |\n\
                    \x20     -----BEGIN PGP PRIVATE KEY BLOCK-----\n";
    let test = Test::new().playbook(playbook).file("files/vendor.asc", "https://example.org/key.asc\n");
    let run = test.apply().code(1);
    let err = crate::lines::flat(&run.err());
    for (line, message) in [
        (2, "`../evil` cannot name an apt source"),
        (3, "cannot be one of `uris`: it holds a user name or password"),
        (3, "apt has no method for `gopher:` URIs"),
        (4, "cannot be one of `suites`: it holds a space, a line break or a control character"),
        (5, "cannot be one of `components`: it starts with `-`"),
        (6, "the types are `deb` and `deb-src`"),
        (7, "`key` is not a public key apt can read: it is neither an armored public key block nor a binary"),
        (8, "a suite that ends in `/` is a flat repository, which has no components"),
        (13, "it is a private key"),
    ] {
        assert!(err.contains(message), "{message}:\n{err}");
        assert!(err.contains(&format!("playbook.yml:{line}:")), "line {line}:\n{err}");
    }
    assert!(!test.host_path("/etc/apt").exists(), "nothing written");
}

/// The README's `apt_repository` example, as a playbook.
fn readme_example() -> String {
    let readme = include_str!("../../README.md");
    let start = readme.find("```yaml\n- apt_repository: nginx\n").expect("the example is in the README") + 8;
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let items: Vec<String> = example.lines().map(|line| format!("  {line}\n")).collect();
    format!("resources:\n{}", items.concat())
}

fn the_readme_example_plans_as_written() {
    let test = Test::new().playbook(&readme_example()).file("files/nginx_signing.key", ARMORED);
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("+ apt_repository:nginx (create)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+URIs: https://nginx.org/packages/debian"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+Signed-By: /etc/apt/keyrings/nginx.asc"), "{}", plan.stdout);
    let install = plan.stdout.split_once("+ apt:nginx (create)\n").expect("nginx is installed after").1;
    assert!(install.starts_with("      (depends on the lists of repository nginx, not fetched yet)"), "{}", plan.stdout);
}

fn installs_written_after_a_repository_wait_for_it_and_those_before_stay_before() {
    let playbook = format!("resources:\n  - apt: ca-certificates\n{}  - apt: nginx\n", &VENDOR[11..]);
    let test = Test::new().playbook(&playbook).file("files/vendor.asc", ARMORED);
    let plan = test.plan().code(2).stdout;
    let at = |line: &str| plan.find(line).unwrap_or_else(|| panic!("{line}:\n{plan}"));
    let (before, repository, after) =
        (at("+ apt:ca-certificates (create)"), at("+ apt_repository:vendor (create)"), at("+ apt:nginx (create)"));
    assert!(before < repository && repository < after, "{plan}");
    let unfetched = "(depends on the lists of repository vendor, not fetched yet)";
    assert!(!plan[..repository].contains(unfetched) && plan[after..].contains(unfetched), "{plan}");
    // The repository moved after a file by its `after:` takes the install written after it along.
    let moved = format!(
        "{}    after: file:/etc/vendor.conf\n  - apt: nginx\n  - file: /etc/vendor.conf\n    content: x\n",
        VENDOR
    );
    let test = test.playbook(&moved);
    let plan = test.plan().code(2).stdout;
    let at = |line: &str| plan.find(line).unwrap_or_else(|| panic!("{line}:\n{plan}"));
    assert!(at("+ file:/etc/vendor.conf") < at("+ apt_repository:vendor") && at("+ apt_repository:vendor") < at("+ apt:nginx"), "{plan}");
    // The first install is not made to wait: a repository may say `after:` it, with no cycle.
    let test = test.playbook(&playbook.replace("    key: files/vendor.asc\n", "    key: files/vendor.asc\n    after: apt:ca-certificates\n"));
    test.plan().code(2);
}
