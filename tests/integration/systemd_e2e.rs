//! End-to-end against a real systemd: each test boots a fresh systemd-nspawn container from the
//! project's Debian rootfs (harness/), puts the freshly built converge in, runs it inside and
//! asserts on systemd through `systemctl show`, never on converge's own report alone.

use std::path::Path;
use std::process::Output;


tests![
    a_sysctl_is_written_and_applied_to_the_running_kernel,
    a_new_socket_service_pair_is_enabled_listening_and_activates,
    a_changed_service_is_reloaded_once_and_serves_anew,
    a_changed_socket_is_restarted,
    a_hand_edit_outside_converge_gets_its_daemon_reload,
    restarting_a_service_whose_runtime_directory_holds_the_socket_leaves_a_live_socket,
    a_unit_that_fails_to_start_fails_the_run_and_is_named,
    triggers_of_a_killed_run_fire_on_the_next,
    a_journal_of_an_older_converge_still_fires,
    an_absent_unit_is_stopped_disabled_and_removed,
    a_simple_service_that_dies_at_once_fails_the_run_with_its_journal,
    a_service_that_systemd_keeps_restarting_fails_the_run,
    a_service_that_stays_up_passes_and_settle_zero_skips_the_watch,
    a_template_change_restarts_its_running_instances_by_name,
    an_accept_socket_and_its_template_service_answer,
    a_tmpfiles_resource_creates_its_directory_now_and_at_boot,
    a_timer_is_enabled_and_active_and_its_service_is_not_started,
    a_unit_rolled_back_is_daemon_reloaded_and_restarted,
    an_on_change_command_reloads_a_running_service_only_when_its_file_changed,
];

/// A booted container; powered off when dropped, also when the test panics.
pub struct Container {
    name: String,
}

fn harness(args: &[&str]) -> Output {
    crate::support::harness_script("harness/container.sh").args(args).output().expect("harness/container.sh runs")
}

impl Container {
    /// Boots a container (root and systemd-nspawn: harness/install-deps.sh).
    pub fn boot(test: &str) -> Container {
        require!(Root, Nspawn);
        // The release in the name: a test runs on each (support::SUITES), maybe at the same time.
        let suite = &crate::support::suite()[..3];
        let test: String = test.replace('_', "-").chars().take(40).collect();
        let name = format!("t-{suite}-{test}-{}", std::process::id());
        let out = harness(&["boot", &name]);
        assert!(out.status.success(), "boot {name}: {}", String::from_utf8_lossy(&out.stderr));
        let container = Container { name };
        container.copy_in(Path::new(env!("CARGO_BIN_EXE_converge")), "/usr/local/bin/converge");
        container
    }

