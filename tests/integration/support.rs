//! `Test`: a fluent builder around the real binary, a playbook folder and an offline root.
//!
//! ```ignore
//! Test::new().playbook("resources: ...").apply().success().expect_file("/etc/motd", "hi\n");
//! ```

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Test {
    pub dir: tempfile::TempDir,
}

/// What a run printed and how it exited, with temp paths replaced by `[TMP]`.
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
    test_dir: PathBuf,
}

impl Test {
    pub fn new() -> Test {
        let dir = tempfile::Builder::new().prefix("converge-test").tempdir().expect("a temp dir");
        // Like any root filesystem, it has an /etc.
        fs::create_dir_all(dir.path().join("root/etc")).unwrap();
        Test { dir }
    }

    /// The offline root that `--root` points at.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A path of the offline root (`/etc/motd` -> TMP/root/etc/motd).
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    pub fn playbook_path(&self) -> PathBuf {
        self.dir.path().join("playbook.yml")
    }

    pub fn playbook(self, yaml: &str) -> Test {
        self.file("playbook.yml", yaml)
    }

    /// A file beside the playbook (a template, a source file, a vars file).
    pub fn file(self, relative: &str, content: &str) -> Test {
        let path = self.dir.path().join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        self
    }

    /// A file that is on the host before converge runs.
    pub fn host_file(self, path: &str, content: &str) -> Test {
        let path = self.host_path(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        self
    }

    /// Copies the build machine's account files into the root, so that its users (root,
    /// nobody, www-data) exist there, as in any Debian image.
    pub fn with_accounts(self) -> Test {
        fs::create_dir_all(self.host_path("/etc")).unwrap();
        for file in ["passwd", "group", "shadow", "gshadow"] {
            let _ = fs::copy(Path::new("/etc").join(file), self.host_path(&format!("/etc/{file}")));
        }
        self
    }

    /// The binary with the given arguments; `{playbook}` and `{root}` are filled in.
    /// `CONVERGE_TEST_BIN` runs another build instead (to show that a test fails on an old one).
    pub fn command(&self, args: &[&str]) -> Command {
        let binary = std::env::var_os("CONVERGE_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_converge").into());
        let mut command = Command::new(binary);
        let playbook = self.playbook_path().display().to_string();
        let root = self.root().display().to_string();
        command.args(args.iter().map(|a| a.replace("{playbook}", &playbook).replace("{root}", &root)));
        // Tests that apply to the live host share /run/converge.lock: wait for each other.
        command.env_remove("NO_COLOR").env("CONVERGE_LOCK_WAIT", "300").current_dir(self.dir.path());
        command
    }

    /// Runs a command of [`Test::command`] (with its environment changed, say).
    pub fn run_command(&self, mut command: Command) -> Run {
        let output = command.output().expect("the converge binary runs");
        Run {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            code: output.status.code().unwrap_or(-1),
            test_dir: self.dir.path().to_path_buf(),
        }
    }

    pub fn run_args(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("the converge binary runs");
        // A playbook that converge accepts is valid against `converge schema` too.
        if matches!(args.first(), Some(&("plan" | "apply" | "validate"))) && matches!(output.status.code(), Some(0 | 2))
        {
            self.check_against_schema();
        }
        Run {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            code: output.status.code().unwrap_or(-1),
            test_dir: self.dir.path().to_path_buf(),
        }
    }

    /// Asserts that the playbook and the modules of its `modules/` folder are valid against the
    /// schema.
    fn check_against_schema(&self) {
        let mut files = vec![self.playbook_path()];
        if let Ok(dir) = fs::read_dir(self.dir.path().join("modules")) {
            files.extend(dir.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "yml")));
        }
        for file in files {
            let Ok(text) = fs::read_to_string(&file) else { continue };
            let errors = schema_errors(&text);
            assert!(
                errors.is_empty(),
                "converge accepts {} but the schema does not: {errors:#?}\n{text}",
                file.display()
            );
        }
    }

    pub fn plan(&self) -> Run {
        self.run_args(&["plan", "{playbook}", "--root", "{root}"])
    }

    pub fn apply(&self) -> Run {
        self.run_args(&["apply", "{playbook}", "--root", "{root}"])
    }

    pub fn validate(&self) -> Run {
        self.run_args(&["validate", "{playbook}"])
    }

    /// Asserts a file's content in the root after a run.
    pub fn expect_file(&self, path: &str, content: &str) -> &Test {
        let actual = fs::read_to_string(self.host_path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(actual, content, "content of {path}");
        self
    }

    /// Asserts mode, uid and gid as stat(2) reports them.
    pub fn expect_stat(&self, path: &str, mode: u32, uid: u32, gid: u32) -> &Test {
        let meta = fs::symlink_metadata(self.host_path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.mode() & 0o7777, mode, "mode of {path}: {:o}", meta.mode() & 0o7777);
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "owner of {path}");
        self
    }

    pub fn expect_absent(&self, path: &str) -> &Test {
        assert!(fs::symlink_metadata(self.host_path(path)).is_err(), "{path} should not exist");
        self
    }
}

