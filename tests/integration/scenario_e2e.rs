//! The mission, end to end, in a fresh container booted with systemd: playbooks/gunicorn.yml takes
//! a machine without nginx, gunicorn or the venv to a site that nginx serves from gunicorn, in one
//! apply; a second apply changes nothing and spawns no apt, python or systemctl process; edits,
//! broken edits, hand edits and a killed run are all handled. Offline: nginx comes from a local
//! apt repository and gunicorn from wheels, both fetched beforehand by harness/artifacts.sh.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{OFFLINE, PAGE};
use crate::systemd_e2e::Container;

tests![
    one_apply_from_nothing_then_nothing,
    edits_broken_edits_hand_edits_and_a_killed_run,
    the_modules_playbook_serves_too,
    a_policy_that_forbids_starts_makes_the_plan_start_nginx,
    with_uv_the_venv_is_built_while_apt_installs_nginx,
];


fn artifacts() -> PathBuf {
    let out = crate::support::harness_script("harness/artifacts.sh")
        .output()
        .expect("harness/artifacts.sh");
    assert!(out.status.success(), "harness/artifacts.sh: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().expect("a path").trim())
}

/// A fresh machine for the scenario: no nginx (offered by a local repository), the wheels and the
/// repository's playbooks copied in.
pub(crate) fn machine(test: &str) -> Container {
    let c = Container::boot(test);
    let artifacts = artifacts();
    c.sh("apt-get purge -y -q nginx nginx-common >/dev/null 2>&1; rm -rf /etc/nginx /etc/apt/sources.list.d/*");
    c.copy_in(&artifacts.join("debs"), "/srv/debs");
    c.copy_in(&artifacts.join("wheels"), "/srv/wheels");
    c.copy_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks"), "/root/playbooks");
    c.sh("echo 'deb [trusted=yes] file:/srv/debs ./' > /etc/apt/sources.list && apt-get update -q >/dev/null");
    assert_eq!(c.exec(&["test", "-e", "/usr/sbin/nginx"]).status.code(), Some(1), "the machine starts without nginx");
    c
}

/// `converge ARGS PLAYBOOK` inside, offline; (exit code, stdout, stderr).
pub(crate) fn converge(c: &Container, args: &[&str], playbook: &str, vars: &[&str]) -> (i32, String, String) {
    let mut all = vec!["converge"];
    all.extend_from_slice(args);
    all.push(playbook);
    all.extend_from_slice(&OFFLINE);
    all.extend_from_slice(vars);
    let out = c.exec(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn apply(c: &Container, playbook: &str, vars: &[&str]) -> String {
    let (code, out, err) = converge(c, &["apply"], playbook, vars);
    assert_eq!(code, 0, "apply {playbook} {vars:?}\nstdout:\n{out}\nstderr:\n{err}");
    out
}

/// nginx's answer on port 80, and gunicorn's on its socket, are the app's page. nginx reloads
/// gracefully: its old workers may answer for a moment after the reload job is done.
fn serves(c: &Container, socket: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut through_nginx = c.sh("curl -sS --max-time 10 http://127.0.0.1/");
    while through_nginx != PAGE && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        through_nginx = c.sh("curl -sS --max-time 10 http://127.0.0.1/");
    }
    assert_eq!(through_nginx, PAGE, "through nginx");
    let direct = c.sh(&format!("curl -sS --max-time 10 --unix-socket {socket} http://localhost/"));
    assert_eq!(direct, PAGE, "on gunicorn's socket");
}

/// Every later call of apt-get, systemctl or the Python interpreter is logged to /root/spawned.
fn log_spawns(c: &Container) {
    // The interpreter python3 names: python3.11 on bookworm, python3.13 on trixie.
    let python = format!("/usr/bin/{}", c.sh("readlink /usr/bin/python3"));
    for program in ["/usr/bin/apt-get", "/usr/bin/systemctl", python.as_str()] {
        c.sh(&format!(
            "mv {program} {program}.real && printf '#!/bin/sh\\necho \"{program} $*\" >> /root/spawned\\nexec {program}.real \"$@\"\\n' > {program} && chmod 755 {program}"
        ));
    }
    c.sh("touch /root/spawned");
}

/// The JSON records of `converge COMMAND --output json PLAYBOOK` inside, offline; the command
/// must end with `code`.
fn records(c: &Container, command: &str, playbook: &str, vars: &[&str], code: i32) -> Vec<serde_json::Value> {
    let (got, out, err) = converge(c, &[command, "--output", "json"], playbook, vars);
    assert_eq!(got, code, "{command} {playbook}\nstdout:\n{out}\nstderr:\n{err}");
    out.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

/// The records of one type.
fn of_type<'a>(records: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

/// The first plan of a fresh machine is what the apply after it did: the same resources with
/// the same changes, none of them "changed since the plan", the same triggers in the same
/// order, the same counts. Returns the plan's resource records.
fn plan_is_what_apply_did(plan: &[serde_json::Value], applied: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let resource = |r: &&serde_json::Value| (r["id"].clone(), r["action"].clone(), r["changes"].clone());
    let planned: Vec<_> = of_type(plan, "resource").iter().map(resource).collect();
    let done: Vec<_> = of_type(applied, "applied").iter().map(resource).collect();
    assert_eq!(planned, done, "the plan's resources and changes are what apply did");
    let changed_since = of_type(applied, "applied").iter().filter(|r| r["as_planned"] != true).count();
    assert_eq!(changed_since, 0, "no resource changed since the plan: {applied:#?}");
    let trigger = |t: &&serde_json::Value| (t["step"].clone(), t["unit"].clone());
    let planned: Vec<_> = of_type(plan, "trigger").iter().map(trigger).collect();
    let ran: Vec<_> = of_type(applied, "trigger-ran").iter().map(trigger).collect();
    assert_eq!(planned, ran, "the plan's triggers are those apply ran");
    let reasons = of_type(applied, "trigger-ran").into_iter().map(|t| t["reason"].to_string());
    assert!(reasons.clone().all(|r| !r.contains("did not finish")), "this run's own: {:?}", reasons.collect::<Vec<_>>());
    let counts = |r: &serde_json::Value| ["create", "update", "remove", "run", "triggers"].map(|k| r[k].clone());
    assert_eq!(counts(of_type(plan, "plan")[0]), counts(of_type(applied, "apply")[0]), "the summary counts");
    of_type(plan, "resource").into_iter().cloned().collect()
}

fn one_apply_from_nothing_then_nothing() {
    let c = machine("scenario-fresh");
    let playbook = "/root/playbooks/gunicorn.yml";
    let plan = records(&c, "plan", playbook, &[], 2);
    // The .debs the plan read are kept: a second plan downloads nothing.
    let debs = "stat -c '%n %i %Y' /var/cache/converge/debs/*.deb";
    let kept = c.sh(debs);
    assert!(kept.contains("/nginx-common_"), "{kept}");
    assert_eq!(records(&c, "plan", playbook, &[], 2), plan, "the same plan again");
    assert_eq!(c.sh(debs), kept, "nothing downloaded again");
    let started = Instant::now();
    let applied = records(&c, "apply", playbook, &[], 0);
    let first = started.elapsed();
    let resources = plan_is_what_apply_did(&plan, &applied);
    // The plan foresaw what the nginx package brings: the default site that nginx_site removes
    // (with where it comes from), and nginx running, so that the new site is a reload.
    let site = resources.iter().find(|r| r["id"] == "nginx_site:mysite").expect("the site is planned");
    assert!(site["changes"].as_array().unwrap().iter().any(|c| c["attr"] == "default site"), "{site}");
    assert!(site["foreseen"][0].as_str().unwrap().contains("/etc/nginx/sites-enabled/default"), "{site}");
    let triggers = of_type(&plan, "trigger");
    let nginx = triggers.iter().find(|t| t["unit"] == "nginx.service").unwrap_or_else(|| panic!("{triggers:?}"));
    assert_eq!(nginx["step"], "reload", "{nginx}");
    assert!(nginx["reason"].as_str().unwrap().contains("comes with package nginx-common"), "{nginx}");
    let install = resources.iter().find(|r| r["id"] == "apt:nginx,python3-venv").expect("the install is planned");
    assert_eq!(install["action"], "create", "installing is `+`, with its packages: {install}");
    assert_eq!(install["changes"][0]["to"], "nginx: install", "{install}");
    serves(&c, "/run/gunicorn/socket");
    assert_eq!(
        c.sh("find /home/vagrant/.venvs/mysite ! -user vagrant | wc -l"),
        "0",
        "every file of the venv is vagrant's"
    );
    assert_eq!(c.show("gunicorn.socket", "UnitFileState"), "enabled");

    log_spawns(&c);
    let started = Instant::now();
    let out = apply(&c, "/root/playbooks/gunicorn.yml", &[]);
    let second = started.elapsed();
    assert!(out.starts_with("No changes. The host matches the playbook."), "{out}");
    assert!(!out.contains(": done"), "no trigger ran: {out}");
    assert_eq!(c.sh("cat /root/spawned"), "", "the no-op apply spawned apt, python or systemctl");
    serves(&c, "/run/gunicorn/socket");
    eprintln!("scenario timings (container): first apply {first:?}, no-op apply {second:?}");
}

fn edits_broken_edits_hand_edits_and_a_killed_run() {
    let c = machine("scenario-edits");
    let playbook = "/root/playbooks/gunicorn.yml";
    apply(&c, playbook, &[]);
    serves(&c, "/run/gunicorn/socket");

    // A new worker count: the plan shows the unit's diff and the triggers; the apply serves from
    // the new service, without a single failed request after it.
    let (code, plan, _) = converge(&c, &["plan"], playbook, &["--var", "workers=5"]);
    assert_eq!(code, 2, "{plan}");
    assert!(plan.contains("--workers 3 --pid") && plan.contains("--workers 5 --pid"), "{plan}");
    assert!(plan.contains("daemon-reload") && plan.contains("stop gunicorn.service"), "{plan}");
    apply(&c, playbook, &["--var", "workers=5"]);
    let codes = c.sh("for i in $(seq 20); do curl -s -o /dev/null -w '%{http_code} ' http://127.0.0.1/; done");
    assert_eq!(codes.split_whitespace().filter(|code| *code != "200").count(), 0, "{codes}");
    assert!(c.sh("ps -eo args | grep -c '[g]unicorn --workers 5'").parse::<u32>().unwrap() > 0);

    // A broken nginx edit is refused, and the site keeps serving.
    let (code, out, err) =
        converge(&c, &["apply"], playbook, &["--var", "workers=5", "--var", "server_name=localhost; bogus"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("nginx rejected the configuration") && err.contains("bogus"), "{err}");
    serves(&c, "/run/gunicorn/socket");

    // A hand edit of gunicorn.service is detected, put back, and systemd reloaded.
    c.sh("sed -i 's/--workers 5/--workers 2/' /etc/systemd/system/gunicorn.service");
    let out = apply(&c, playbook, &["--var", "workers=5"]);
    assert!(out.contains("daemon-reload: done"), "{out}");
    assert_eq!(c.show("gunicorn.service", "NeedDaemonReload"), "no");
    serves(&c, "/run/gunicorn/socket");

    // Killed between the file writes and the triggers, then run again: everything serves.
    let killed = c.sh("cat /root/playbooks/gunicorn.yml")
        + "\n  - command: [sh, -c, 'touch /root/killed; kill -9 $PPID']\n    creates: /root/killed\n";
    c.write("/root/playbooks/killed.yml", &killed);
    let (code, _, _) = converge(&c, &["apply"], "/root/playbooks/killed.yml", &["--var", "workers=7"]);
    assert_ne!(code, 0, "converge was killed");
    assert_eq!(c.show("gunicorn.service", "NeedDaemonReload"), "yes", "the unit changed and no trigger ran");
    let out = apply(&c, "/root/playbooks/killed.yml", &["--var", "workers=7"]);
    assert!(out.contains("daemon-reload: done"), "{out}");
    serves(&c, "/run/gunicorn/socket");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.sh("ps -eo args | grep -c '[g]unicorn --workers 7' || true") == "0" {
        assert!(Instant::now() < deadline, "gunicorn never ran with 7 workers");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn the_modules_playbook_serves_too() {
    let c = machine("scenario-modules");
    // nginx named twice, by the playbook and by the nginx-proxy module: one install, in the plan
    // and in the counts, as in apply.
    let twice = c.sh("cat /root/playbooks/gunicorn-modules.yml").replace("- apt: python3-venv", "- apt: [nginx, python3-venv]");
    c.write("/root/playbooks/twice.yml", &twice);
    let plan = records(&c, "plan", "/root/playbooks/twice.yml", &[], 2);
    let installs = plan.iter().flat_map(|r| r["changes"].as_array().cloned().unwrap_or_default());
    assert_eq!(installs.filter(|c| c["to"] == "nginx: install").count(), 1, "{plan:#?}");
    plan_is_what_apply_did(&plan, &records(&c, "apply", "/root/playbooks/twice.yml", &[], 0));
    serves(&c, "/run/gunicorn.sock");
    let out = apply(&c, "/root/playbooks/gunicorn-modules.yml", &[]);
    assert!(out.starts_with("No changes."), "{out}");
    // The module's environment reaches the process; its service settings and the playbook's
    // drop-in are in effect.
    assert_eq!(c.sh("stat -c '%a %U:%G' /etc/default/gunicorn"), "640 root:www-data");
    let pid = c.sh("systemctl show -p MainPID --value gunicorn.service");
    assert_ne!(pid, "0", "serving started gunicorn");
    let environ = c.sh(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"));
    assert!(environ.lines().any(|l| l == "APP_ENV=production"), "{environ}");
    let shown = c.sh("systemctl show -p LimitNOFILE -p TimeoutStartUSec -p DropInPaths gunicorn.service");
    assert!(shown.contains("LimitNOFILE=8192\n"), "{shown}");
    assert!(shown.contains("TimeoutStartUSec=30s"), "{shown}");
    assert!(shown.contains("/etc/systemd/system/gunicorn.service.d/limits.conf"), "{shown}");
}

/// Where /usr/sbin/policy-rc.d forbids maintainer scripts to start services (as in image
/// builders), the nginx package leaves nginx stopped: the first plan says `start nginx.service`,
/// with why, and apply does just that.
fn a_policy_that_forbids_starts_makes_the_plan_start_nginx() {
    let c = machine("scenario-policy");
    c.write("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n");
    c.sh("chmod 755 /usr/sbin/policy-rc.d");
    let playbook = "vars: {wheels: unused, offline: true}\nresources:\n  - apt: nginx\n  - nginx_site: plain\n    \
                    content: \"server { listen 8080; return 200 plain; }\\n\"\n    remove_default: true\n";
    c.write("/root/playbooks/policy.yml", playbook);
    let plan = records(&c, "plan", "/root/playbooks/policy.yml", &[], 2);
    let triggers = of_type(&plan, "trigger");
    let nginx = triggers.iter().find(|t| t["unit"] == "nginx.service").unwrap_or_else(|| panic!("{triggers:?}"));
    assert_eq!(nginx["step"], "start", "{nginx}");
    assert!(nginx["reason"].as_str().unwrap().contains("policy-rc.d forbids its postinst to start it"), "{nginx}");
    plan_is_what_apply_did(&plan, &records(&c, "apply", "/root/playbooks/policy.yml", &[], 0));
    assert_eq!(c.sh("curl -sS --max-time 10 http://127.0.0.1:8080/"), "plain");
    assert_eq!(c.sh("ls /etc/nginx/sites-enabled"), "plain", "the default site is gone");
}

/// With uv in the machine, `installer: auto` builds the venv with it, and since python3 is there
/// the venv waits for no package: it is built while apt installs nginx (their records' times
/// overlap), and the result is the same site.
fn with_uv_the_venv_is_built_while_apt_installs_nginx() {
    require!(Uv);
    let c = machine("scenario-uv");
    c.copy_in(&crate::support::uv_binary().unwrap(), "/usr/local/bin/uv");
    let (code, out, err) = converge(&c, &["apply", "--output", "json"], "/root/playbooks/gunicorn.yml", &[]);
    assert_eq!(code, 0, "{out}{err}");
    let applied: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|r| r["type"] == "applied")
        .collect();
    let times = |prefix: &str| {
        let r = applied.iter().find(|r| r["id"].as_str().unwrap().starts_with(prefix)).expect(prefix);
        let start = r["started_ms"].as_u64().unwrap();
        (start, start + r["duration_ms"].as_u64().unwrap())
    };
    let (apt, venv) = (times("apt:"), times("virtualenv:"));
    assert!(venv.0 < apt.1 && apt.0 < venv.1, "apt {apt:?} and the venv {venv:?} overlap:\n{out}");
    let ids: Vec<&str> = applied.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids[0].starts_with("apt:") && ids.iter().position(|i| i.starts_with("virtualenv:")) > Some(0), "{ids:?}");
    assert!(out.contains(r#"{"attr":"installer","from":null,"to":"uv (/usr/local/bin/uv)"}"#), "{out}");
    serves(&c, "/run/gunicorn/socket");
    assert_eq!(c.sh("grep -c '^uv = ' /home/vagrant/.venvs/mysite/pyvenv.cfg"), "1", "uv made the venv");
    assert_eq!(c.sh("find /home/vagrant/.venvs/mysite ! -user vagrant | wc -l"), "0", "all of it vagrant's");
    let out = apply(&c, "/root/playbooks/gunicorn.yml", &[]);
    assert!(out.starts_with("No changes. The host matches the playbook."), "{out}");
}