    /// The container's name for harness/container.sh.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn copy_in(&self, src: &Path, dest: &str) {
        let out = harness(&["copy-in", &self.name, &src.display().to_string(), dest]);
        assert!(out.status.success(), "copy-in {dest}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Writes a file inside the container.
    pub fn write(&self, dest: &str, content: &str) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), content).unwrap();
        self.copy_in(tmp.path(), dest);
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", &self.name];
        all.extend_from_slice(args);
        harness(&all)
    }

    /// A shell command inside; its stdout, trimmed. Panics when it fails.
    pub fn sh(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-c", script]);
        assert!(
            out.status.success(),
            "`{script}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `systemctl show -p PROPERTY --value UNIT`.
    pub fn show(&self, unit: &str, property: &str) -> String {
        self.sh(&format!("systemctl show -p {property} --value {unit}"))
    }

    /// Runs converge inside with a playbook; returns (exit code, stdout, stderr).
    pub fn converge(&self, args: &[&str], playbook: &str) -> (i32, String, String) {
        self.write("/root/playbook.yml", playbook);
        let mut all = vec!["converge"];
        all.extend_from_slice(args);
        all.push("/root/playbook.yml");
        let out = self.exec(&all);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `converge apply`, which must succeed; its stdout.
    pub fn apply(&self, playbook: &str) -> String {
        let (code, out, err) = self.converge(&["apply"], playbook);
        assert_eq!(code, 0, "apply failed\nstdout:\n{out}\nstderr:\n{err}");
        out
    }

    /// What the socket-activated test service answers on its socket.
    pub fn curl(&self, socket: &str) -> String {
        self.sh(&format!("curl -sS --max-time 10 --unix-socket {socket} http://localhost/"))
    }

    /// How many times systemd reloaded its configuration since boot: PID 1's `Reloading.` lines
    /// (systemd 252; 254 and later say `Reloading...`, between `Reloading requested from client
    /// PID ...` and `Reloading finished in N ms.`, which are not counted).
    pub fn daemon_reloads(&self) -> usize {
        let journal = self.sh("journalctl --sync && journalctl -b --no-pager -o cat _PID=1");
        journal.lines().filter(|line| matches!(line.trim_end(), "Reloading." | "Reloading...")).count()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let out = harness(&["poweroff", &self.name]);
        if !out.status.success() {
            eprintln!("poweroff {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// A small socket-activated HTTP app: it serves on the socket systemd hands it (fd 3) and
/// answers with its greeting and its InvocationID, so a test sees which instance answered.
const SERVER: &str = r#"import os, socket
greeting = os.environ.get("GREETING", "hello")
server = socket.socket(fileno=3)
while True:
    conn, _ = server.accept()
    conn.recv(4096)
    body = f"{greeting} from {os.environ.get('INVOCATION_ID', '?')}\n".encode()
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    conn.close()
"#;

/// The seed's pair: app.socket on /run/app/socket, app.service with RuntimeDirectory=app.
pub fn pair(greeting: &str, socket_extra: &str, service_extra: &str) -> String {
    let server = SERVER.lines().map(|l| format!("      {l}\n")).collect::<String>();
    format!(
        "resources:
  - directory: /srv/app
  - file: /srv/app/server.py
    content: |
{server}
  - unit: app.socket
    content: |
      [Unit]
      Description=app socket
      [Socket]
      ListenStream=/run/app/socket
      {socket_extra}
      [Install]
      WantedBy=sockets.target
    enabled: true
    active: true
  - unit: app.service
    content: |
      [Unit]
      Description=app
      Requires=app.socket
      [Service]
      Environment=GREETING={greeting}
      RuntimeDirectory=app
      {service_extra}
      ExecStart=/usr/bin/python3 /srv/app/server.py
    restart_triggers: [\"file:/srv/app/server.py\"]
"
    )
}

fn a_new_socket_service_pair_is_enabled_listening_and_activates() {
    let c = Container::boot("new-pair");
    let out = c.apply(&pair("hello", "", ""));
    assert!(out.contains("daemon-reload: done"), "{out}");
    assert_eq!(c.show("app.socket", "UnitFileState"), "enabled");
    assert_eq!(c.show("app.socket", "ActiveState"), "active");
    assert_eq!(c.show("app.service", "ActiveState"), "inactive", "socket activation: nothing started the service yet");
    assert!(c.curl("/run/app/socket").starts_with("hello from "));
    assert_eq!(c.show("app.service", "ActiveState"), "active", "the connection started the service");

    // A second apply changes nothing and runs no trigger.
    let invocation = c.show("app.service", "InvocationID");
    let reloads = c.daemon_reloads();
    assert!(reloads > 0, "the first apply's daemon-reload is in the journal");
    let out = c.apply(&pair("hello", "", ""));
    assert!(out.starts_with("No changes. The host matches the playbook."), "{out}");
    assert_eq!(c.show("app.service", "InvocationID"), invocation);
    assert_eq!(c.daemon_reloads(), reloads);
}

fn a_changed_service_is_reloaded_once_and_serves_anew() {
    let c = Container::boot("service-change");
    c.apply(&pair("hello", "", ""));
    let first = c.curl("/run/app/socket");
    let reloads = c.daemon_reloads();
    assert!(reloads > 0, "the first apply's daemon-reload is in the journal");

    let (code, plan, _) = c.converge(&["plan"], &pair("howdy", "", ""));
    assert_eq!(code, 2);
    assert!(
        plan.contains("-      Environment=GREETING=hello") || plan.contains("-Environment=GREETING=hello"),
        "{plan}"
    );
    assert!(
        plan.contains("stop app.service") && plan.contains("daemon-reload") && plan.contains("restart app.socket"),
        "{plan}"
    );

    c.apply(&pair("howdy", "", ""));
    assert_eq!(c.daemon_reloads(), reloads + 1, "exactly one daemon-reload");
    assert_eq!(c.show("app.service", "NeedDaemonReload"), "no");
    let second = c.curl("/run/app/socket");
    assert!(second.starts_with("howdy from "), "the new definition serves: {second}");
    assert_ne!(first.split(" from ").nth(1), second.split(" from ").nth(1), "a new instance answered");
}

fn a_changed_socket_is_restarted() {
    let c = Container::boot("socket-change");
    c.apply(&pair("hello", "", ""));
    c.curl("/run/app/socket");
    let inode = c.sh("stat -c %i /run/app/socket");
    c.apply(&pair("hello", "SocketMode=0660", ""));
    assert_eq!(c.show("app.socket", "SocketMode"), "0660");
    assert_ne!(c.sh("stat -c %i /run/app/socket"), inode, "a new listening socket");
    assert_eq!(c.sh("stat -c %a /run/app/socket"), "660");
    assert!(c.curl("/run/app/socket").starts_with("hello from "), "the service starts on the next use");
}

fn a_hand_edit_outside_converge_gets_its_daemon_reload() {
    let c = Container::boot("hand-edit");
    let with_dropin = pair("hello", "", "").replace(
        "    restart_triggers:",
        "    dropins:\n      10-limits.conf: \"[Service]\\nLimitNOFILE=4096\\n\"\n    restart_triggers:",
    );
    c.apply(&with_dropin);
    // Someone adds a drop-in beside converge's (systemd 252 notices new files in an existing .d
    // directory): the playbook's files still match, but systemd's view is stale.
    c.sh("printf '[Service]\\nEnvironment=EDITED=1\\n' > /etc/systemd/system/app.service.d/20-hand.conf");
    assert_eq!(c.show("app.service", "NeedDaemonReload"), "yes");
    let out = c.apply(&with_dropin);
    assert!(out.contains("NeedDaemonReload was set by an edit outside converge"), "{out}");
    assert!(out.contains("daemon-reload: done"), "{out}");
    assert_eq!(c.show("app.service", "NeedDaemonReload"), "no");
    assert!(c.show("app.service", "Environment").contains("EDITED=1"));

    // A hand edit of the managed unit file itself is put back, with its daemon-reload.
    c.sh("sed -i 's/GREETING=hello/GREETING=hacked/' /etc/systemd/system/app.service");
    let out = c.apply(&with_dropin);
    assert!(out.contains("-Environment=GREETING=hacked") && out.contains("daemon-reload: done"), "{out}");
    assert!(c.show("app.service", "Environment").contains("GREETING=hello"));
}

fn restarting_a_service_whose_runtime_directory_holds_the_socket_leaves_a_live_socket() {
    let c = Container::boot("runtime-dir");
    c.apply(&pair("hello", "", ""));
    let first = c.curl("/run/app/socket");
    // The app's code changes: restart_triggers restarts app.service, whose stop removes /run/app
    // and the socket file with it; converge restarts app.socket too.
    let changed = pair("hello", "", "").replace("conn.close()", "conn.close()  # v2");
    let out = c.apply(&changed);
    assert!(out.contains("stop app.service: done") && out.contains("restart app.socket: done"), "{out}");
    let second = c.curl("/run/app/socket");
    assert!(second.starts_with("hello from "), "{second}");
    assert_ne!(first, second, "a new instance answered");
}

fn a_unit_that_fails_to_start_fails_the_run_and_is_named() {
    let c = Container::boot("failing-unit");
    let playbook = "resources:
  - unit: broken.service
    content: |
      [Service]
      Type=oneshot
      ExecStart=/bin/false
    active: true
";
    let (code, out, err) = c.converge(&["apply"], playbook);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("broken.service") && err.contains("failed"), "{err}");
    assert_eq!(c.show("broken.service", "ActiveState"), "failed");
}

fn triggers_of_a_killed_run_fire_on_the_next() {
    let c = Container::boot("killed-run");
    c.apply(&pair("hello", "", ""));
    c.curl("/run/app/socket");
    // The last resource kills converge (its parent) after the unit file was written and before
    // any trigger ran: SIGKILL, no chance to clean up.
    let killer = "  - command: [sh, -c, 'touch /root/killed; kill -9 $PPID']\n    creates: /root/killed\n";
    let (code, _, _) = c.converge(&["apply"], &(pair("howdy", "", "") + killer));
    assert_ne!(code, 0, "converge was killed");
    assert_eq!(c.show("app.service", "NeedDaemonReload"), "yes", "the unit file changed, no trigger ran");
    assert!(c.sh("cat /var/lib/converge/pending-triggers.json").contains("app.service"));

    let out = c.apply(&(pair("howdy", "", "") + killer));
    assert!(out.contains("daemon-reload: done"), "the pending triggers fire although the files match now:\n{out}");
    assert_eq!(c.show("app.service", "NeedDaemonReload"), "no");
    assert!(c.curl("/run/app/socket").starts_with("howdy from "));
    assert!(
        c.exec(&["test", "-e", "/var/lib/converge/pending-triggers.json"]).status.code() == Some(1),
        "journal cleared"
    );
    let out = c.apply(&(pair("howdy", "", "") + killer));
    assert!(out.starts_with("No changes."), "{out}");
}

/// A journal that an older converge left behind, its requests written as `[action, unit,
/// reason]` arrays, is still honoured: the next run fires its triggers (docs/triggers.md, "The
/// journal").
fn a_journal_of_an_older_converge_still_fires() {
    let c = Container::boot("old-journal");
    c.apply(&pair("hello", "", ""));
    let first = c.curl("/run/app/socket");
    c.sh("mkdir -p /var/lib/converge");
    c.write(
        "/var/lib/converge/pending-triggers.json",
        r#"{"changed_units": [], "requests": [["restart", "app.service", "file:/srv/app/server.py changed"]]}"#,
    );
    let out = c.apply(&pair("hello", "", ""));
    assert!(out.contains("file:/srv/app/server.py changed (in a run that did not finish)"), "{out}");
    assert!(out.contains("stop app.service: done"), "{out}");
    assert_ne!(c.curl("/run/app/socket"), first, "a new instance answered");
    assert!(
        c.exec(&["test", "-e", "/var/lib/converge/pending-triggers.json"]).status.code() == Some(1),
        "journal cleared"
    );
}

fn an_absent_unit_is_stopped_disabled_and_removed() {
    let c = Container::boot("absent");
    c.apply(&pair("hello", "", ""));
    c.curl("/run/app/socket");
    let out =
        c.apply("resources:\n  - unit: app.socket\n    state: absent\n  - unit: app.service\n    state: absent\n");
    assert!(out.contains("stop app.socket: done") && out.contains("stop app.service: done"), "{out}");
    assert_eq!(c.show("app.socket", "LoadState"), "not-found");
    assert_eq!(c.show("app.service", "ActiveState"), "inactive");
    assert!(c.exec(&["test", "-e", "/etc/systemd/system/sockets.target.wants/app.socket"]).status.code() == Some(1));
    assert!(c.exec(&["test", "-e", "/etc/systemd/system/app.socket"]).status.code() == Some(1));
    let out =
        c.apply("resources:\n  - unit: app.socket\n    state: absent\n  - unit: app.service\n    state: absent\n");
    assert!(out.starts_with("No changes."), "{out}");
}

/// A playbook of one service that is started now, with the given `[Service]` lines and extra
/// resource attributes.
fn service(name: &str, service_lines: &str, extra: &str) -> String {
    let lines: String = service_lines.lines().map(|l| format!("      {l}\n")).collect();
    format!("resources:\n  - unit: {name}\n    content: |\n      [Service]\n{lines}    active: true\n{extra}")
}

/// `converge rollback` (docs/saved-plans.md): a unit file changed by v2 is back, with one
/// daemon-reload and a restart (a new InvocationID); a file whose change notified a restart,
/// rolled back, restarts the unit again and reloads nothing.
fn a_unit_rolled_back_is_daemon_reloaded_and_restarted() {
    let c = Container::boot("rollback-unit");
    let playbook = |unit: &str, conf: &str| {
        let conf = format!("  - file: /etc/app.conf\n    content: \"{conf}\\n\"\n    notify: \"restart app.service\"\n");
        service("app.service", &format!("Environment=V={unit}\nExecStart=/bin/sleep infinity"), &conf)
    };
    c.apply(&playbook("1", "a"));
    let v1 = c.sh("cat /etc/systemd/system/app.service");
    let out = c.apply(&playbook("2", "a"));
    assert!(out.contains("restart app.service: done"), "{out}");
    assert_eq!(c.show("app.service", "Environment"), "V=2");
    let (invocation, reloads) = (c.show("app.service", "InvocationID"), c.daemon_reloads());

    let out = c.sh("converge rollback");
    assert!(out.contains("daemon-reload: done") && out.contains("restart app.service: done"), "{out}");
    assert_eq!(c.sh("cat /etc/systemd/system/app.service"), v1, "v1's unit file, byte for byte");
    assert_eq!(c.daemon_reloads(), reloads + 1, "exactly one daemon-reload");
    assert_eq!(c.show("app.service", "NeedDaemonReload"), "no");
    assert_eq!(c.show("app.service", "Environment"), "V=1", "systemd runs v1's definition");
    assert_eq!(c.show("app.service", "ActiveState"), "active");
    assert_ne!(c.show("app.service", "InvocationID"), invocation, "restarted");

    // Only the notifying file changes: its rollback restarts the unit, with no daemon-reload.
    c.apply(&playbook("1", "b"));
    let (invocation, reloads) = (c.show("app.service", "InvocationID"), c.daemon_reloads());
    let out = c.sh("converge rollback");
    assert!(out.contains("restart app.service: done") && !out.contains("daemon-reload"), "{out}");
    assert_eq!(c.sh("cat /etc/app.conf"), "a");
    assert_ne!(c.show("app.service", "InvocationID"), invocation, "restarted");
    assert_eq!(c.daemon_reloads(), reloads);
}

fn a_simple_service_that_dies_at_once_fails_the_run_with_its_journal() {
    let c = Container::boot("dies-at-once");
    // Type=simple: the start job ends `done` as soon as systemd forked; /bin/false exits after.
    let playbook = service("dies.service", "ExecStart=/bin/sh -c 'echo cannot open the database >&2; exit 3'", "");
    let start = std::time::Instant::now();
    let (code, out, err) = c.converge(&["apply"], &playbook);
    eprintln!("a failing start: converge apply took {:?}\n{err}", start.elapsed());
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("dies.service: the start job finished, but within 1 s the service failed"), "{err}");
    assert!(err.contains("Result=exit-code"), "{err}");
    assert!(err.contains("journalctl --unit dies.service -n 10"), "{err}");
    assert!(err.contains("cannot open the database"), "the service's own words are shown: {err}");
    assert_eq!(c.show("dies.service", "ActiveState"), "failed");
}

fn a_service_that_systemd_keeps_restarting_fails_the_run() {
    let c = Container::boot("auto-restart");
    // Restart=always: it never stays `failed`; it goes `activating (auto-restart)` and is
    // started again (systemd 252 shows `failed` for a moment between the two, which the watch
    // may see first: either is a service that died).
    let playbook = service("flaps.service", "ExecStart=/bin/false\nRestart=always\nRestartSec=200ms", "");
    let (code, out, err) = c.converge(&["apply"], &playbook);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("flaps.service: the start job finished, but within 1 s the service"), "{err}");
    assert!(
        err.contains("auto-restart") || err.contains("restarted by systemd") || err.contains("ActiveState=failed"),
        "{err}"
    );
    assert!(err.contains("status=1/FAILURE"), "systemd's own journal line is shown: {err}");
}

fn a_service_that_stays_up_passes_and_settle_zero_skips_the_watch() {
    let c = Container::boot("settle");
    // Timings for the report only (no assertion on them): a good start with and without the watch.
    let start = std::time::Instant::now();
    c.apply(&service("unwatched.service", "ExecStart=/bin/sleep infinity", "    settle: 0\n"));
    let unwatched = start.elapsed();
    let start = std::time::Instant::now();
    let out = c.apply(&service("stays.service", "ExecStart=/bin/sleep infinity", ""));
    eprintln!("a good start: apply took {:?} watched (settle 1 s), {unwatched:?} with settle: 0", start.elapsed());
    assert!(out.contains("start stays.service: done"), "{out}");
    assert_eq!(c.show("stays.service", "ActiveState"), "active");

    // A restart that dies is a failure too: a changed unit file restarts the running service.
    let (code, out, err) = c.converge(
        &["apply"],
        &service("stays.service", "ExecStart=/bin/sh -c 'sleep 0.2; exit 1'", "    settle: 3s\n"),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("stays.service: the restart job finished, but within 3 s the service failed"), "{err}");

    // `settle: 0`: no watch, as `systemctl start` would say: the run succeeds.
    let out = c.apply(&service("quick.service", "ExecStart=/bin/false", "    settle: 0\n"));
    assert!(out.contains("start quick.service: done"), "{out}");

    // Type=oneshot is not watched, its job says it: the existing test covers its failure.
    let out = c.apply(&service("once.service", "Type=oneshot\nExecStart=/bin/true", ""));
    assert!(out.contains("start once.service: done"), "{out}");
}

/// A template `worker@.service` and its instances: `one` and `two` enabled and running, `three`
/// stopped.
fn workers(version: &str) -> String {
    format!(
        "resources:
  - unit: worker@.service
    content: |
      [Unit]
      Description=worker %i
      [Service]
      Environment=VERSION={version}
      ExecStart=/bin/sleep infinity
      [Install]
      WantedBy=multi-user.target
  - unit: worker@one.service
    enabled: true
    active: true
  - unit: worker@two.service
    enabled: true
    active: true
  - unit: worker@three.service
    active: false
"
    )
}

fn a_template_change_restarts_its_running_instances_by_name() {
    let c = Container::boot("template");
    let (code, plan, err) = c.converge(&["plan"], &workers("1"));
    assert_eq!(code, 2, "{plan}{err}");
    assert!(plan.contains("start worker@one.service") && plan.contains("start worker@two.service"), "{plan}");
    let out = c.apply(&workers("1"));
    assert!(out.contains("start worker@one.service: done"), "{out}");
    for instance in ["one", "two"] {
        let unit = format!("worker@{instance}.service");
        assert_eq!(c.show(&unit, "ActiveState"), "active");
        assert_eq!(c.sh(&format!("systemctl is-enabled {unit}")), "enabled");
        // As `systemctl enable` links it: the instance's name, pointing at the template.
        assert_eq!(
            c.sh(&format!("readlink /etc/systemd/system/multi-user.target.wants/{unit}")),
            "/etc/systemd/system/worker@.service"
        );
    }
    assert_eq!(c.show("worker@three.service", "ActiveState"), "inactive");
    let out = c.apply(&workers("1"));
    assert!(out.starts_with("No changes."), "{out}");

    let (one, two) = (c.show("worker@one.service", "InvocationID"), c.show("worker@two.service", "InvocationID"));
    let (code, plan, _) = c.converge(&["plan"], &workers("2"));
    assert_eq!(code, 2);
    assert!(
        plan.contains("restart worker@one.service") && plan.contains("restart worker@two.service"),
        "the plan lists the running instances by name:\n{plan}"
    );
    assert!(!plan.contains("worker@three.service") && !plan.contains("restart worker@.service"), "{plan}");
    c.apply(&workers("2"));
    assert_ne!(c.show("worker@one.service", "InvocationID"), one);
    assert_ne!(c.show("worker@two.service", "InvocationID"), two);
    assert!(c.show("worker@one.service", "Environment").contains("VERSION=2"));
    assert_eq!(c.show("worker@three.service", "ActiveState"), "inactive", "a stopped instance stays stopped");
}

fn an_accept_socket_and_its_template_service_answer() {
    let c = Container::boot("accept");
    let playbook = |greeting: &str| {
        format!(
            "resources:
  - unit: echo.socket
    content: |
      [Socket]
      ListenStream=/run/echo.sock
      Accept=yes
      [Install]
      WantedBy=sockets.target
    enabled: true
    active: true
  - unit: echo@.service
    content: |
      [Service]
      ExecStart=/bin/sh -c 'read line; echo \"{greeting} $line\"'
      StandardInput=socket
"
        )
    };
    let ask = "python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/echo.sock'); \
               s.sendall(b'there\\n'); print(s.recv(100).decode().strip())\"";
    c.apply(&playbook("hello"));
    assert_eq!(c.sh("systemctl is-enabled echo.socket"), "enabled");
    assert_eq!(c.sh(ask), "hello there");
    let out = c.apply(&playbook("howdy"));
    assert!(out.contains("daemon-reload: done") && out.contains("restart echo.socket: done"), "{out}");
    assert_eq!(c.sh(ask), "howdy there", "the next connection gets the new template");
    let out = c.apply(&playbook("howdy"));
    assert!(out.starts_with("No changes."), "{out}");
}

fn a_tmpfiles_resource_creates_its_directory_now_and_at_boot() {
    let c = Container::boot("tmpfiles");
    let playbook = "resources:
  - tmpfiles: app
    entries:
      - d /run/app 0750 root www-data -
      - type: f
        path: /run/app/ready
        mode: \"0640\"
        argument: up
";
    let out = c.apply(playbook);
    assert!(out.contains("tmpfiles:app"), "{out}");
    assert_eq!(
        c.sh("cat /etc/tmpfiles.d/app.conf"),
        "# Managed by converge: edits are overwritten on the next run.\n\
         d /run/app 0750 root www-data -\n\
         f /run/app/ready 0640 - - - up"
    );
    assert_eq!(c.sh("stat -c '%a %U %G' /run/app"), "750 root www-data");
    assert_eq!(c.sh("cat /run/app/ready"), "up");
    assert!(c.apply(playbook).starts_with("No changes."));

    // What a boot does: /run is empty, and systemd-tmpfiles-setup.service runs
    // `systemd-tmpfiles --create --remove --boot --exclude-prefix=/dev` (it refuses a manual
    // start), which makes it again from the file.
    c.sh("rm -rf /run/app");
    assert!(c.exec(&["test", "-e", "/run/app"]).status.code() == Some(1));
    c.sh("systemd-tmpfiles --create --remove --boot --exclude-prefix=/dev");
    assert_eq!(c.sh("stat -c '%a %U %G' /run/app"), "750 root www-data");
    assert_eq!(c.sh("cat /run/app/ready"), "up");

    // A drifted or missing directory with a right file: converge applies the file again.
    c.sh("chmod 0755 /run/app");
    let out = c.apply(playbook);
    assert!(out.contains("/run/app has mode 0755, not 0750"), "{out}");
    assert_eq!(c.sh("stat -c %a /run/app"), "750");
}

/// A daily job: `backup.timer` at `hour`, and the oneshot `backup.service` it starts.
fn backup(hour: &str) -> String {
    format!(
        "resources:
  - unit: backup.service
    content: |
      [Service]
      Type=oneshot
      ExecStart=/bin/touch /root/backup-ran
  - unit: backup.timer
    content: |
      [Timer]
      OnCalendar=*-*-* {hour}:00:00
      [Install]
      WantedBy=timers.target
    enabled: true
    active: true
"
    )
}

fn a_timer_is_enabled_and_active_and_its_service_is_not_started() {
    let c = Container::boot("timer");
    let out = c.apply(&backup("03"));
    assert!(out.contains("start backup.timer: done"), "{out}");
    assert!(!out.contains("start backup.service"), "the service is not started by converge: {out}");
    assert_eq!(c.show("backup.timer", "ActiveState"), "active");
    assert_eq!(c.sh("systemctl is-enabled backup.timer"), "enabled");
    let next = c.show("backup.timer", "NextElapseUSecRealtime");
    assert!(next.contains("03:00:00"), "{next}");
    assert_eq!(c.show("backup.service", "ActiveState"), "inactive");
    assert!(c.exec(&["test", "-e", "/root/backup-ran"]).status.code() == Some(1), "the job did not run");

    // A new schedule: the timer is restarted, so that it takes effect.
    let (_, plan, _) = c.converge(&["plan"], &backup("04"));
    assert!(plan.contains("restart backup.timer"), "{plan}");
    // The plan says when the new schedule elapses next, as systemd computes it.
    let line = plan.lines().find(|l| l.contains("restart backup.timer")).unwrap();
    assert!(line.contains("next elapse ") && line.contains(" 04:00:00 "), "{line}");
    c.apply(&backup("04"));
    let next = c.show("backup.timer", "NextElapseUSecRealtime");
    assert!(next.contains("04:00:00"), "{next}");
    assert_eq!(c.show("backup.service", "ActiveState"), "inactive");
    assert!(c.apply(&backup("04")).starts_with("No changes."));
}

/// `sysctl:` on a live host: the file in /etc/sysctl.d and the running kernel's value (the
/// container's own network namespace, so net.* is its to change), then a no-op, then a change.
fn a_sysctl_is_written_and_applied_to_the_running_kernel() {
    let c = Container::boot("sysctl");
    let forward = |value: &str| format!("resources:\n  - sysctl: net.ipv4.ip_forward\n    value: \"{value}\"\n");
    assert_eq!(c.sh("cat /proc/sys/net/ipv4/ip_forward"), "0", "the container starts without forwarding");
    let out = c.apply(&forward("1"));
    assert!(out.contains("+ sysctl:net.ipv4.ip_forward (create)"), "{out}");
    assert_eq!(c.sh("cat /proc/sys/net/ipv4/ip_forward"), "1", "applied at once, not at the next boot");
    assert_eq!(
        c.sh("cat /etc/sysctl.d/net.ipv4.ip_forward.conf"),
        "# Managed by converge.\nnet.ipv4.ip_forward = 1",
        "and kept for every boot"
    );
    assert_eq!(c.sh("stat -c '%a %U' /etc/sysctl.d/net.ipv4.ip_forward.conf"), "644 root");
    assert!(c.apply(&forward("1")).starts_with("No changes."));
    c.apply(&forward("0"));
    assert_eq!(c.sh("cat /proc/sys/net/ipv4/ip_forward"), "0");
    // A value the kernel refuses fails the run with sysctl's own words, and the file is put back
    // (it would be applied at every boot).
    let (code, _, err) = c.converge(&["apply"], "resources:\n  - sysctl: net.ipv4.ip_forward\n    value: \"banana\"\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("sysctl -p failed") && err.contains("net.ipv4.ip_forward"), "{err}");
    assert!(err.contains("is as it was"), "{err}");
    assert_eq!(c.sh("cat /etc/sysctl.d/net.ipv4.ip_forward.conf"), "# Managed by converge.\nnet.ipv4.ip_forward = 0");
    assert_eq!(c.sh("cat /proc/sys/net/ipv4/ip_forward"), "0");
}

/// `on_change:` with a real systemd: `systemctl try-reload-or-restart` runs after the config
/// changed (the service's ExecReload records the file), and not on a run that changed nothing.
fn an_on_change_command_reloads_a_running_service_only_when_its_file_changed() {
    let c = Container::boot("on-change");
    // The service first: its start is a trigger, which runs after every resource.
    let service = "resources:
  - file: /etc/app.conf
    content: \"1\\n\"
  - unit: app.service
    content: |
      [Service]
      ExecStart=/bin/sleep infinity
      ExecReload=/bin/sh -c 'cat /etc/app.conf >> /root/reloads'
    active: true
";
    c.apply(service);
    assert_eq!(c.show("app.service", "ActiveState"), "active");
    let playbook = |v: &str| {
        format!(
            "resources:
  - command: [systemctl, try-reload-or-restart, app.service]
    name: reload-app
    on_change: [file:/etc/app.conf]
  - file: /etc/app.conf
    content: \"{v}\\n\"
  - unit: app.service
    content: |
      [Service]
      ExecStart=/bin/sleep infinity
      ExecReload=/bin/sh -c 'cat /etc/app.conf >> /root/reloads'
    active: true
"
        )
    };
    let out = c.apply(&playbook("1"));
    assert!(out.starts_with("No changes."), "nothing it names changed: {out}");
    let out = c.apply(&playbook("2"));
    assert!(out.contains("command:reload-app (runs: because file:/etc/app.conf changes)"), "{out}");
    assert_eq!(c.sh("cat /root/reloads"), "2", "reloaded once, with the new file");
    let out = c.apply(&playbook("2"));
    assert!(out.starts_with("No changes."), "{out}");
    assert_eq!(c.sh("cat /root/reloads"), "2", "not reloaded again");
    assert_eq!(c.sh("test -e /var/lib/converge/pending-triggers.json || echo cleared"), "cleared");
}