impl Run {
    pub fn success(self) -> Run {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    pub fn code(self, code: i32) -> Run {
        assert_eq!(self.code, code, "exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// stdout with the test's temp dir as `[TMP]`, for snapshots.
    pub fn out(&self) -> String {
        self.stdout.replace(&self.test_dir.display().to_string(), "[TMP]")
    }

    /// stderr with the test's temp dir as `[TMP]`, for snapshots.
    pub fn err(&self) -> String {
        self.stderr.replace(&self.test_dir.display().to_string(), "[TMP]")
    }
}

/// What a test needs of the machine, for [`require!`](crate::require): each is checked when the
/// test reaches it.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// Root: tests that create users, chown, or apply without `--root` (/run/converge.lock).
    Root,
    /// systemd-nspawn, to boot the end-to-end containers (harness/install-deps.sh).
    Nspawn,
    /// A program on PATH (`script`, `qemu-system-x86_64`, `vagrant`, ...).
    Tool(&'static str),
    /// nginx, for `nginx -t` in the nginx_site tests (`apt-get install nginx`).
    Nginx,
    /// Debian's /usr/bin/python3 with its venv and ensurepip modules (python3-venv).
    PythonVenv,
    /// No system bus (/run/dbus/system_bus_socket), as on CI's machine.
    NoSystemBus,
    /// The static (musl) converge that `.ci/run` builds.
    StaticBuild,
    /// A converge linked against glibc (the usual build), not a static one.
    DynamicBuild,
    /// uv, as harness/uv.sh caches it ([`uv_binary`]).
    Uv,
}

impl Need {
    /// Why the machine lacks this, or Ok.
    fn check(self) -> Result<(), String> {
        let missing = |met: bool, why: String| if met { Ok(()) } else { Err(why) };
        match self {
            Need::Root => missing(is_root(), "needs root, as CI runs the tests".into()),
            Need::Nspawn => missing(
                Path::new("/usr/bin/systemd-nspawn").exists(),
                "needs systemd-nspawn (harness/install-deps.sh)".into(),
            ),
            Need::Tool(program) => missing(on_path(program), format!("needs {program} on PATH")),
            Need::Nginx => missing(Path::new("/usr/sbin/nginx").exists(), "needs nginx (apt-get install nginx)".into()),
            Need::PythonVenv => missing(
                python_stdlib().is_some_and(|lib| lib.join("venv").exists() && lib.join("ensurepip").exists()),
                "needs Debian's /usr/bin/python3 with its venv module (apt-get install python3-venv)".into(),
            ),
            Need::NoSystemBus => missing(
                !Path::new("/run/dbus/system_bus_socket").exists(),
                "needs a machine without a system bus".into(),
            ),
            Need::StaticBuild => {
                let path = static_binary_path();
                missing(
                    path.exists(),
                    format!(
                        "needs the static build {}: .ci/run builds it (rustup target add ...-musl; \
                         cargo build --release --target ...)",
                        path.display()
                    ),
                )
            }
            Need::Uv => missing(uv_binary().is_some(), "needs uv: harness/uv.sh fetches it from PyPI".into()),
            Need::DynamicBuild => missing(
                converge_is_dynamic(),
                "needs a converge linked against glibc; this one is static already".into(),
            ),
        }
    }
}

/// The payload with which an unmet [`require!`](crate::require) stops a test: the harness reports
/// the test as ignored, with this reason.
pub struct Unmet(pub String);

/// Whether this is CI (`CI` set, as CI services set it, and not to `false` or `0`): there, a test
/// that cannot run fails.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| !ci.is_empty() && ci != "false" && ci != "0")
}

/// Returns if the machine has every need; otherwise stops the test: ignored with the reasons, or
/// failed under CI. Called by [`require!`](crate::require).
#[track_caller]
pub fn require(needs: &[Need]) {
    let unmet: Vec<String> = needs.iter().filter_map(|need| need.check().err()).collect();
    if unmet.is_empty() {
        return;
    }
    let reason = unmet.join("; ");
    if in_ci() {
        panic!("this test cannot run here, and CI must run it: {reason}");
    }
    // Not a panic: no panic message, and the harness tells this payload from a failure.
    std::panic::resume_unwind(Box::new(Unmet(reason)));
}

/// The uv that harness/uv.sh fetched into the cache (CONVERGE_CACHE, else
/// /var/cache/converge-e2e), as uv-VERSION/uv.
pub fn uv_binary() -> Option<PathBuf> {
    let cache =
        std::env::var_os("CONVERGE_CACHE").map_or_else(|| PathBuf::from("/var/cache/converge-e2e"), PathBuf::from);
    let mut found: Vec<PathBuf> = fs::read_dir(cache)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("uv-"))
        .map(|e| e.path().join("uv"))
        .filter(|uv| uv.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Whether `program` is a file in one of PATH's folders.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The standard library folder of Debian's /usr/bin/python3 (/usr/lib/python3.11).
pub fn python_stdlib() -> Option<PathBuf> {
    let real = fs::canonicalize("/usr/bin/python3").ok()?;
    Some(Path::new("/usr/lib").join(real.file_name()?))
}

/// Where `.ci/run` builds the static converge: target/ARCH-unknown-linux-musl/release/converge.
pub fn static_binary_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join(format!("{}-unknown-linux-musl/release/converge", std::env::consts::ARCH))
}

/// Whether the converge under test needs glibc (is not static).
fn converge_is_dynamic() -> bool {
    converge::remote::binary::glibc_needed(Path::new(env!("CARGO_BIN_EXE_converge"))).is_ok_and(|glibc| glibc.is_some())
}

/// Polls `condition` until it holds, for at most `timeout`; whether it held. For what a test
/// waits for (a process, a lock holder, a reload), instead of a fixed sleep.
pub fn wait_until(timeout: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The page that the mission's playbooks (playbooks/gunicorn*.yml) serve, in the scenario tests
/// (scenario_e2e.rs, vm_e2e.rs).
pub const PAGE: &str = "Hello from gunicorn, set up by converge.";

/// The variables that make those playbooks install offline: gunicorn from the wheels that
/// harness/artifacts.sh fetched, copied to /srv/wheels.
pub const OFFLINE: [&str; 4] = ["--var", "wheels=/srv/wheels", "--var", "offline=true"];

/// uid and gid of a user of the build machine.
pub fn ids_of(user: &str) -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd.lines().find(|l| l.starts_with(&format!("{user}:"))).unwrap_or_else(|| panic!("no user {user}"));
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// What the JSON Schema of `converge schema` finds wrong with a playbook or module (YAML text),
/// checked by the jsonschema crate; empty when it is valid.
pub fn schema_errors(yaml: &str) -> Vec<String> {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = VALIDATOR
        .get_or_init(|| jsonschema::draft202012::new(&converge::kinds::schema::schema()).expect("a valid schema"));
    let instance = converge::playbook::yaml_node::Node::parse(yaml).expect("YAML").to_json();
    validator.iter_errors(&instance).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

// ----- the Debian release of the end-to-end containers -----------------------------------------

/// The Debian releases the end-to-end tests boot (harness/README.md, "Two Debian releases"): the
/// tests of [`MULTI_SUITE`] run once per release; the first is the default one, whose tests keep
/// their plain names, the others' are prefixed (`trixie::systemd_e2e::...`).
/// `CONVERGE_E2E_SUITES=bookworm` runs one only.
pub const SUITES: [&str; 2] = ["bookworm", "trixie"];

/// The modules whose tests run on every release of [`SUITES`].
pub const MULTI_SUITE: [&str; 6] =
    ["systemd_e2e", "nginx_e2e", "scenario_e2e", "lines_e2e", "apt_repository_e2e", "app_e2e"];

/// The releases to test: [`SUITES`], or those CONVERGE_E2E_SUITES names (comma-separated).
pub fn suites() -> Vec<&'static str> {
    match std::env::var("CONVERGE_E2E_SUITES") {
        Ok(list) if !list.trim().is_empty() => {
            let wanted: Vec<&str> = list.split(',').map(str::trim).collect();
            for w in &wanted {
                assert!(SUITES.contains(w), "CONVERGE_E2E_SUITES: {w} is not one of {SUITES:?}");
            }
            SUITES.into_iter().filter(|s| wanted.contains(s)).collect()
        }
        _ => SUITES.to_vec(),
    }
}

thread_local! {
    static SUITE: std::cell::Cell<&'static str> = const { std::cell::Cell::new(SUITES[0]) };
}

/// Runs `f` with the containers it boots made from `suite` (the harness runs each test on its own
/// thread).
pub fn with_suite<T>(suite: &'static str, f: impl FnOnce() -> T) -> T {
    let before = SUITE.with(|s| s.replace(suite));
    let value = f();
    SUITE.with(|s| s.set(before));
    value
}

/// The Debian release this test's containers are made from.
pub fn suite() -> &'static str {
    SUITE.with(|s| s.get())
}

/// A harness script (`harness/container.sh`, ...) for this test's release (CONVERGE_SUITE).
pub fn harness_script(script: &str) -> std::process::Command {
    let mut command = std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(script));
    command.env("CONVERGE_SUITE", suite());
    command
}
