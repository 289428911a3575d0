//! Remote hosts over SSH, end to end: this machine's converge and ssh client provision real
//! systemd containers (harness/), each running its own sshd. One target is reached on its
//! loopback by running converge inside the container's network namespace (`nsenter -n`); a
//! fleet through a network namespace the test creates, with a veth pair into each container and
//! addresses in 10.231.0.0/16 that exist only inside those namespaces.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::systemd_e2e::{Container, pair};

tests![
    a_first_apply_uploads_converge_and_a_second_does_not,
    a_cached_binary_that_others_could_have_written_is_uploaded_again,
    a_no_op_fleet_run_changes_nothing_anywhere,
    one_host_down_the_others_converge,
    a_plan_shows_each_hosts_diff_from_an_inventory,
    saved_plans_are_one_file_per_host_each_applied_exactly_or_refused,
    ssh_config_as_vagrant_prints_it_and_become,
    an_interrupt_stops_the_engine_on_the_target_between_steps,
    sigterm_stops_the_engine_on_the_target_after_its_step_and_keeps_the_journal,
    a_playbook_mistake_stops_the_run_before_any_host,
    an_unreachable_host_is_reported_with_ssh_s_reason,
    mistakes_in_hosts_and_inventories_are_explained,
    secret_variables_reach_no_output_of_a_remote_run,
    a_dynamic_converge_is_not_sent_to_an_older_glibc_but_a_static_one_is,
    the_static_binary_runs_in_a_root_without_libc,
    variables_playbook_then_inventory_then_vars_file_then_command_line,
    forks_is_how_many_hosts_are_contacted_at_once,
];

const PLAYBOOK: &str = "vars:
  greeting: hello
  role: none
resources:
  - directory: /srv/remote
  - file: /srv/remote/motd
    template: templates/motd.j2
    mode: \"0640\"
  - file: /srv/remote/blob
    source: ../shared/blob.bin
";

fn key() -> PathBuf {
    let cache = std::env::var_os("CONVERGE_CACHE").unwrap_or_else(|| "/var/cache/converge-e2e".into());
    Path::new(&cache).join("ssh/id_ed25519")
}

fn harness(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("harness/container.sh");
    Command::new(script).args(args).output().expect("harness/container.sh runs")
}

