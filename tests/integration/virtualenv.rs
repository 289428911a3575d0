//! `virtualenv` with real venvs and real pip, offline: each test writes small wheels of its own
//! (demo-pkg 1.0, demo-pkg 2.0 which needs helper, helper 1.5) and installs them with `no_index`
//! and `find_links`. Without `--root` they converge the live host inside a temp dir, so they take
//! /run/converge.lock: they run one at a time, and wait out another run's lock.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use crate::support::{Run, Test};

tests![
    creates_installs_and_a_converged_venv_runs_no_process,
    a_version_bump_is_planned_as_an_upgrade_and_applied_once,
    every_file_of_the_venv_belongs_to_its_owner,
    a_broken_requirement_is_an_error_at_its_line_and_column,
    a_pip_failure_stops_the_run_with_pips_message_and_leaves_nothing_half_made,
    recreated_when_broken_or_when_the_interpreter_changed,
    absent_removes_a_venv_but_never_a_directory_that_is_not_one,
    under_root_the_venv_is_made_inside_it_with_chroot_and_triggers_its_unit,
    the_interpreter_is_found_as_its_owner_would_and_one_it_cannot_run_is_named,
    uv_and_pip_make_the_same_venv_and_each_finds_the_others_converged,
    a_uv_venv_belongs_to_its_owner_and_auto_finds_uv_on_the_path,
    installer_uv_without_uv_is_an_error_at_its_line,
    two_independent_venvs_are_built_at_once_and_reported_in_playbook_order,
    a_failure_beside_a_parallel_venv_lets_it_finish_and_reports_both,
];

/// A wheel is a zip of the package and its NAME-VERSION.dist-info/{METADATA,WHEEL,RECORD}:
/// written by hand, as setuptools here cannot build one without the `wheel` package or a network.
const MAKE_WHEEL: &str = r#"
import base64, hashlib, sys, zipfile
out, name, version, *requires = sys.argv[1:]
dist = name.replace("-", "_")
info = f"{dist}-{version}.dist-info"
files = {
    f"{dist}/__init__.py": f"VERSION = {version!r}\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    + "".join(f"Requires-Dist: {r}\n" for r in requires),
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: converge-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def digest(text):
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
record = [f"{path},sha256={digest(text)},{len(text.encode())}" for path, text in files.items()]
files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
with zipfile.ZipFile(f"{out}/{dist}-{version}-py3-none-any.whl", "w") as wheel:
    for path, text in files.items():
        wheel.writestr(path, text)
"#;

/// Writes the wheel of `name` `version` into `dir`.
fn wheel(dir: &Path, name: &str, version: &str, requires: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    let status = Command::new("python3")
        .args(["-c", MAKE_WHEEL])
        .arg(dir)
        .args([name, version])
        .args(requires)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "writing the wheel of {name} {version}");
}

/// A test folder with `wheels/`: demo-pkg 1.0, demo-pkg 2.0 (needs helper>=1), helper 1.5.
fn with_wheels() -> Test {
    let test = Test::new();
    let wheels = test.dir.path().join("wheels");
    wheel(&wheels, "demo-pkg", "1.0", &[]);
    wheel(&wheels, "demo-pkg", "2.0", &["helper>=1"]);
    wheel(&wheels, "helper", "1.5", &[]);
    test
}

