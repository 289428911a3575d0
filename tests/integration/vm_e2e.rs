//! The mission in whole machines (harness/vm/): the first scenario of scenario_e2e.rs in a QEMU VM
//! (software emulation) booted from a fresh disk of the project's image, and the project's own
//! vagrant/Vagrantfile run by `vagrant up` against a local Debian box, with libvirtd started by the
//! test in a network namespace of its own. Both are offline, as in the containers: nginx from a
//! local apt repository, gunicorn from wheels (harness/artifacts.sh). Every VM is powered off and
//! every daemon stopped in a `Drop`, also when the test fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{OFFLINE, PAGE};

tests![
    qemu_vm_one_apply_from_nothing_then_nothing,
    vagrant_up_with_the_projects_vagrantfile,
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a harness script; panics with its stderr when it fails; its stdout's last line.
fn harness(script: &str, args: &[&str]) -> String {
    let out = Command::new(repo().join(script)).args(args).output().unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(out.status.success(), "{script} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").trim().to_owned()
}

/// The converge binary of this build without its debug info (a fifth of the size to copy into a
/// VM); the binary itself where objcopy is missing.
fn converge_binary(dir: &Path) -> PathBuf {
    let stripped = dir.join("converge");
    let ok = Command::new("objcopy")
        .args(["--strip-debug", env!("CARGO_BIN_EXE_converge")])
        .arg(&stripped)
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    if ok { stripped } else { PathBuf::from(env!("CARGO_BIN_EXE_converge")) }
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A QEMU VM of harness/vm/vm.sh; powered off when dropped.
struct Vm {
    name: String,
}

impl Vm {
    fn boot(test: &str) -> Vm {
        let name = format!("t-{test}-{}", std::process::id());
        harness("harness/vm/vm.sh", &["boot", &name]);
        Vm { name }
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", &self.name];
        all.extend_from_slice(args);
        Command::new(repo().join("harness/vm/vm.sh")).args(&all).output().expect("harness/vm/vm.sh runs")
    }

    /// A shell command inside, as root; its stdout, trimmed. Panics when it fails.
    fn sh(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-c", script]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "`{script}` failed: {stdout}{stderr}");
        stdout.trim().to_owned()
    }

    fn copy_in(&self, src: &Path, dest: &str) {
        harness("harness/vm/vm.sh", &["copy-in", &self.name, &src.display().to_string(), dest]);
    }

    /// `converge apply PLAYBOOK` inside, offline, timed inside the VM (no ssh in the figure):
    /// (stdout, seconds).
    fn apply(&self, playbook: &str) -> (String, f64) {
        let mut all = vec![
            "sh",
            "-c",
            "start=$(date +%s%N); converge \"$@\"; rc=$?; echo \"converge took $(( ($(date +%s%N) - start) / 1000000 )) ms\" >&2; exit $rc",
            "sh",
            "apply",
            playbook,
        ];
        all.extend_from_slice(&OFFLINE);
        let out = self.exec(&all);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "apply {playbook}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        let ms: f64 = stderr
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("converge took ")?.strip_suffix(" ms")?.parse().ok())
            .expect("the timing line");
        (stdout, ms / 1000.0)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let out = Command::new(repo().join("harness/vm/vm.sh")).args(["poweroff", &self.name]).output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("poweroff {}: {}", self.name, String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("poweroff {}: {e}", self.name),
        }
    }
}

/// Fetches `url` with curl until it answers with the app's page (nginx reloads gracefully: its old
/// workers may answer for a moment), for at most `wait`; what it answered last.
fn curl_page(curl: impl Fn() -> Output, wait: Duration) -> String {
    let deadline = Instant::now() + wait;
    loop {
        let (stdout, stderr) = text(&curl());
        let answer = format!("{}{}", stdout.trim(), stderr.trim());
        if answer == PAGE || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// From a fresh VM: one apply installs nginx (local apt repository), makes the venv (wheels), the
/// units and the site, and the page is served through nginx (inside the VM and on the port the
/// host forwards to its port 80) and on gunicorn's socket; a second apply changes nothing and
/// spawns no apt, python or systemctl process.
fn qemu_vm_one_apply_from_nothing_then_nothing() {
    // The tools of harness/vm/install-deps.sh.
    require!(Root, Tool("qemu-system-x86_64"), Tool("qemu-img"), Tool("mkfs.ext4"), Tool("ssh"));
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let binary = converge_binary(tmp.path());
    let artifacts = PathBuf::from(harness("harness/artifacts.sh", &[]));
    let vm = Vm::boot("qemu-scenario");
    let booted = started.elapsed();
    vm.copy_in(&binary, "/usr/local/bin/converge");
    vm.copy_in(&artifacts.join("debs"), "/srv/debs");
    vm.copy_in(&artifacts.join("wheels"), "/srv/wheels");
    vm.copy_in(&repo().join("playbooks"), "/root/playbooks");
    vm.sh("rm -f /etc/apt/sources.list.d/*; echo 'deb [trusted=yes] file:/srv/debs ./' > /etc/apt/sources.list && apt-get update -q >/dev/null");
    assert_eq!(vm.exec(&["test", "-e", "/usr/sbin/nginx"]).status.code(), Some(1), "the VM starts without nginx");
    assert_eq!(vm.sh("test -e /home/vagrant/.venvs || echo none"), "none", "the VM starts without the venv");

    let (out, first) = vm.apply("/root/playbooks/gunicorn.yml");
    assert!(out.contains("package: nginx: install") && out.contains("virtualenv:/home/vagrant/.venvs/mysite"), "{out}");
    // The first request starts gunicorn through its socket: in a software-emulated guest on a busy
    // machine that alone can take more than ten seconds.
    let inside =
        curl_page(|| vm.exec(&["curl", "-sS", "--max-time", "30", "http://127.0.0.1/"]), Duration::from_secs(90));
    assert_eq!(inside, PAGE, "through nginx, inside the VM");
    let port = harness("harness/vm/vm.sh", &["port", &vm.name, "80"]);
    let url = format!("http://127.0.0.1:{port}/");
    let outside = curl_page(
        || Command::new("curl").args(["-sS", "--max-time", "10", &url]).output().unwrap(),
        Duration::from_secs(10),
    );
    assert_eq!(outside, PAGE, "through nginx, from the host on the forwarded port");
    assert_eq!(
        vm.sh("curl -sS --max-time 10 --unix-socket /run/gunicorn/socket http://localhost/"),
        PAGE,
        "on gunicorn's socket"
    );
    assert_eq!(
        vm.sh("find /home/vagrant/.venvs/mysite ! -user vagrant | wc -l"),
        "0",
        "every file of the venv is vagrant's"
    );
    assert_eq!(
        vm.sh("systemctl is-enabled gunicorn.socket; systemctl is-active gunicorn.socket nginx"),
        "enabled\nactive\nactive"
    );

    // Every later call of apt-get, systemctl or the Python interpreter is logged to /root/spawned.
    for program in ["/usr/bin/apt-get", "/usr/bin/systemctl", "/usr/bin/python3.11"] {
        vm.sh(&format!(
            "mv {program} {program}.real && printf '#!/bin/sh\\necho \"{program} $*\" >> /root/spawned\\nexec {program}.real \"$@\"\\n' > {program} && chmod 755 {program}"
        ));
    }
    vm.sh("touch /root/spawned");
    let (out, second) = vm.apply("/root/playbooks/gunicorn.yml");
    assert!(out.starts_with("No changes. The host matches the playbook."), "{out}");
    assert!(!out.contains(": done"), "no trigger ran: {out}");
    assert_eq!(vm.sh("cat /root/spawned"), "", "the no-op apply spawned apt, python or systemctl");
    assert_eq!(vm.sh("curl -sS --max-time 10 http://127.0.0.1/"), PAGE);
    drop(vm);
    eprintln!(
        "QEMU VM tier: boot {booted:.1?}, first apply {first:.1} s, no-op apply {second:.3} s (timed inside the VM), whole test {:.1?}",
        started.elapsed()
    );
}

/// libvirtd and virtlogd of harness/vm/libvirt.sh, in their network namespace; stopped when
/// dropped (which also removes what Vagrant left defined in them).
struct Libvirt {
    netns: String,
}

impl Libvirt {
    fn start() -> Libvirt {
        Libvirt { netns: harness("harness/vm/libvirt.sh", &["start"]) }
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        match Command::new(repo().join("harness/vm/libvirt.sh")).arg("stop").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("libvirt.sh stop: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("libvirt.sh stop: {e}"),
        }
    }
}

/// `vagrant` with the project's vagrant/Vagrantfile, run in the libvirt namespace (it reaches the
/// VM at its address there), its state (.vagrant) in a temporary directory, never in the checkout;
/// `vagrant destroy` when dropped.
struct Vagrant<'a> {
    libvirt: &'a Libvirt,
    state: tempfile::TempDir,
    binary: PathBuf,
    boxname: String,
}

impl Vagrant<'_> {
    /// `vagrant ARGS`: (success, its whole output). The output goes to a file, not a pipe: the ssh
    /// tunnels of forwarded ports that vagrant leaves running would hold a pipe open.
    fn run(&self, args: &[&str]) -> (bool, String) {
        let log = self.state.path().join("vagrant.log");
        let file = File::create(&log).unwrap();
        let driver = std::env::var("CONVERGE_LIBVIRT_DRIVER").unwrap_or_else(|_| "qemu".into());
        let status = Command::new("ip")
            .args(["netns", "exec", &self.libvirt.netns, "vagrant", "--no-tty", "--no-color"])
            .args(args)
            .env("VAGRANT_HOME", cache().join("vagrant.d"))
            .env("VAGRANT_CWD", repo().join("vagrant"))
            .env("VAGRANT_DOTFILE_PATH", self.state.path().join("dot"))
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .env("VAGRANT_BOX_UPDATE_CHECK_DISABLE", "1")
            .env("CONVERGE_BOX", &self.boxname)
            .env("CONVERGE_LIBVIRT_DRIVER", driver)
            .env("CONVERGE_BIN", &self.binary)
            .env("CONVERGE_VARS", OFFLINE.join(" "))
            .env("CONVERGE_HTTP_PORT", "8080")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .status()
            .expect("vagrant runs");
        (status.success(), std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// A command in the libvirt namespace (where the forwarded port and the VM's address are).
    fn in_netns(&self, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.libvirt.netns]).args(args).output().expect("ip netns exec")
    }
}

impl Drop for Vagrant<'_> {
    fn drop(&mut self) {
        let (ok, out) = self.run(&["destroy", "-f"]);
        if !ok {
            eprintln!("vagrant destroy: {out}");
        }
    }
}

