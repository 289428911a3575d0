//! `apt_repository` against the real apt, in a booted container of the project's Debian rootfs
//! (harness/): a local repository that the test builds (a tiny .deb made with dpkg-deb, its
//! Packages with dpkg-scanpackages, its Release by hand, signed with a key the test generates
//! with gpg in a temporary GNUPGHOME) is copied in and served by `file:` URI. What the tests
//! assert is read back from the container (dpkg's database, the files, the apt-get calls
//! logged), never from converge's report alone.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::lines::flat;
use crate::systemd_e2e::Container;

tests![
    a_signed_repository_is_added_and_its_package_installed_then_nothing,
    an_unsigned_repository_or_a_wrong_key_is_refused_with_apts_error,
];

/// The package the repository offers, and what it installs.
const PACKAGE: &str = "converge-hello";
const PACKAGE_FILE: &str = "/usr/share/converge-hello/hello";

/// A local apt repository and the keys around it, in a temporary directory.
struct LocalRepository {
    dir: tempfile::TempDir,
}

impl LocalRepository {
    /// Builds the repository (`repo`, signed; `unsigned`, the same without InRelease) and
    /// exports the signing key (`vendor.asc`, `vendor.gpg`) and a key that signed nothing
    /// (`other.gpg`).
    fn build() -> LocalRepository {
        require!(Tool("gpg"), Tool("dpkg-deb"), Tool("dpkg-scanpackages"));
        let dir = tempfile::Builder::new().prefix("converge-apt-repo").tempdir().unwrap();
        let repo = LocalRepository { dir };
        repo.make_package();
        let arch = String::from_utf8(run(Command::new("dpkg").arg("--print-architecture"))).unwrap();
        let binary = format!("main/binary-{}", arch.trim());
        std::fs::create_dir_all(repo.path(&format!("repo/dists/stable/{binary}"))).unwrap();
        let packages = run(Command::new("dpkg-scanpackages").arg("pool").current_dir(repo.path("repo")));
        std::fs::write(repo.path(&format!("repo/dists/stable/{binary}/Packages")), &packages).unwrap();
        std::fs::write(repo.path("repo/dists/stable/Release"), release(arch.trim(), &binary, &packages)).unwrap();
        run(Command::new("cp").arg("-a").arg(repo.path("repo")).arg(repo.path("unsigned")));
        repo.gpg("vendor", &["--quick-gen-key", "converge test <vendor@example.org>", "ed25519", "sign", "never"]);
        let release = repo.path("repo/dists/stable/Release");
        let inrelease = repo.path("repo/dists/stable/InRelease");
        repo.gpg("vendor", &["--clearsign", "-o", path_str(&inrelease), path_str(&release)]);
        std::fs::write(repo.path("vendor.asc"), repo.gpg("vendor", &["--armor", "--export"])).unwrap();
        std::fs::write(repo.path("vendor.gpg"), repo.gpg("vendor", &["--export"])).unwrap();
        repo.gpg("other", &["--quick-gen-key", "someone else <other@example.org>", "ed25519", "sign", "never"]);
        std::fs::write(repo.path("other.gpg"), repo.gpg("other", &["--export"])).unwrap();
        repo
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The .deb, in `repo/pool`: one file, architecture all.
    fn make_package(&self) {
        let tree = self.path("package");
        std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(tree.join(PACKAGE_FILE.trim_start_matches('/')).parent().unwrap()).unwrap();
        let control = format!(
            "Package: {PACKAGE}\nVersion: 1.0\nArchitecture: all\nMaintainer: converge tests <t@example.org>\n\
             Description: a package of the apt_repository tests\n"
        );
        std::fs::write(tree.join("DEBIAN/control"), control).unwrap();
        std::fs::write(tree.join(PACKAGE_FILE.trim_start_matches('/')), "hello from the local repository\n").unwrap();
        std::fs::create_dir_all(self.path("repo/pool")).unwrap();
        let deb = self.path(&format!("repo/pool/{PACKAGE}_1.0_all.deb"));
        run(Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&tree).arg(deb));
    }