/// The host pid of a container's PID 1: its namespaces are reachable through it.
fn leader(c: &Container) -> String {
    let out = harness(&["leader", c.name()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A playbook folder: the playbook in `site/`, a template beside it, a source file reached
/// through `../`, and an ssh config for the containers (never the user's own).
struct Site {
    dir: tempfile::TempDir,
    /// A hard link to the converge under test, so that a rebuild during the test (another
    /// cargo in the same tree) does not swap the binary between two runs.
    bin: PathBuf,
}

impl Site {
    fn new() -> Site {
        // In the target folder (beside the binary, for the hard link) where this user may write.
        let dir = tempfile::Builder::new()
            .prefix("converge-remote")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .or_else(|_| tempfile::Builder::new().prefix("converge-remote").tempdir())
            .unwrap();
        let bin = dir.path().join("converge");
        if std::fs::hard_link(env!("CARGO_BIN_EXE_converge"), &bin).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_converge"), &bin).unwrap();
        }
        let site = Site { dir, bin };
        site.write("site/site.yml", PLAYBOOK);
        site.write("site/templates/motd.j2", "{{ greeting }} from {{ role }}\n");
        std::fs::create_dir_all(site.path("shared")).unwrap();
        std::fs::write(site.path("shared/blob.bin"), (0..=255u8).cycle().take(3000).collect::<Vec<u8>>()).unwrap();
        site.write(
            "ssh_config",
            &format!(
                "Host *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  \
                 UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
                key().display()
            ),
        );
        site
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn playbook(&self) -> String {
        self.path("site/site.yml").display().to_string()
    }
}

/// What a run of converge printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn expect(self, code: i32) -> Run {
        assert_eq!(self.code, code, "exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// The `host` records of `--output json`, by host name.
    fn hosts(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["type"] == "host")
            .collect()
    }
}

/// Runs `converge ARGS` in the network namespace of `netns` (`nsenter --net=PATH`).
fn converge(site: &Site, netns: &str, args: &[&str]) -> Run {
    let start = Instant::now();
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .arg(&site.bin)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("nsenter runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

/// A network namespace of the test's own, with a veth pair into each container: the namespace
/// has 10.231.N.1, container N has 10.231.N.2. Deleted when dropped (the veths go with it).
struct Net {
    name: String,
}

impl Net {
    fn new(test: &str, containers: &[&Container]) -> Net {
        let name = format!("cvr-{test}-{}", std::process::id());
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip runs");
            assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        };
        ip(&["netns", "add", &name]);
        let net = Net { name };
        for (i, c) in containers.iter().enumerate() {
            let leader = leader(c);
            let here = format!("h{i}");
            // Both ends are created inside their namespaces: no name ever appears on the host.
            ip(&["link", "add", &here, "netns", &net.name, "type", "veth", "peer", "name", "cv0", "netns", &leader]);
            ip(&["-n", &net.name, "addr", "add", &format!("10.231.{i}.1/24"), "dev", &here]);
            ip(&["-n", &net.name, "link", "set", &here, "up"]);
            let inside = |args: &[&str]| {
                let out = Command::new("nsenter").args(["-t", &leader, "-n", "ip"]).args(args).output().unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            };
            inside(&["addr", "add", &format!("10.231.{i}.2/24"), "dev", "cv0"]);
            inside(&["link", "set", "cv0", "up"]);
        }
        net
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    fn address(i: usize) -> String {
        format!("10.231.{i}.2")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// `n` booted containers.
fn boot(test: &str, n: usize) -> Vec<Container> {
    (0..n).map(|i| Container::boot(&format!("remote-{test}-{i}"))).collect()
}

/// `stat` of the cached binary inside a container: inode and mtime (ns).
fn cached_binary(c: &Container, dir: &str) -> String {
    c.sh(&format!("stat -c '%n %i %.9Y' {dir}/*/converge"))
}

fn a_first_apply_uploads_converge_and_a_second_does_not() {
    let c = Container::boot("remote-upload");
    let site = Site::new();
    // A tree whose script keeps its execute bit and whose empty directory arrives too.
    site.write("site/site.yml", &format!("{PLAYBOOK}  - directory: /srv/remote/tree\n    source: files/tree\n"));
    site.write("site/files/tree/run.sh", "#!/bin/sh\necho ran\n");
    std::fs::set_permissions(site.path("site/files/tree/run.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(site.path("site/files/tree/empty")).unwrap();
    let netns = format!("/proc/{}/ns/net", leader(&c));
    let config = site.path("ssh_config").display().to_string();
    let args = ["apply", &site.playbook(), "--host", "root@127.0.0.1", "--ssh-config", &config];

    let first = converge(&site, &netns, &args).expect(0);
    assert!(first.stdout.contains("root@127.0.0.1 | uploaded converge ("), "{}", first.stdout);
    assert!(first.stdout.contains("/var/cache/converge/"), "{}", first.stdout);
    assert!(first.stdout.contains("root@127.0.0.1 | file:/srv/remote/motd: created"), "{}", first.stdout);
    assert!(first.stdout.contains("1 host: 1 changed."), "{}", first.stdout);
    assert_eq!(c.sh("cat /srv/remote/motd"), "hello from none");
    assert_eq!(c.sh("stat -c %a /srv/remote/motd"), "640");
    assert_eq!(c.sh("sha256sum < /srv/remote/blob"), sha256_of(&site.path("shared/blob.bin")) + "  -");
    assert_eq!(c.sh("stat -c '%a %F' /srv/remote/tree/run.sh /srv/remote/tree/empty"), "755 regular file\n755 directory");
    assert_eq!(c.sh("/srv/remote/tree/run.sh"), "ran");
    let cached = cached_binary(&c, "/var/cache/converge");
    assert!(cached.starts_with("/var/cache/converge/") && cached.contains("/converge "), "{cached}");
    assert_eq!(c.sh("ls /tmp | grep -c '^converge\\.' || true"), "0", "the bundle's directory is removed");

    let second = converge(&site, &netns, &args).expect(0);
    assert!(!second.stdout.contains("uploaded"), "{}", second.stdout);
    assert!(second.stdout.contains("root@127.0.0.1 | No changes. The host matches the playbook."), "{}", second.stdout);
    assert_eq!(cached_binary(&c, "/var/cache/converge"), cached, "the cached binary was not written again");
    // -v says where it found it.
    let third = converge(&site, &netns, &[&args[..], &["-v"]].concat()).expect(0);
    assert!(third.stdout.contains("converge is there already: /var/cache/converge/"), "{}", third.stdout);
}

fn a_cached_binary_that_others_could_have_written_is_uploaded_again() {
    let c = Container::boot("remote-trust");
    let site = Site::new();
    let netns = format!("/proc/{}/ns/net", leader(&c));
    let config = site.path("ssh_config").display().to_string();
    let args = ["plan", &site.playbook(), "--host", "root@127.0.0.1", "--ssh-config", &config];
    let first = converge(&site, &netns, &args).expect(2);
    assert!(first.stdout.contains("uploaded converge ("), "{}", first.stdout);
    let cached = cached_binary(&c, "/var/cache/converge");

    // Executable, same bytes, but group-writable: not trusted; a fresh copy replaces it.
    c.sh("chmod g+w /var/cache/converge/*/converge");
    let run = converge(&site, &netns, &args).expect(2);
    assert!(run.stdout.contains("not trusting the cached converge: /var/cache/converge/"), "{}", run.stdout);
    assert!(run.stdout.contains("uploaded converge ("), "{}", run.stdout);
    assert_ne!(cached_binary(&c, "/var/cache/converge"), cached, "a new file");
    assert_eq!(c.sh("stat -c '%a %u' /var/cache/converge/*/converge"), "755 0");

    // The cache directory belongs to another user: it is moved aside, and made afresh.
    c.sh("chown 1000 /var/cache/converge");
    let run = converge(&site, &netns, &args).expect(2);
    assert!(run.stdout.contains("not trusting the cached converge: /var/cache/converge is "), "{}", run.stdout);
    assert!(run.stdout.contains("uploaded converge ("), "{}", run.stdout);
    assert_eq!(c.sh("stat -c '%u %a' /var/cache/converge"), "0 700");
    assert_eq!(c.sh("ls -d /var/cache/converge.untrusted.* | wc -l"), "1");

    // Trusted again: not uploaded, and not hashed (the probe reads metadata only).
    let run = converge(&site, &netns, &args).expect(2);
    assert!(!run.stdout.contains("uploaded"), "{}", run.stdout);
    assert!(!run.stdout.contains("not trusting"), "{}", run.stdout);
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

fn a_no_op_fleet_run_changes_nothing_anywhere() {
    let cs = boot("noop", 3);
    let net = Net::new("noop", &cs.iter().collect::<Vec<_>>());
    let site = Site::new();
    let config = site.path("ssh_config").display().to_string();
    let hosts: Vec<String> = (0..3).map(Net::address).collect();
    let playbook = site.playbook();
    let mut args: Vec<&str> = vec!["apply", &playbook, "--ssh-config", &config, "--detailed-exitcode"];
    for h in &hosts {
        args.extend(["--host", h]);
    }

    let first = converge(&site, &net.path(), &args).expect(2);
    assert!(first.stdout.contains("3 hosts: 3 changed."), "{}", first.stdout);
    let inodes: Vec<String> = cs.iter().map(|c| c.sh("stat -c '%i %.9Y' /srv/remote/motd /srv/remote/blob")).collect();

    let second = converge(&site, &net.path(), &args).expect(0);
    for h in &hosts {
        assert!(
            second.stdout.contains(&format!("{h} | No changes. The host matches the playbook.")),
            "{}",
            second.stdout
        );
    }
    assert!(second.stdout.contains("3 hosts: 3 converged."), "{}", second.stdout);
    let after: Vec<String> = cs.iter().map(|c| c.sh("stat -c '%i %.9Y' /srv/remote/motd /srv/remote/blob")).collect();
    assert_eq!(after, inodes, "nothing was rewritten");

    // The same, as records: every host converged, nothing changed, nothing failed.
    args.extend(["--output", "json"]);
    let json = converge(&site, &net.path(), &args).expect(0);
    let records = json.hosts();
    assert_eq!(records.len(), 3, "{}", json.stdout);
    for r in records {
        assert_eq!(
            (r["status"].as_str(), r["changed"].as_u64(), r["failed"].as_u64()),
            (Some("converged"), Some(0), Some(0)),
            "{r}"
        );
        assert_eq!(r["ok"], 3, "{r}");
    }
}

fn one_host_down_the_others_converge() {
    let cs = boot("down", 3);
    let net = Net::new("down", &cs.iter().collect::<Vec<_>>());
    // Host 1's sshd is stopped: its port is closed.
    cs[1].sh("systemctl stop ssh.socket ssh.service");
    let site = Site::new();
    let config = site.path("ssh_config").display().to_string();
    let hosts: Vec<String> = (0..3).map(Net::address).collect();
    let playbook = site.playbook();
    let run = converge(
        &site,
        &net.path(),
        &["apply", &playbook, "--ssh-config", &config, "--host", &hosts[0], "--host", &hosts[1], "--host", &hosts[2]],
    )
    .expect(1);
    let down = &hosts[1];
    assert!(
        run.stdout.contains(&format!(
            "{down} | failed: unreachable: ssh: connect to host {down} port 22: Connection refused"
        )),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("3 hosts: 2 changed, 1 failed."), "{}", run.stdout);
    let row = run.stdout.lines().find(|l| l.starts_with(down.as_str()) && l.contains("unreachable")).unwrap();
    assert!(row.contains("Connection refused"), "{row}");
    assert_eq!(cs[0].sh("cat /srv/remote/motd"), "hello from none");
    assert_eq!(cs[2].sh("cat /srv/remote/motd"), "hello from none");
    assert_eq!(cs[1].sh("test -e /srv/remote && echo there || echo absent"), "absent");
}

fn a_plan_shows_each_hosts_diff_from_an_inventory() {
    let cs = boot("plan", 2);
    let net = Net::new("plan", &cs.iter().collect::<Vec<_>>());
    for c in &cs {
        c.sh("mkdir -p /srv/remote && printf 'hello from old\\n' > /srv/remote/motd && chmod 640 /srv/remote/motd");
    }
    let site = Site::new();
    site.write(
        "inventory.yml",
        &format!(
            "vars: {{greeting: hi}}
hosts:
  web: {{address: {}, vars: {{role: web}}}}
  db:  {{address: {}}}
  spare: {{address: 10.231.99.2}}
groups:
  db-servers: {{hosts: [db], vars: {{role: db}}}}
",
            Net::address(0),
            Net::address(1)
        ),
    );
    let inventory = site.path("inventory.yml").display().to_string();
    let config = site.path("ssh_config").display().to_string();
    let playbook = site.playbook();
    let run = converge(
        &site,
        &net.path(),
        &["plan", &playbook, "--inventory", &inventory, "--limit", "web,db-servers", "--ssh-config", &config],
    )
    .expect(2);
    let out = &run.stdout;
    for (host, role) in [("web", "web"), ("db ", "db")] {
        let lines = [
            format!("{host} |   ~ file:/srv/remote/motd (update)"),
            format!("{host} |       --- /srv/remote/motd"),
            format!("{host} |       -hello from old"),
            format!("{host} |       +hi from {role}"),
            format!("{host} |   + file:/srv/remote/blob (create)"),
            format!("{host} | Plan: 1 to create, 1 to update, 0 to remove; 0 triggers."),
        ];
        for line in lines {
            assert!(out.lines().any(|l| l == line), "{line:?} in\n{out}");
        }
    }
    assert!(!out.contains("spare"), "--limit leaves it out:\n{out}");
    assert!(out.contains("2 hosts: 2 with changes pending."), "{out}");
    // A plan changes nothing.
    for c in &cs {
        assert_eq!(c.sh("cat /srv/remote/motd; test -e /srv/remote/blob || echo no blob"), "hello from old\nno blob");
    }
}

/// `plan --inventory ... --out DIR` saves each host's plan, made on it, to DIR/HOST.json;
/// `apply --plan DIR --inventory ...` applies each host its own plan: the playbook as it was
/// (an edit since changes nothing), and a host edited by hand since refuses and stays as it is.
fn saved_plans_are_one_file_per_host_each_applied_exactly_or_refused() {
    let cs = boot("saved", 2);
    let net = Net::new("saved", &cs.iter().collect::<Vec<_>>());
    for c in &cs {
        c.sh("mkdir -p /srv/remote && printf 'hello from old\\n' > /srv/remote/motd && chmod 640 /srv/remote/motd");
    }
    let site = Site::new();
    let inventory = format!(
        "vars: {{greeting: hi}}\nhosts:\n  web: {{address: {}, vars: {{role: web}}}}\n  db: {{address: {}, vars: {{role: db}}}}\n",
        Net::address(0),
        Net::address(1)
    );
    site.write("inventory.yml", &inventory);
    let inventory = site.path("inventory.yml").display().to_string();
    let config = site.path("ssh_config").display().to_string();
    let plans = site.path("plans").display().to_string();
    let playbook = site.playbook();
    let remote = ["--inventory", &inventory, "--ssh-config", &config];

    let run = converge(&site, &net.path(), &[&["plan", &playbook, "--out", &plans][..], &remote].concat()).expect(2);
    assert!(run.stdout.contains(&format!("web | Saved the plan to {plans}/web.json")), "{}", run.stdout);
    for (host, role) in [("web", "web"), ("db", "db")] {
        let file = site.path(&format!("plans/{host}.json"));
        let plan: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(plan["format"], "converge-plan");
        assert_eq!(plan["resources"][1]["desired"]["content"]["text"], format!("hi from {role}\n"), "{host}");
        assert_eq!(plan["resources"][1]["observed"]["facts"]["sha256"].as_str().map(str::len), Some(64), "{host}");
    }
    for c in &cs {
        assert_eq!(c.sh("cat /srv/remote/motd"), "hello from old", "a plan changes nothing");
    }

    // After the review: the template changes (ignored: the plans hold what was reviewed), and
    // someone edits db by hand (its plan is stale).
    site.write("site/templates/motd.j2", "{{ greeting }} edited after the review\n");
    cs[1].sh("printf 'edited by hand\\n' > /srv/remote/motd");
    let run = converge(&site, &net.path(), &[&["apply", "--plan", &plans][..], &remote].concat()).expect(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("the plan is stale: file:/srv/remote/motd changed since the plan"), "{all}");
    assert_eq!(cs[0].sh("cat /srv/remote/motd"), "hi from web", "web applied its saved plan");
    assert_eq!(cs[1].sh("cat /srv/remote/motd"), "edited by hand", "db refused, changed nothing");
    assert_eq!(cs[1].sh("test -e /srv/remote/blob || echo none"), "none", "db refused before any resource");

    // A host without a plan in DIR stops the run before any host is contacted.
    std::fs::remove_file(site.path("plans/db.json")).unwrap();
    let run = converge(&site, &net.path(), &[&["apply", "--plan", &plans][..], &remote].concat()).expect(1);
    assert!(run.stderr.contains("no saved plan for host db"), "{}", run.stderr);
}

fn ssh_config_as_vagrant_prints_it_and_become() {
    let c = Container::boot("remote-vagrant");
    let site = Site::new();
    // `vagrant ssh-config` output, as is.
    site.write(
        "vagrant-ssh-config",
        &format!(
            "Host default
  HostName 127.0.0.1
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile {}
  IdentitiesOnly yes
  LogLevel FATAL
",
            key().display()
        ),
    );
    let netns = format!("/proc/{}/ns/net", leader(&c));
    let config = site.path("vagrant-ssh-config").display().to_string();
    let playbook = site.playbook();
    let base = ["--ssh-config", config.as_str(), "--host", "default"];

    // As vagrant, a plan reads the host; its converge is cached in vagrant's home.
    let plan = converge(&site, &netns, &[&["plan", playbook.as_str()], &base[..]].concat()).expect(2);
    assert!(plan.stdout.contains("default | uploaded converge ("), "{}", plan.stdout);
    assert!(plan.stdout.contains("/home/vagrant/.cache/converge/"), "{}", plan.stdout);
    assert!(plan.stdout.contains("default |   + file:/srv/remote/motd (create)"), "{}", plan.stdout);

    // apply needs root: without --become it fails on the target, with its reason.
    let denied = converge(&site, &netns, &[&["apply", playbook.as_str()], &base[..]].concat()).expect(1);
    assert!(denied.stdout.contains("default | failed:"), "{}", denied.stdout);
    assert!(denied.stdout.contains("Permission denied"), "{}", denied.stdout);

    // --become: sudo -n as root; the files are root's.
    let applied = converge(&site, &netns, &[&["apply", playbook.as_str(), "--become"], &base[..]].concat()).expect(0);
    assert!(applied.stdout.contains("/var/cache/converge/"), "root's cache: {}", applied.stdout);
    assert!(applied.stdout.contains("default | Apply complete: 3 created"), "{}", applied.stdout);
    assert_eq!(c.sh("stat -c '%U %a' /srv/remote/motd"), "root 640");
    let again = converge(&site, &netns, &[&["apply", playbook.as_str(), "--become"], &base[..]].concat()).expect(0);
    assert!(again.stdout.contains("default | No changes. The host matches the playbook."), "{}", again.stdout);
    assert!(!again.stdout.contains("uploaded"), "{}", again.stdout);
}

fn an_interrupt_stops_the_engine_on_the_target_between_steps() {
    let c = Container::boot("remote-interrupt");
    let site = Site::new();
    site.write(
        "site/slow.yml",
        "resources:
  - command: [/bin/sh, -c, 'sleep 3; touch /srv/first']
    creates: /srv/first
  - command: [touch, /srv/second]
    creates: /srv/second
",
    );
    let netns = format!("/proc/{}/ns/net", leader(&c));
    let config = site.path("ssh_config").display().to_string();
    let slow = site.path("site/slow.yml").display().to_string();
    // Cache the binary first, so that the interrupt lands while the engine runs.
    converge(&site, &netns, &["plan", &slow, "--host", "root@127.0.0.1", "--ssh-config", &config]).expect(2);

    let start = Instant::now();
    let child = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .arg(&site.bin)
        .args(["apply", &slow, "--host", "root@127.0.0.1", "--ssh-config", &config])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the engine to be running the first command.
    while c.sh("pgrep -x sleep >/dev/null && echo yes || echo no") != "yes" {
        assert!(start.elapsed() < Duration::from_secs(20), "the engine did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let signalled = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(2), "Ctrl-C does not wait for the target: {took:?}");
    assert!(stdout.contains("1 host: 1 interrupted."), "{stdout}");

    // The command that was running finishes on its own; the engine is gone, nothing after it ran,
    // and the bundle's directory is removed.
    let settled = Instant::now();
    while c.sh("test -e /srv/first && ! ls /tmp | grep -q '^converge\\.' && echo yes || echo no") != "yes" {
        let state = c.sh("ls /srv /tmp; ps -eo pid,ppid,args");
        assert!(settled.elapsed() < Duration::from_secs(15), "the target did not settle:\n{state}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.sh("ls /srv"), "first");
    assert_eq!(c.sh("pgrep -c -f '^/var/cache/converge/.*/converge apply' || true"), "0");
    // The next run does the rest.
    let rest =
        converge(&site, &netns, &["apply", &slow, "--host", "root@127.0.0.1", "--ssh-config", &config]).expect(0);
    assert!(rest.stdout.contains("command:touch /srv/second: ran"), "{}", rest.stdout);
    assert!(rest.took < Duration::from_secs(30));
}

fn sigterm_stops_the_engine_on_the_target_after_its_step_and_keeps_the_journal() {
    let c = Container::boot("remote-term");
    let site = Site::new();
    let netns = format!("/proc/{}/ns/net", leader(&c));
    let config = site.path("ssh_config").display().to_string();
    let playbook = site.path("site/term.yml").display().to_string();
    let args = ["apply", &playbook, "--host", "root@127.0.0.1", "--ssh-config", &config];
    site.write("site/term.yml", &pair("hello", "", ""));
    converge(&site, &netns, &args).expect(0);

    // The unit file changes (its triggers are journaled first); then a command sends the engine
    // SIGTERM, as the run script does when the connection goes, and takes a second to finish.
    let stopper = "  - command: [sh, -c, 'kill -TERM $PPID; sleep 1; touch /root/first']
    creates: /root/first
  - command: [touch, /root/second]
    creates: /root/second
";
    site.write("site/term.yml", &(pair("howdy", "", "") + stopper));
    let run = converge(&site, &netns, &args).expect(1);
    assert!(run.stdout.contains("stopped by SIGTERM: the step in progress was finished"), "{}", run.stdout);
    assert!(run.stdout.contains("1 host: 1 failed."), "{}", run.stdout);
    // The engine waited for the step it was in, started nothing after it, ran no trigger, and
    // kept the journal.
    assert_eq!(c.sh("test -e /root/first && echo finished"), "finished");
    assert_eq!(c.sh("test -e /root/second || echo not started"), "not started");
    assert_eq!(c.show("app.service", "NeedDaemonReload"), "yes", "no daemon-reload ran");
    assert!(c.sh("cat /var/lib/converge/pending-triggers.json").contains("app.service"));
    assert_eq!(c.sh("pgrep -c -f '^/var/cache/converge/.*/converge apply' || true"), "0", "the engine is gone");

    let rest = converge(&site, &netns, &args).expect(0);
    assert!(rest.stdout.contains("command:touch /root/second: ran"), "{}", rest.stdout);
    assert!(rest.stdout.contains("daemon-reload: done"), "the journal's triggers fire: {}", rest.stdout);
    assert_eq!(c.show("app.service", "NeedDaemonReload"), "no");
    assert_eq!(c.sh("test -e /var/lib/converge/pending-triggers.json || echo cleared"), "cleared");
}

// Without containers: what happens before any connection, and a host that ssh cannot reach. The
// ssh config makes every connection attempt run `false` instead of opening a socket, so these
// tests send nothing anywhere and need no root.

fn offline(site: &Site, args: &[&str]) -> Run {
    site.write("offline_ssh_config", "Host *\n  ProxyCommand /bin/false\n  LogLevel ERROR\n");
    let config = site.path("offline_ssh_config").display().to_string();
    let start = Instant::now();
    let out = Command::new(&site.bin)
        .args(args)
        .args(["--ssh-config", &config])
        .env("NO_COLOR", "1")
        // converge remembers its own sha256 (seconds to compute for a debug build) in one entry of
        // the user's cache, which other builds on the machine overwrite: one of this build's own.
        .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-cache"))
        .output()
        .expect("converge runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

fn a_playbook_mistake_stops_the_run_before_any_host() {
    let site = Site::new();
    site.write("site/templates/motd.j2", "{{ greeting }} from {{ rol }}\n");
    let run = offline(&site, &["apply", &site.playbook(), "--host", "web1", "--host", "web2"]).expect(1);
    assert!(run.stderr.contains("undefined variable `rol`"), "{}", run.stderr);
    assert!(run.stderr.contains("motd.j2"), "the error points into the local template:\n{}", run.stderr);
    assert_eq!(run.stdout, "", "no host was contacted");
}

fn an_unreachable_host_is_reported_with_ssh_s_reason() {
    let site = Site::new();
    // Untimed, once: the first run of a build computes its own sha256 (seconds for a debug
    // build), which the timed run below must not count.
    offline(&site, &["plan", &site.playbook(), "--host", "deploy@web1:2222"]).expect(1);
    let run = offline(&site, &["plan", &site.playbook(), "--host", "deploy@web1:2222"]).expect(1);
    assert!(run.stdout.contains("deploy@web1:2222 | failed: unreachable: "), "{}", run.stdout);
    assert!(run.stdout.contains("1 host: 1 failed."), "{}", run.stdout);
    assert!(run.took < Duration::from_secs(10));

    // The reason is ssh's own words. (What ssh says when its ProxyCommand fails varies from run
    // to run, so this takes a port of the loopback that nothing listens on: refused, always.)
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let ssh_config = site.path("ssh_config");
    let said = Command::new("ssh").arg("-F").arg(&ssh_config).args(["-p", &port, "127.0.0.1", "true"]).output();
    let said = String::from_utf8_lossy(&said.expect("ssh runs").stderr).trim().to_owned();
    assert_eq!(said, format!("ssh: connect to host 127.0.0.1 port {port}: Connection refused"));
    let host = format!("127.0.0.1:{port}");
    let refused = Command::new(&site.bin)
        .args(["plan", &site.playbook(), "--host", &host, "--ssh-config"])
        .arg(&ssh_config)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(stdout.lines().any(|line| line == format!("{host} | failed: unreachable: {said}")), "{said}:\n{stdout}");

    let json = offline(&site, &["plan", &site.playbook(), "--host", "web1", "--output", "json"]).expect(1);
    let hosts = json.hosts();
    assert_eq!(hosts.len(), 1, "{}", json.stdout);
    assert_eq!(hosts[0]["host"], "web1");
    assert_eq!(hosts[0]["status"], "failed");
    assert!(hosts[0]["reason"].as_str().unwrap().starts_with("unreachable: "), "{}", hosts[0]);

    let refused = Command::new(&site.bin)
        .args(["plan", &site.playbook(), "--host", &host, "--output", "json", "--ssh-config"])
        .arg(&ssh_config)
        .output()
        .unwrap();
    let hosts: Vec<serde_json::Value> = String::from_utf8_lossy(&refused.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["type"] == "host")
        .collect();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["reason"], format!("unreachable: {said}"), "{}", hosts[0]);
}

/// `--forks N`: at most N hosts at once. Each connection runs a ProxyCommand that notes its start
/// and end around a sleep, then fails (nothing is contacted); the notes give the most connections
/// that were open at the same time.
fn forks_is_how_many_hosts_are_contacted_at_once() {
    let site = Site::new();
    let log = site.path("connections");
    let proxy = site.path("proxy.sh");
    site.write("proxy.sh", &format!("#!/bin/sh\necho + >> {0}\nsleep 1\necho - >> {0}\nexit 1\n", log.display()));
    std::fs::set_permissions(&proxy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    site.write("proxy_ssh_config", &format!("Host *\n  ProxyCommand {}\n  LogLevel ERROR\n", proxy.display()));
    let config = site.path("proxy_ssh_config").display().to_string();
    let most_at_once = |forks: &str| {
        let _ = std::fs::remove_file(&log);
        let playbook = site.playbook();
        let mut args = vec!["plan", &playbook, "--ssh-config", &config, "--forks", forks];
        for host in ["h1", "h2", "h3", "h4"] {
            args.extend(["--host", host]);
        }
        let out = Command::new(&site.bin).args(&args).env("NO_COLOR", "1").output().expect("converge runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("4 hosts: 4 failed."), "{stdout}");
        let notes = std::fs::read_to_string(&log).unwrap();
        assert_eq!(notes.matches('+').count(), 4, "one connection per host: {notes}");
        let (mut open, mut most) = (0, 0);
        for note in notes.lines() {
            open += if note == "+" { 1 } else { -1 };
            most = most.max(open);
        }
        most
    };
    assert_eq!(most_at_once("1"), 1, "--forks 1: one host at a time");
    assert_eq!(most_at_once("2"), 2, "--forks 2: two at a time");
    assert_eq!(most_at_once("4"), 4, "--forks 4: all four at once");
    let run = offline(&site, &["plan", &site.playbook(), "--host", "h1", "--forks", "0"]).expect(2);
    assert!(run.stderr.contains("--forks"), "{}", run.stderr);
}

/// Variables for a remote host, from lowest to highest: the playbook's `vars:`, the inventory's
/// top level, its groups (a later group beats an earlier one), the host's own, `--vars-file`,
/// `--var` (README, Remote hosts).
fn variables_playbook_then_inventory_then_vars_file_then_command_line() {
    let c = Container::boot("remote-vars");
    let site = Site::new();
    let netns = format!("/proc/{}/ns/net", leader(&c));
    let every = ["p", "t", "ga", "g", "h", "f", "v"];
    let vars: String = every.iter().map(|v| format!("  {v}: playbook\n")).collect();
    let line: Vec<String> = every.iter().map(|v| format!("{v}={{{{ {v} }}}}")).collect();
    site.write(
        "site/vars.yml",
        &format!("vars:\n{vars}resources:\n  - file: /srv/vars\n    content: \"{}\\n\"\n", line.join(" ")),
    );
    site.write(
        "inventory.yml",
        "vars: {t: top, ga: top, g: top, h: top, f: top, v: top}
hosts:
  web: {address: 127.0.0.1, vars: {h: host, f: host, v: host}}
groups:
  first: {hosts: [web], vars: {ga: first, g: first, h: first}}
  second: {hosts: [web], vars: {g: second, h: second}}
",
    );
    site.write("vars-file.yml", "f: file\nv: file\n");
    let (playbook, inventory) = (site.path("site/vars.yml"), site.path("inventory.yml"));
    let (vars_file, config) = (site.path("vars-file.yml"), site.path("ssh_config"));
    let args = [
        "apply",
        &playbook.display().to_string(),
        "--inventory",
        &inventory.display().to_string(),
        "--vars-file",
        &vars_file.display().to_string(),
        "--var",
        "v=command line",
        "--ssh-config",
        &config.display().to_string(),
    ]
    .map(|arg| arg.to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    converge(&site, &netns, &args).expect(0);
    assert_eq!(c.sh("cat /srv/vars"), "p=playbook t=top ga=first g=second h=host f=file v=command line");
}

fn mistakes_in_hosts_and_inventories_are_explained() {
    let site = Site::new();
    let run = offline(&site, &["plan", &site.playbook(), "--host", "web1:http"]).expect(1);
    assert!(run.stderr.contains("--host `web1:http`: the port is not a number"), "{}", run.stderr);

    site.write("inventory.yml", "hosts:\n  web1: {adress: 10.0.0.1}\ngroups:\n  web: {hosts: [web2]}\n");
    let inventory = site.path("inventory.yml").display().to_string();
    let run = offline(&site, &["plan", &site.playbook(), "--inventory", &inventory]).expect(1);
    for text in ["unknown key `adress`", "did you mean `address`?", "group `web` names `web2`", "inventory.yml:2:"] {
        assert!(run.stderr.contains(text), "{text}:\n{}", run.stderr);
    }

    site.write("inventory.yml", "hosts:\n  web1: {address: 10.0.0.1}\n");
    let run = offline(&site, &["plan", &site.playbook(), "--inventory", &inventory, "--limit", "db"]).expect(1);
    assert!(run.stderr.contains("--limit: `db` matches no host or group of the inventory"), "{}", run.stderr);

    site.write("site/abs.yml", "resources:\n  - file: /etc/motd\n    source: /etc/hostname\n");
    let abs = site.path("site/abs.yml").display().to_string();
    let run = offline(&site, &["plan", &abs, "--host", "web1"]).expect(1);
    assert!(run.stderr.contains("`/etc/hostname` is an absolute path"), "{}", run.stderr);
}

fn secret_variables_reach_no_output_of_a_remote_run() {
    let site = Site::new();
    site.write("site/secret.yml", "resources:\n  - command: [\"/bin/setpw\", \"{{ token }}\"]\n    creates: /x\n");
    site.write("secrets.yml", "token: Tok3n-Qz9-remote\n");
    let playbook = site.path("site/secret.yml").display().to_string();
    let secrets = site.path("secrets.yml").display().to_string();
    for output in ["human", "json"] {
        let args = ["plan", &playbook, "--host", "web1", "--secrets-file", &secrets, "--output", output, "-v"];
        let run = offline(&site, &args).expect(1);
        assert!(run.stdout.contains("web1"), "{}", run.stdout);
        assert!(!run.stdout.contains("Qz9") && !run.stderr.contains("Qz9"), "{}\n{}", run.stdout, run.stderr);
    }
    // A mistake next to the secret, before any host is contacted.
    site.write("site/secret.yml", "secrets:\n  token: Tok3n-Qz9-remote\nresourcs: []\n");
    let run = offline(&site, &["plan", &playbook, "--host", "web1"]).expect(1);
    assert!(
        run.stderr.contains("did you mean `resources`?") && run.stderr.contains("token: (sensitive)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("Qz9"), "{}", run.stderr);
}

/// The static build (target/ARCH-unknown-linux-musl/release/converge, which .ci/run builds).
pub fn static_binary() -> PathBuf {
    require!(StaticBuild);
    crate::support::static_binary_path()
}

/// A target whose glibc is older than the one this (dynamically linked) converge needs: its
/// `getconf` says glibc 2.17. Nothing is uploaded and the error says how to build a static
/// converge; the static one, given, converges it.
fn a_dynamic_converge_is_not_sent_to_an_older_glibc_but_a_static_one_is() {
    let c = Container::boot("remote-glibc");
    require!(DynamicBuild, StaticBuild);
    c.write(
        "/usr/local/bin/getconf",
        "#!/bin/sh\n[ \"$1\" = GNU_LIBC_VERSION ] && echo 'glibc 2.17' && exit 0\nexec /usr/bin/getconf \"$@\"\n",
    );
    c.sh("chmod 755 /usr/local/bin/getconf");
    let site = Site::new();
    let netns = format!("/proc/{}/ns/net", leader(&c));
    let config = site.path("ssh_config").display().to_string();
    let args = ["apply", &site.playbook(), "--host", "root@127.0.0.1", "--ssh-config", &config];

    let refused = converge(&site, &netns, &args).expect(1);
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert!(said.contains("the target has glibc 2.17"), "{said}");
    assert!(said.contains("cargo build --release --target x86_64-unknown-linux-musl"), "{said}");
    assert_eq!(c.sh("ls /var/cache/converge 2>/dev/null | wc -l"), "0", "something was uploaded");

    let static_binary = static_binary();
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .arg(&site.bin)
        .args(args)
        .env("NO_COLOR", "1")
        .env("CONVERGE_UPLOAD_BINARY", &static_binary)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("uploaded converge ("), "{stdout}");
    assert_eq!(c.sh("cat /srv/remote/motd"), "hello from none");
}

/// The static build has no program interpreter (ldd, file) and runs in a root that has no libc
/// at all: only itself and a playbook, which it converges into a folder there.
fn the_static_binary_runs_in_a_root_without_libc() {
    let binary = static_binary();
    assert_eq!(converge::remote::binary::glibc_needed(&binary).unwrap(), None);
    let ldd = Command::new("ldd").arg(&binary).output().expect("ldd (libc-bin)");
    let said = String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(said.contains("not a dynamic executable") || said.contains("statically linked"), "ldd: {said}");
    if let Ok(file) = Command::new("file").arg("-L").arg(&binary).output() {
        let said = String::from_utf8_lossy(&file.stdout);
        assert!(said.contains("statically linked") || said.contains("static-pie linked"), "file: {said}");
    }
    require!(Root); // chroot
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&binary, root.path().join("converge")).unwrap();
    std::fs::write(
        root.path().join("site.yml"),
        "resources:\n  - directory: /etc\n  - file: /etc/motd\n    content: \"no libc here\\n\"\n",
    )
    .unwrap();
    std::fs::create_dir(root.path().join("target")).unwrap();
    let listing: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!listing.iter().any(|n| n == "lib" || n == "lib64" || n == "usr"), "{listing:?}");
    let out = Command::new("chroot")
        .arg(root.path())
        .args(["/converge", "apply", "/site.yml", "--root", "/target"])
        .output()
        .expect("chroot runs");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(root.path().join("target/etc/motd")).unwrap(), "no libc here\n");
}