fn cache() -> PathBuf {
    PathBuf::from(std::env::var("CONVERGE_CACHE").unwrap_or_else(|_| "/var/cache/converge-e2e".into()))
}

/// The last lines of a long output, for a failure message.
fn tail(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// `vagrant up` with vagrant/Vagrantfile and a box built from the project's image converges the VM
/// from nothing (its provisioner runs converge apply playbooks/gunicorn.yml), the page is served
/// on the forwarded port and on the VM's address, and `vagrant provision` changes nothing.
fn vagrant_up_with_the_projects_vagrantfile() {
    // The tools of harness/vm/install-deps.sh.
    require!(
        Root,
        Tool("vagrant"),
        Tool("libvirtd"),
        Tool("virtlogd"),
        Tool("virsh"),
        Tool("qemu-system-x86_64"),
        Tool("ip"),
        Tool("curl")
    );
    let started = Instant::now();
    let boxname = harness("harness/vm/box.sh", &[]);
    let box_ready = started.elapsed();
    let libvirt = Libvirt::start();
    let libvirt_ready = started.elapsed();
    let state = tempfile::Builder::new().prefix("converge-vagrant").tempdir().unwrap();
    let binary = converge_binary(state.path());
    let vagrant = Vagrant { libvirt: &libvirt, state, binary, boxname };

    let up = Instant::now();
    let (ok, out) = vagrant.run(&["up", "--provider=libvirt"]);
    let up = up.elapsed();
    assert!(ok, "vagrant up failed:\n{}", tail(&out));
    assert!(out.contains("package: nginx: install") && out.contains("Apply complete"), "{}", tail(&out));

    // From outside the VM: the port Vagrant forwards (8080 -> 80), and the VM's own address.
    let forwarded = curl_page(
        || vagrant.in_netns(&["curl", "-sS", "--max-time", "10", "http://127.0.0.1:8080/"]),
        Duration::from_secs(20),
    );
    assert_eq!(forwarded, PAGE, "through nginx, on the forwarded port");
    let (ok, config) = vagrant.run(&["ssh-config"]);
    assert!(ok, "{config}");
    let address = config
        .lines()
        .find_map(|line| line.trim().strip_prefix("HostName "))
        .unwrap_or_else(|| panic!("no HostName in vagrant ssh-config: {config}"))
        .trim()
        .to_owned();
    let direct = curl_page(
        || vagrant.in_netns(&["curl", "-sS", "--max-time", "10", &format!("http://{address}/")]),
        Duration::from_secs(10),
    );
    assert_eq!(direct, PAGE, "through nginx, on the VM's address {address}");
    let (ok, socket) =
        vagrant.run(&["ssh", "-c", "curl -sS --max-time 10 --unix-socket /run/gunicorn/socket http://localhost/"]);
    assert!(ok && socket.contains(PAGE), "on gunicorn's socket: {socket}");

    let provision = Instant::now();
    let (ok, out) = vagrant.run(&["provision"]);
    let provision = provision.elapsed();
    assert!(ok, "vagrant provision failed:\n{}", tail(&out));
    assert!(out.contains("No changes. The host matches the playbook."), "{}", tail(&out));
    assert!(!out.contains(": done"), "no trigger ran: {}", tail(&out));

    drop(vagrant);
    drop(libvirt);
    eprintln!(
        "Vagrant tier: box ready after {box_ready:.1?}, libvirtd after {libvirt_ready:.1?}, vagrant up {up:.1?}, \
         vagrant provision (no-op) {provision:.1?}, whole test {:.1?}",
        started.elapsed()
    );
}