    /// gpg with the keys of `home` (a GNUPGHOME of its own, no passphrase); its stdout. Its agent
    /// is stopped after each call.
    fn gpg(&self, home: &str, args: &[&str]) -> Vec<u8> {
        let home = self.path(&format!("gnupg-{home}"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let out = run(Command::new("gpg").env("GNUPGHOME", &home).args(["--batch", "--yes", "--passphrase", ""]).args(args));
        run(Command::new("gpgconf").env("GNUPGHOME", &home).args(["--kill", "gpg-agent"]));
        out
    }

    /// The fingerprint of the key of `home`.
    fn fingerprint(&self, home: &str) -> String {
        let listing = String::from_utf8(self.gpg(home, &["--with-colons", "--list-keys"])).unwrap();
        let fpr = listing.lines().find_map(|line| line.strip_prefix("fpr:")).expect("a key");
        fpr.trim_matches(':').to_owned()
    }

    /// A container with the signed repository at /srv/repo, the unsigned one at /srv/unsigned,
    /// and the key files beside its playbook (/root/files).
    fn container(&self, test: &str) -> Container {
        let container = Container::boot(test);
        container.copy_in(&self.path("repo"), "/srv/repo");
        container.copy_in(&self.path("unsigned"), "/srv/unsigned");
        for key in ["vendor.asc", "vendor.gpg", "other.gpg"] {
            container.copy_in(&self.path(key), &format!("/root/files/{key}"));
        }
        container
    }
}

/// A Release file for the one index `binary/Packages`, as apt-ftparchive would write it.
fn release(arch: &str, binary: &str, packages: &[u8]) -> String {
    use sha2::Digest;
    let sha256: String = sha2::Sha256::digest(packages).iter().map(|b| format!("{b:02x}")).collect();
    let date = String::from_utf8(run(Command::new("date").args(["-Ru"]))).unwrap();
    format!(
        "Origin: converge-test\nSuite: stable\nCodename: stable\nDate: {}\nArchitectures: {arch}\nComponents: main\n\
         SHA256:\n {sha256} {} {binary}/Packages\n",
        date.trim(),
        packages.len()
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs a host program that must succeed; its stdout.
fn run(command: &mut Command) -> Vec<u8> {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The playbook: the repository `vendor` at `uri` with `key`, and the package from it.
fn playbook(uri: &str, key: &str) -> String {
    format!(
        "resources:\n  - apt_repository: vendor\n    uris: {uri}\n    suites: stable\n    components: main\n    \
         key: {key}\n  - apt: {PACKAGE}\n"
    )
}

/// The installed version of the package, as dpkg knows it (empty when it is not installed).
fn installed(c: &Container) -> String {
    c.sh(&format!("dpkg-query -W -f='${{db:Status-Status}} ${{Version}}' {PACKAGE} 2>/dev/null || true"))
}

/// Every later call of apt-get is logged to /root/apt-calls.
fn log_apt_get(c: &Container) {
    c.sh("mv /usr/bin/apt-get /usr/bin/apt-get.real && printf '#!/bin/sh\\necho \"$*\" >> /root/apt-calls\\nexec /usr/bin/apt-get.real \"$@\"\\n' > /usr/bin/apt-get && chmod 755 /usr/bin/apt-get && touch /root/apt-calls");
}

fn a_signed_repository_is_added_and_its_package_installed_then_nothing() {
    let repo = LocalRepository::build();
    let c = repo.container("a_signed_repository_is_added");
    log_apt_get(&c);
    let playbook = playbook("file:/srv/repo", "files/vendor.asc");
    let (code, plan, err) = c.converge(&["plan"], &playbook);
    assert_eq!(code, 2, "{plan}{err}");
    assert!(plan.contains("+ apt_repository:vendor (create)"), "{plan}");
    assert!(plan.contains("+++ /etc/apt/keyrings/vendor.asc") && plan.contains("+-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    assert!(plan.contains("+Signed-By: /etc/apt/keyrings/vendor.asc"), "{plan}");
    let apt = plan.split_once(&format!("+ apt:{PACKAGE} (create)\n")).expect("the install is planned").1;
    assert!(apt.starts_with("      (depends on the lists of repository vendor, not fetched yet)"), "{plan}");
    assert_eq!(c.sh("cat /root/apt-calls"), "", "the plan ran no apt-get install -s on lists without the repository");

    let out = c.apply(&playbook);
    assert!(out.contains("apt_repository:vendor: created") && out.contains(&format!("apt:{PACKAGE}: created")), "{out}");
    assert_eq!(installed(&c), "installed 1.0");
    assert_eq!(c.sh(&format!("cat {PACKAGE_FILE}")), "hello from the local repository");
    let calls = c.sh("cat /root/apt-calls");
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 2, "one scoped update, one install: {calls:?}");
    assert!(calls[0].starts_with("update -q -o Dir::Etc::SourceList=/etc/apt/sources.list.d/vendor.sources"), "{calls:?}");
    assert!(calls[0].contains("Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0"), "{calls:?}");
    assert!(calls[1].starts_with("install "), "{calls:?}");
    let source = "# Managed by converge.\nTypes: deb\nURIs: file:/srv/repo\nSuites: stable\nComponents: main\n\
                  Signed-By: /etc/apt/keyrings/vendor.asc";
    assert_eq!(c.sh("cat /etc/apt/sources.list.d/vendor.sources"), source);
    let files = "/etc/apt/sources.list.d/vendor.sources /etc/apt/keyrings/vendor.asc";
    assert_eq!(c.sh(&format!("stat -c '%a %U:%G' {files}")), "644 root:root\n644 root:root");
    assert_eq!(c.sh("cmp /etc/apt/keyrings/vendor.asc /root/files/vendor.asc && ls /etc/apt/keyrings"), "vendor.asc");
    // apt itself reads the source as converge wrote it: the package's candidate comes from it.
    assert!(c.sh(&format!("apt-cache policy {PACKAGE}")).contains("file:/srv/repo stable/main"));

    let again = c.apply(&playbook);
    assert!(again.starts_with("No changes."), "{again}");
    assert_eq!(c.sh("wc -l < /root/apt-calls"), "2", "a no-op runs no apt-get");

    let gone = "resources:\n  - apt_repository: vendor\n    state: absent\n";
    let out = c.apply(gone);
    assert!(out.contains("apt_repository:vendor: removed"), "{out}");
    assert_eq!(c.sh("ls -A /etc/apt/keyrings /etc/apt/sources.list.d"), "/etc/apt/keyrings:\n\n/etc/apt/sources.list.d:");
    assert!(c.apply(gone).starts_with("No changes."));
}

fn an_unsigned_repository_or_a_wrong_key_is_refused_with_apts_error() {
    let repo = LocalRepository::build();
    let c = repo.container("an_unsigned_repository_or_a_wrong_key");
    let refused = |playbook: &str| {
        let (code, out, err) = c.converge(&["apply"], playbook);
        assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
        assert!(out.contains("apt_repository:vendor: "), "the source was written: {out}");
        assert_eq!(installed(&c), "", "nothing installed");
        flat(&err)
    };
    let err = refused(&playbook("file:/srv/unsigned", "files/vendor.asc"));
    assert!(err.contains(&format!("apt:{PACKAGE}")), "{err}");
    assert!(err.contains("apt-get update of repository vendor (/etc/apt/sources.list.d/vendor.sources) failed"), "{err}");
    assert!(err.contains("The repository 'file:/srv/unsigned stable Release' is not signed"), "apt's own words: {err}");
    assert!(err.contains("the `key:` of its apt_repository must be the key that signs its Release file"), "{err}");

    let err = refused(&playbook("file:/srv/repo", "files/other.gpg"));
    assert!(err.contains("apt-get update of repository vendor"), "{err}");
    // gpgv (bookworm) says `NO_PUBKEY KEYID`, sqv (trixie) `Missing key FINGERPRINT`.
    let fingerprint = repo.fingerprint("vendor");
    assert!(err.contains(&fingerprint[fingerprint.len() - 16..]), "apt names the key it lacks, {fingerprint}: {err}");
    assert!(err.contains("is not signed"), "{err}");
    assert_eq!(c.sh("ls /etc/apt/keyrings"), "vendor.gpg", "the armored key of the run before is gone");

    // The right key, inline: the repository's lists are fetched again, and the install goes on.
    let armored = std::fs::read_to_string(repo.path("vendor.asc")).unwrap();
    let inline: String = armored.lines().map(|line| format!("      {line}\n")).collect();
    let playbook = playbook("file:/srv/repo", &format!("|\n{inline}")).replace("\n\n  - apt", "\n  - apt");
    let out = c.apply(&playbook);
    assert!(out.contains("apt_repository:vendor: updated") && out.contains(&format!("apt:{PACKAGE}: created")), "{out}");
    assert_eq!(installed(&c), "installed 1.0");
    assert_eq!(c.sh("ls /etc/apt/keyrings && cmp /etc/apt/keyrings/vendor.asc /root/files/vendor.asc"), "vendor.asc");
    assert!(c.apply(&playbook).starts_with("No changes."));
}