/// The venv tests run one at a time: they hold the host's run lock for seconds.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LIVE: Mutex<()> = Mutex::new(());
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `converge ARGS` on the live host, waiting while another run (another test module) holds the lock.
fn live(test: &Test, args: &[&str]) -> Run {
    for _ in 0..100 {
        let run = test.run_args(args);
        if !run.stderr.contains("holds the lock") {
            return run;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the run lock stayed taken for 20 s");
}

/// The interpreter that `python3` on PATH runs (a pyenv shim is seen through).
fn real_python() -> PathBuf {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A script that records every call in `log`, then runs `python` with the same arguments.
fn logging_wrapper(path: &Path, python: &Path, log: &Path) {
    let script = format!("#!/bin/sh\necho \"$0 $*\" >> {}\nexec {} \"$@\"\n", log.display(), python.display());
    fs::write(path, script).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn site_packages(venv: &Path) -> PathBuf {
    let lib = venv.join("lib");
    let python = fs::read_dir(&lib).unwrap().next().expect("lib/pythonX.Y").unwrap().path();
    python.join("site-packages")
}

fn installed(venv: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(site_packages(venv))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dist-info") && !n.starts_with("pip-") && !n.starts_with("setuptools-"))
        .collect();
    names.sort();
    names
}

/// A venv of `packages` from the test's wheels, made by pip (whatever uv this machine has).
fn venv_yaml(venv: &Path, extra: &str, packages: &str) -> String {
    installer_yaml(venv, &format!("    installer: pip\n{extra}"), packages)
}

fn installer_yaml(venv: &Path, extra: &str, packages: &str) -> String {
    format!(
        "resources:\n  - virtualenv: {}\n{extra}    packages: {packages}\n    no_index: true\n    find_links: [wheels]\n",
        venv.display()
    )
}

fn creates_installs_and_a_converged_venv_runs_no_process() {
    require!(Root); // without --root, apply takes /run/converge.lock
    let _one = one_at_a_time();
    let test = with_wheels();
    let dir = test.dir.path().to_path_buf();
    let (log, venv) = (dir.join("python.log"), dir.join("venv"));
    let python = real_python();
    logging_wrapper(&dir.join("python"), &python, &log);
    let test = test.playbook(&venv_yaml(
        &venv,
        &format!("    python: {}\n", dir.join("python").display()),
        "[\"demo-pkg==1.0\"]",
    ));

    let run = live(&test, &["apply", "{playbook}"]).success();
    assert!(run.stdout.contains("+ virtualenv:") && run.stdout.contains("install: demo-pkg==1.0"), "{}", run.stdout);
    assert!(run.stdout.contains("/venv: created"), "{}", run.stdout);
    assert_eq!(installed(&venv), ["demo_pkg-1.0.dist-info"]);
    let freeze = Command::new(venv.join("bin/python")).args(["-m", "pip", "freeze"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&freeze.stdout), "demo-pkg==1.0\n", "pip agrees");
    assert!(fs::read_to_string(&log).unwrap().contains("-m venv"), "the venv was made by `python:`");

    // From now on every interpreter of the venv records its calls too: bin/python* lead to a
    // wrapper. A converged venv must run neither them nor `python:`.
    logging_wrapper(&dir.join("venv-python"), &python, &log);
    let links: Vec<(PathBuf, PathBuf)> = fs::read_dir(venv.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("python"))
        .map(|p| (fs::read_link(&p).unwrap(), p))
        .collect();
    assert!(links.len() >= 2, "bin/python and bin/python3 at least: {links:?}");
    for (_, link) in &links {
        fs::remove_file(link).unwrap();
        std::os::unix::fs::symlink(dir.join("venv-python"), link).unwrap();
    }
    let calls = fs::read_to_string(&log).unwrap();
    let run = test.run_args(&["plan", "{playbook}"]).code(0);
    assert!(run.stdout.starts_with("No changes. The host matches the playbook."), "{}", run.stdout);
    let run = live(&test, &["apply", "{playbook}"]).success();
    assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
    assert_eq!(fs::read_to_string(&log).unwrap(), calls, "no python process ran");
    for (target, link) in &links {
        fs::remove_file(link).unwrap();
        std::os::unix::fs::symlink(target, link).unwrap();
    }
    let run = live(&test, &["apply", "{playbook}"]).success();
    assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
}

fn a_version_bump_is_planned_as_an_upgrade_and_applied_once() {
    require!(Root);
    let _one = one_at_a_time();
    let test = with_wheels();
    let venv = test.dir.path().join("venv");
    let test = test.playbook(&venv_yaml(&venv, "", "[\"Demo_Pkg==1.0\"]"));
    live(&test, &["apply", "{playbook}"]).success();
    assert_eq!(installed(&venv), ["demo_pkg-1.0.dist-info"]);

    let test = test.playbook(&venv_yaml(&venv, "", "[\"demo-pkg==2.0\"]"));
    let run = test.run_args(&["plan", "{playbook}"]).code(2);
    insta::assert_snapshot!("upgrade_plan", run.out());
    let run = live(&test, &["apply", "{playbook}"]).success();
    assert!(
        run.stdout.contains(
            "virtualenv:[TMP]/venv: updated".replace("[TMP]", &test.dir.path().display().to_string()).as_str()
        ),
        "{}",
        run.stdout
    );
    assert_eq!(installed(&venv), ["demo_pkg-2.0.dist-info", "helper-1.5.dist-info"]);
    test.run_args(&["plan", "{playbook}"]).code(0);

    // Back to 1.0 with `exact`: helper is extraneous then, and uninstalled.
    let test = test.playbook(&venv_yaml(&venv, "    exact: true\n", "[\"demo-pkg==1.0\"]"));
    let run = test.run_args(&["plan", "{playbook}"]).code(2);
    insta::assert_snapshot!("downgrade_exact_plan", run.out());
    live(&test, &["apply", "{playbook}"]).success();
    assert_eq!(installed(&venv), ["demo_pkg-1.0.dist-info"]);
    let run = test.run_args(&["plan", "{playbook}"]).code(0);
    assert!(run.stdout.starts_with("No changes."), "{}", run.stdout);
}

/// A user of the build machine, removed with its home when dropped.
struct TempUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TempUser {
    fn new() -> TempUser {
        let name = format!("cvenv{}", std::process::id());
        let status = Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", &name]).status().unwrap();
        assert!(status.success(), "useradd {name}");
        let id = |flag: &str| {
            let out = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
        };
        TempUser { uid: id("-u"), gid: id("-g"), name }
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["--remove", &self.name]).status();
    }
}

/// The first `python3` on PATH that `user` can run with its venv module (a pyenv under /root
/// is out of reach of other users).
fn python_for(user: &TempUser) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|dir| Path::new(dir).join("python3"))
        .filter(|p| p.exists())
        .find(|p| {
            Command::new(p)
                .args(["-c", "import venv, ensurepip"])
                .current_dir("/")
                .uid(user.uid)
                .gid(user.gid)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("a python3 that an ordinary user can run")
}

fn owners(path: &Path, found: &mut Vec<(PathBuf, u32, u32)>) {
    let meta = fs::symlink_metadata(path).unwrap();
    found.push((path.to_path_buf(), meta.uid(), meta.gid()));
    if meta.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            owners(&entry.unwrap().path(), found);
        }
    }
}

fn assert_owned_by(venv: &Path, (uid, gid): (u32, u32)) {
    let mut found = Vec::new();
    owners(venv, &mut found);
    assert!(found.len() > 100, "a venv with pip has many files");
    let others: Vec<_> = found.iter().filter(|(_, u, g)| (*u, *g) != (uid, gid)).collect();
    assert!(others.is_empty(), "not owned by {uid}:{gid}: {:?}", &others[..others.len().min(5)]);
}

fn every_file_of_the_venv_belongs_to_its_owner() {
    require!(Root);
    let _one = one_at_a_time();
    let user = TempUser::new();
    let test = with_wheels();
    // The owner must reach the venv and the wheels: the temp dir is 0700.
    fs::set_permissions(test.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let venv = test.dir.path().join("venv");
    let python = python_for(&user);
    let extra = format!("    owner: {}\n    python: {}\n", user.name, python.display());
    let test = test.playbook(&venv_yaml(&venv, &extra, "[\"demo-pkg==2.0\"]"));
    let run = live(&test, &["apply", "{playbook}"]).success();
    assert!(run.stdout.contains(&format!("owner: {}", user.name)), "{}", run.stdout);
    assert_eq!(installed(&venv), ["demo_pkg-2.0.dist-info", "helper-1.5.dist-info"]);
    assert_owned_by(&venv, (user.uid, user.gid));

    // Someone chowns it to root: the owner is put back on every file.
    Command::new("chown").args(["-R", "root:root"]).arg(&venv).status().unwrap();
    let run = test.run_args(&["plan", "{playbook}"]).code(2);
    assert!(run.stdout.contains(&format!("owner: root -> {}", user.name)), "{}", run.stdout);
    live(&test, &["apply", "{playbook}"]).success();
    assert_owned_by(&venv, (user.uid, user.gid));
    test.run_args(&["plan", "{playbook}"]).code(0);
}

fn a_broken_requirement_is_an_error_at_its_line_and_column() {
    let test = Test::new()
        .playbook("resources:\n  - virtualenv: /srv/venv\n    packages:\n      - \"django>=4.2\"\n      - \"requests>=2.0,<<3\"\n      - flask[async)\n    requirements: requirements.txt\n")
        .file("requirements.txt", "# pinned\ngunicorn==22.0.0\nuvicorn[standard] >= 0.29 ; python_version >= \"3.8\"\nbad name==1\n--index-url https://example.org/simple\n");
    let run = test.validate().code(1);
    assert_eq!(run.stdout, "", "nothing runs");
    insta::assert_snapshot!(run.err());
}

fn a_pip_failure_stops_the_run_with_pips_message_and_leaves_nothing_half_made() {
    require!(Root);
    let _one = one_at_a_time();
    let test = with_wheels();
    let dir = test.dir.path().to_path_buf();
    let venv = dir.join("venv");
    let yaml = format!(
        "resources:\n  - file: {before}\n    content: a\n  - virtualenv: {venv}\n    packages: [\"demo-pkg==1.0\", \"no-such-pkg==1.0\"]\n    no_index: true\n    find_links: [wheels]\n  - file: {after}\n    content: b\n    after: [\"virtualenv:{venv}\"]\n",
        before = dir.join("before.txt").display(),
        after = dir.join("after.txt").display(),
        venv = venv.display(),
    );
    let test = test.playbook(&yaml);
    let run = live(&test, &["apply", "{playbook}"]).code(1);
    assert!(run.stderr.contains("pip install failed (exit status: 1)"), "{}", run.stderr);
    assert!(run.stderr.contains("No matching distribution found for no-such-pkg==1.0"), "{}", run.stderr);
    assert!(run.stdout.contains("Applied 1 of 3 before the failure: file:"), "{}", run.stdout);
    assert!(!venv.exists(), "the new venv is removed again");
    assert!(!dir.join("after.txt").exists(), "nothing that waits for it (`after:`) ran");

    // A venv that exists keeps what it had when an install into it fails.
    let good = test.playbook(&venv_yaml(&venv, "", "[\"demo-pkg==1.0\"]"));
    live(&good, &["apply", "{playbook}"]).success();
    let bad = good.playbook(&venv_yaml(&venv, "", "[\"demo-pkg==2.0\", \"no-such-pkg\"]"));
    let run = live(&bad, &["apply", "{playbook}"]).code(1);
    assert!(run.stderr.contains("No matching distribution found for no-such-pkg"), "{}", run.stderr);
    assert_eq!(installed(&venv), ["demo_pkg-1.0.dist-info"]);
    let good = bad.playbook(&venv_yaml(&venv, "", "[\"demo-pkg==1.0\"]"));
    good.run_args(&["plan", "{playbook}"]).code(0);

    // pip exits 0 but installs nothing: the venv would never converge, so that fails too.
    let dry = good.playbook(&venv_yaml(&venv, "    pip_args: [--dry-run]\n", "[\"demo-pkg==2.0\"]"));
    let run = live(&dry, &["apply", "{playbook}"]).code(1);
    let message = "pip succeeded, but the venv still differs from the playbook: upgrade: demo-pkg 1.0 -> demo-pkg==2.0";
    let flat: Vec<&str> = run.stderr.split_whitespace().filter(|w| *w != "│").collect();
    assert!(flat.join(" ").contains(message), "{}", run.stderr);
    assert_eq!(installed(&venv), ["demo_pkg-1.0.dist-info"]);
}

fn recreated_when_broken_or_when_the_interpreter_changed() {
    require!(Root);
    let _one = one_at_a_time();
    let test = with_wheels();
    let dir = test.dir.path().to_path_buf();
    let venv = dir.join("venv");
    // A second interpreter: a copy of the real one at another path.
    let python = fs::canonicalize(real_python()).unwrap();
    let other = dir.join("other").join(python.file_name().unwrap());
    fs::create_dir_all(other.parent().unwrap()).unwrap();
    fs::copy(&python, &other).unwrap();

    let with_python = |p: &Path| venv_yaml(&venv, &format!("    python: {}\n", p.display()), "[\"demo-pkg==1.0\"]");
    let test = test.playbook(&with_python(&other));
    live(&test, &["apply", "{playbook}"]).success();
    let test = test.playbook(&with_python(&python));
    let run = test.run_args(&["plan", "{playbook}"]).code(2);
    let reason = format!("recreate: the interpreter changed: {} (", other.display());
    assert!(run.stdout.contains(&reason) && run.stdout.contains(&format!("-> {}", python.display())), "{}", run.stdout);
    live(&test, &["apply", "{playbook}"]).success();
    let cfg = fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    assert!(cfg.contains(&format!("executable = {}", python.display())), "{cfg}");
    assert_eq!(installed(&venv), ["demo_pkg-1.0.dist-info"]);
    test.run_args(&["plan", "{playbook}"]).code(0);

    // Its python link dangles: broken, recreated.
    fs::remove_file(venv.join("bin/python")).unwrap();
    std::os::unix::fs::symlink("/nowhere/python3", venv.join("bin/python")).unwrap();
    let run = test.run_args(&["plan", "{playbook}"]).code(2);
    assert!(
        run.stdout.contains("recreate: it is broken: bin/python leads to /nowhere/python3, which does not exist"),
        "{}",
        run.stdout
    );
    live(&test, &["apply", "{playbook}"]).success();
    assert_eq!(installed(&venv), ["demo_pkg-1.0.dist-info"]);
    test.run_args(&["plan", "{playbook}"]).code(0);
}

fn absent_removes_a_venv_but_never_a_directory_that_is_not_one() {
    require!(Root);
    let _one = one_at_a_time();
    let test = with_wheels();
    let venv = test.dir.path().join("venv");
    let test = test.playbook(&venv_yaml(&venv, "", "[]"));
    live(&test, &["apply", "{playbook}"]).success();
    let absent = format!("resources:\n  - virtualenv: {}\n    state: absent\n", venv.display());
    let test = test.playbook(&absent);
    let run = live(&test, &["apply", "{playbook}"]).success();
    assert!(run.stdout.contains("- virtualenv:"), "{}", run.stdout);
    assert!(!venv.exists());

    fs::create_dir_all(&venv).unwrap();
    fs::write(venv.join("data.txt"), "keep me").unwrap();
    let run = test.run_args(&["plan", "{playbook}"]).code(1);
    assert!(run.stderr.contains("no pyvenv.cfg, so it is not a virtualenv"), "{}", run.stderr);
    assert_eq!(fs::read_to_string(venv.join("data.txt")).unwrap(), "keep me");
}

/// An offline root with the build machine's Debian python3 in it: its binary, standard library,
/// the wheels ensurepip installs from, and the shared libraries they load (hard links where the
/// file system allows, copies otherwise).
fn python_root(root: &Path) {
    require!(PythonVenv);
    let real = fs::canonicalize("/usr/bin/python3").unwrap();
    let version = real.file_name().unwrap().to_string_lossy().into_owned();
    let stdlib = crate::support::python_stdlib().unwrap();
    let copy = |from: &Path| {
        let to = root.join(from.strip_prefix("/").unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        let linked = Command::new("cp").arg("-alL").arg(from).arg(&to).status().unwrap().success();
        if !linked {
            assert!(Command::new("cp").arg("-aL").arg(from).arg(&to).status().unwrap().success());
        }
    };
    copy(&real);
    std::os::unix::fs::symlink(&version, root.join("usr/bin/python3")).unwrap();
    // Like any root filesystem, it has a /tmp (pip unpacks wheels there).
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    copy(&stdlib);
    if Path::new("/usr/share/python-wheels").exists() {
        copy(Path::new("/usr/share/python-wheels"));
    }
    let mut ldd = Command::new("ldd");
    ldd.arg(&real);
    let dynload = stdlib.join("lib-dynload");
    for entry in fs::read_dir(&dynload).into_iter().flatten() {
        ldd.arg(entry.unwrap().path());
    }
    let out = String::from_utf8_lossy(&ldd.output().unwrap().stdout).into_owned();
    let mut libs: Vec<&str> = out.split_whitespace().filter(|w| w.starts_with('/') && !w.ends_with(':')).collect();
    libs.sort_unstable();
    libs.dedup();
    for lib in libs {
        if !root.join(lib.trim_start_matches('/')).exists() {
            copy(Path::new(lib));
        }
    }
}

fn under_root_the_venv_is_made_inside_it_with_chroot_and_triggers_its_unit() {
    require!(Root);
    let test = with_wheels().with_accounts();
    python_root(&test.root());
    // pip runs inside the root: the wheels must be there too.
    let status =
        Command::new("cp").arg("-r").arg(test.dir.path().join("wheels")).arg(test.host_path("/wheels")).status();
    assert!(status.unwrap().success());
    let yaml = |version: &str| {
        format!(
            "resources:\n  - user: venvuser\n  - directory: /srv\n  - virtualenv: /srv/venv\n    owner: venvuser\n    python: /usr/bin/python3\n    packages: [\"demo-pkg=={version}\"]\n    no_index: true\n    find_links: [/wheels]\n  - unit: app.service\n    content: \"[Service]\\nExecStart=/srv/venv/bin/python -m demo_pkg\\n\"\n    restart_triggers: [\"virtualenv:/srv/venv\"]\n"
        )
    };
    let test = test.playbook(&yaml("1.0"));
    let run = test.apply().success();
    assert!(run.stdout.contains("virtualenv:/srv/venv: created"), "{}", run.stdout);
    let venv = test.host_path("/srv/venv");
    assert_eq!(installed(&venv), ["demo_pkg-1.0.dist-info"]);
    let passwd = fs::read_to_string(test.host_path("/etc/passwd")).unwrap();
    let line = passwd.lines().find(|l| l.starts_with("venvuser:")).unwrap();
    let ids: Vec<u32> = line.split(':').skip(2).take(2).map(|f| f.parse().unwrap()).collect();
    assert_owned_by(&venv, (ids[0], ids[1]));
    let cfg = fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    assert!(cfg.contains("home = /usr/bin"), "paths inside the root, as it sees them: {cfg}");
    assert!(test.plan().code(0).stdout.starts_with("No changes."));

    let test = test.playbook(&yaml("2.0"));
    let run = test.plan().code(2);
    assert!(run.stdout.contains("upgrade: demo-pkg 1.0 -> demo-pkg==2.0"), "{}", run.stdout);
    assert!(run.stdout.contains("restart app.service   (virtualenv:/srv/venv changed)"), "{}", run.stdout);
    let run = test.apply().success();
    assert!(run.stdout.contains("restart app.service: skipped"), "{}", run.stdout);
    assert_eq!(installed(&venv), ["demo_pkg-2.0.dist-info", "helper-1.5.dist-info"]);
    test.plan().code(0);
}

/// As root with a private interpreter first on PATH (pyenv's shims under /root are the common
/// case), a venv of another owner is made with the python3 that owner would find on the system
/// PATH; named by its path, the private one is an error that says the owner cannot execute it and
/// what to write instead.
fn the_interpreter_is_found_as_its_owner_would_and_one_it_cannot_run_is_named() {
    require!(Root);
    let _one = one_at_a_time();
    let user = TempUser::new();
    let test = Test::new();
    fs::set_permissions(test.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let private = test.dir.path().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let log = test.dir.path().join("private-python.log");
    logging_wrapper(&private.join("python3"), Path::new("/usr/bin/python3"), &log);
    let path = format!("{}:{}", private.display(), std::env::var("PATH").unwrap_or_default());

    let venv = test.dir.path().join("venv");
    let test = test.playbook(&format!("resources:\n  - virtualenv: {}\n    owner: {}\n", venv.display(), user.name));
    let output = test.command(&["apply", "{playbook}"]).env("PATH", &path).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!log.exists(), "converge ran the private python3 for another owner");
    assert!(venv.join("bin/python").exists());
    assert_owned_by(&venv, (user.uid, user.gid));

    let other = test.dir.path().join("venv2");
    let yaml = format!(
        "resources:\n  - virtualenv: {}\n    owner: {}\n    python: {}\n",
        other.display(),
        user.name,
        private.join("python3").display()
    );
    let test = test.playbook(&yaml);
    let run = test.run_args(&["apply", "{playbook}"]).code(1);
    // The message as words, without miette's line breaks.
    let said: String = run.stderr.replace("\n  │ ", "").split_whitespace().collect();
    let expected =
        format!("which its owner {} cannot execute (no search permission on {}", user.name, private.display());
    let expected: String = expected.split_whitespace().collect();
    assert!(said.contains(&expected), "no `{expected}` in:\n{}", run.stderr);
    assert!(said.contains("`python:/usr/bin/python3`"), "{}", run.stderr);
    assert!(!other.exists(), "nothing is left of the failed venv");
}

/// `installer: uv` with the cached uv.
fn uv_yaml(uv: &Path) -> String {
    format!("    installer: uv\n    uv: {}\n", uv.display())
}

/// What the observation reads of a venv: its pyvenv.cfg's version, where bin/python leads, and
/// the METADATA of its distributions (pip's own aside).
fn observed(venv: &Path) -> (String, PathBuf, Vec<(String, String)>) {
    let cfg = fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    let version = cfg
        .lines()
        .find_map(|l| l.strip_prefix("version = ").or_else(|| l.strip_prefix("version_info = ")))
        .unwrap()
        .to_owned();
    let metadata = installed(venv)
        .into_iter()
        .map(|info| (fs::read_to_string(site_packages(venv).join(&info).join("METADATA")).unwrap(), info))
        .map(|(text, info)| (info, text))
        .collect();
    (version, fs::canonicalize(venv.join("bin/python")).unwrap(), metadata)
}

fn uv_and_pip_make_the_same_venv_and_each_finds_the_others_converged() {
    require!(Root, Uv);
    let _one = one_at_a_time();
    let uv = crate::support::uv_binary().unwrap();
    let test = with_wheels();
    let (by_uv, by_pip) = (test.dir.path().join("by-uv"), test.dir.path().join("by-pip"));
    let packages = "[\"demo-pkg==2.0\"]";
    let test = test.playbook(&installer_yaml(&by_uv, &uv_yaml(&uv), packages));
    let run = test.run_args(&["plan", "{playbook}"]).code(2);
    assert!(run.stdout.contains(&format!("installer: uv ({})", uv.display())), "the plan says uv: {}", run.stdout);
    let run = live(&test, &["apply", "{playbook}"]).success();
    assert!(run.stdout.contains("/by-uv: created"), "{}", run.stdout);
    assert!(fs::read_to_string(by_uv.join("pyvenv.cfg")).unwrap().contains("uv = "), "uv made it");
    let test = test.playbook(&installer_yaml(&by_pip, "    installer: pip\n", packages));
    let run = live(&test, &["apply", "{playbook}"]).success();
    assert!(run.stdout.contains("installer: pip"), "{}", run.stdout);

    assert_eq!(installed(&by_uv), ["demo_pkg-2.0.dist-info", "helper-1.5.dist-info"]);
    assert_eq!(observed(&by_uv), observed(&by_pip), "the same venv to the observation");

    // Each installer finds the other's venv converged: no change, no process.
    let test = test.playbook(&installer_yaml(&by_uv, "    installer: pip\n", packages));
    let run = live(&test, &["apply", "{playbook}"]).success();
    assert!(run.stdout.starts_with("No changes."), "pip on uv's venv: {}", run.stdout);
    let test = test.playbook(&installer_yaml(&by_pip, &uv_yaml(&uv), packages));
    let run = live(&test, &["apply", "{playbook}"]).success();
    assert!(run.stdout.starts_with("No changes."), "uv on pip's venv: {}", run.stdout);

    // And each can change the other's: pip installs into uv's venv (which has no pip of its own).
    let test = test.playbook(&installer_yaml(&by_uv, "    installer: pip\n", "[\"demo-pkg==1.0\"]"));
    live(&test, &["apply", "{playbook}"]).success();
    let test = test.playbook(&installer_yaml(&by_pip, &uv_yaml(&uv), "[\"demo-pkg==1.0\"]"));
    live(&test, &["apply", "{playbook}"]).success();
    assert_eq!(observed(&by_uv).2, observed(&by_pip).2);
    assert_eq!(installed(&by_uv), ["demo_pkg-1.0.dist-info", "helper-1.5.dist-info"]);
    test.run_args(&["plan", "{playbook}"]).code(0);
}

fn a_uv_venv_belongs_to_its_owner_and_auto_finds_uv_on_the_path() {
    require!(Root, Uv);
    let _one = one_at_a_time();
    let user = TempUser::new();
    let uv = crate::support::uv_binary().unwrap();
    let test = with_wheels();
    fs::set_permissions(test.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let venv = test.dir.path().join("venv");
    let python = python_for(&user);
    let extra = format!("    owner: {}\n    python: {}\n", user.name, python.display());
    let test = test.playbook(&installer_yaml(&venv, &extra, "[\"demo-pkg==2.0\"]"));
    // No `installer:`, no `uv:`: the PATH of the run has uv, so uv makes it.
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", uv.parent().unwrap().display());
    let run = test.command(&["apply", "{playbook}"]).env("PATH", &path).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains(&format!("installer: uv ({})", uv.display())), "{stdout}");
    assert!(fs::read_to_string(venv.join("pyvenv.cfg")).unwrap().contains("uv = "), "uv made it");
    assert_eq!(installed(&venv), ["demo_pkg-2.0.dist-info", "helper-1.5.dist-info"]);
    let mut found = Vec::new();
    owners(&venv, &mut found);
    let others: Vec<_> = found.iter().filter(|(_, u, g)| (*u, *g) != (user.uid, user.gid)).collect();
    assert!(found.len() > 10 && others.is_empty(), "not the owner's: {others:?}");
    // Without uv on the PATH, auto is pip, and pip finds uv's venv converged.
    let run = test.command(&["plan", "{playbook}"]).env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").output().unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stdout));
}

fn installer_uv_without_uv_is_an_error_at_its_line() {
    require!(Root);
    let test = with_wheels();
    let venv = test.dir.path().join("venv");
    let test = test.playbook(&installer_yaml(&venv, "    installer: uv\n", "[\"demo-pkg==1.0\"]"));
    let run = test.command(&["plan", "{playbook}"]).env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("uv is asked for, but no `uv` on the PATH"), "{stderr}");
    assert!(stderr.contains("playbook.yml:3:16"), "at the line and column of `installer: uv`: {stderr}");
    assert!(!venv.exists(), "nothing was made");
    // A `uv:` that is not there is an error at its own line.
    let test = test.playbook(&installer_yaml(&venv, "    uv: /nowhere/uv\n", "[\"demo-pkg==1.0\"]"));
    let run = test.run_args(&["apply", "{playbook}"]).code(1);
    assert!(run.stderr.contains("/nowhere/uv does not exist") && run.stderr.contains(":3:9"), "{}", run.stderr);
    assert!(!venv.exists(), "nothing was made");
    // A pip argument uv has no equivalent of, with `installer: uv`: at validate already.
    let yaml = "    installer: uv\n    pip_args: --trusted-host example.org\n";
    let test = test.playbook(&installer_yaml(&venv, yaml, "[\"demo-pkg==1.0\"]"));
    let run = test.validate().code(1);
    assert!(run.stderr.contains("uv has no equivalent of the pip argument `--trusted-host`"), "{}", run.stderr);
}

/// A `python` that waits `seconds` before it runs the real one: its venv takes that much longer.
fn slow_python(path: &Path, seconds: u32) {
    let script = format!("#!/bin/sh\nsleep {seconds}\nexec {} \"$@\"\n", real_python().display());
    fs::write(path, script).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Two venvs from the test's wheels, `first` and `second`, made by pip; `first` with `extra`.
fn two_venvs(test: &Test, first: &str, second: &str) -> String {
    let dir = test.dir.path();
    let one = installer_yaml(&dir.join("first"), &format!("    installer: pip\n{first}"), "[\"demo-pkg==1.0\"]");
    let two = installer_yaml(&dir.join("second"), &format!("    installer: pip\n{second}"), "[\"helper\"]");
    one + two.trim_start_matches("resources:\n")
}

/// The `applied` records of a JSON stream: id, start and duration in ms.
fn applied_records(stdout: &str) -> Vec<(String, u64, u64)> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["type"] == "applied")
        .map(|r| {
            let ms = |key: &str| r[key].as_u64().unwrap_or_else(|| panic!("{key} in {r}"));
            (r["id"].as_str().unwrap().to_owned(), ms("started_ms"), ms("duration_ms"))
        })
        .collect()
}

fn two_independent_venvs_are_built_at_once_and_reported_in_playbook_order() {
    require!(Root);
    let _one = one_at_a_time();
    let test = with_wheels();
    let python = test.dir.path().join("slow-python");
    // The first is slower: it usually finishes last, and is reported first all the same.
    slow_python(&python, 3);
    let yaml = two_venvs(&test, &format!("    python: {}\n", python.display()), "");
    let test = test.playbook(&yaml);
    let run = live(&test, &["apply", "{playbook}", "--output", "json"]).success();
    let records = applied_records(&run.stdout);
    let ids: Vec<&str> = records.iter().map(|(id, ..)| id.rsplit('/').next().unwrap()).collect();
    assert_eq!(ids, ["first", "second"], "in playbook order: {}", run.stdout);
    let (_, start_a, took_a) = records[0];
    let (_, start_b, took_b) = records[1];
    assert!(took_a >= 3000, "the first waited for its python: {took_a} ms");
    assert!(start_b < start_a + took_a && start_a < start_b + took_b, "they overlap: {records:?}");
    let summary = run.stdout.lines().find(|l| l.contains("\"type\":\"apply\"")).unwrap();
    assert!(summary.contains("\"slowest\":[{\"duration_ms\":"), "{summary}");

    // For people: the same order, with -v each one's time, and the slowest named at the end.
    for venv in ["first", "second"] {
        fs::remove_dir_all(test.dir.path().join(venv)).unwrap();
    }
    let run = live(&test, &["apply", "{playbook}", "-v"]).success();
    let first = run.stdout.find("/first: created in ").expect(&run.stdout);
    let second = run.stdout.find("/second: created in ").expect(&run.stdout);
    assert!(first < second, "{}", run.stdout);
    assert!(run.stdout.contains("\nSlowest: virtualenv:"), "{}", run.stdout);
}

fn a_failure_beside_a_parallel_venv_lets_it_finish_and_reports_both() {
    require!(Root);
    let _one = one_at_a_time();
    let test = with_wheels();
    let python = test.dir.path().join("slow-python");
    slow_python(&python, 2);
    // The first fails at once (no such package), while the second, slower, is being built.
    let yaml = two_venvs(&test, "    pip_args: [--no-deps]\n", &format!("    python: {}\n", python.display()))
        .replacen("demo-pkg==1.0", "no-such-package==9", 1);
    let test = test.playbook(&yaml);
    let run = live(&test, &["apply", "{playbook}"]).code(1);
    assert!(run.stderr.contains("/first: pip install failed"), "{}", run.stderr);
    assert!(run.stdout.contains("/second: created"), "the other finished and is reported: {}", run.stdout);
    assert!(run.stdout.contains("Applied 1 of 2 before the failure"), "{}", run.stdout);
    assert!(!test.dir.path().join("first").exists(), "the failed one left nothing");
    assert_eq!(installed(&test.dir.path().join("second")), ["helper-1.5.dist-info"]);
}
