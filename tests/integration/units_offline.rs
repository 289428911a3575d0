//! `unit` without a system bus: under `--root` (an image) enabling is the `[Install]` symlinks and
//! masking a link to /dev/null, as `systemctl --root` does; on a live host without a bus, plan
//! says so and apply refuses before changing anything.

use std::fs;
use std::path::Path;

use crate::support::Test;

tests![
    enabling_under_root_makes_the_install_symlinks,
    a_package_unit_is_enabled_and_masked_by_links,
    removing_a_unit_under_root_disables_and_deletes_it,
    without_a_bus_plan_says_so_and_apply_refuses,
    an_instance_is_enabled_under_root_by_a_link_to_its_template,
    a_template_is_never_enabled_and_an_instance_has_no_content,
];

const SOCKET: &str = "resources:
  - unit: app.socket
    content: |
      [Socket]
      ListenStream=/run/app.sock
      [Install]
      WantedBy=sockets.target
      Alias=web.socket
    enabled: ENABLED
";

fn enabling_under_root_makes_the_install_symlinks() {
    let test = Test::new().playbook(&SOCKET.replace("ENABLED", "true"));
    let run = test.apply().success();
    assert!(run.stdout.contains("enabled: true"), "{}", run.stdout);
    assert!(run.stdout.contains("daemon-reload: skipped (offline root"), "{}", run.stdout);
    let wants = test.host_path("/etc/systemd/system/sockets.target.wants/app.socket");
    assert_eq!(fs::read_link(&wants).unwrap(), Path::new("/etc/systemd/system/app.socket"));
    assert_eq!(
        fs::read_link(test.host_path("/etc/systemd/system/web.socket")).unwrap(),
        Path::new("/etc/systemd/system/app.socket")
    );
    test.expect_file(
        "/etc/systemd/system/app.socket",
        "[Socket]\nListenStream=/run/app.sock\n[Install]\nWantedBy=sockets.target\nAlias=web.socket\n",
    );
    test.plan().code(0);

    let test = test.playbook(&SOCKET.replace("ENABLED", "false"));
    let run = test.apply().success();
    assert!(run.stdout.contains("enabled: true -> false"), "{}", run.stdout);
    test.expect_absent("/etc/systemd/system/sockets.target.wants/app.socket")
        .expect_absent("/etc/systemd/system/web.socket");
    test.plan().code(0);
}

fn a_package_unit_is_enabled_and_masked_by_links() {
    let test = Test::new()
        .playbook(
            "resources:\n  - unit: nginx.service\n    enabled: true\n  - unit: apache2.service\n    masked: true\n",
        )
        .host_file(
            "/lib/systemd/system/nginx.service",
            "[Service]\nExecStart=/usr/sbin/nginx\n[Install]\nWantedBy=multi-user.target\n",
        )
        .host_file("/lib/systemd/system/apache2.service", "[Service]\nExecStart=/usr/sbin/apache2\n");
    test.apply().success();
    let wants = test.host_path("/etc/systemd/system/multi-user.target.wants/nginx.service");
    assert_eq!(fs::read_link(wants).unwrap(), Path::new("/lib/systemd/system/nginx.service"));
    assert_eq!(fs::read_link(test.host_path("/etc/systemd/system/apache2.service")).unwrap(), Path::new("/dev/null"));
    test.plan().code(0);
}

fn removing_a_unit_under_root_disables_and_deletes_it() {
    let test = Test::new().playbook(&SOCKET.replace("ENABLED", "true"));
    test.apply().success();
    let test = test.playbook("resources:\n  - unit: app.socket\n    state: absent\n");
    let run = test.apply().success();
    assert!(run.stdout.contains("- unit:app.socket (remove)"), "{}", run.stdout);
    test.expect_absent("/etc/systemd/system/app.socket")
        .expect_absent("/etc/systemd/system/sockets.target.wants/app.socket");
    test.plan().code(0);
}

fn without_a_bus_plan_says_so_and_apply_refuses() {
    require!(Root, NoSystemBus); // a machine without a system bus, as CI's is
    let test = Test::new().playbook(
        "resources:\n  - unit: converge-test-nobus.service\n    content: \"[Service]\\nExecStart=/bin/true\\n\"\n",
    );
    let run = test.run_args(&["plan", "{playbook}"]).code(2);
    assert!(run.stdout.contains("Unit state could not be read: there is no system bus here"), "{}", run.stdout);
    let run = test.run_args(&["apply", "{playbook}"]).code(1);
    assert!(run.stderr.contains("the system bus is not reachable"), "{}", run.stderr);
    assert!(!Path::new("/etc/systemd/system/converge-test-nobus.service").exists(), "nothing was written");
}

fn an_instance_is_enabled_under_root_by_a_link_to_its_template() {
    let test = Test::new().playbook(
        "resources:
  - unit: worker@.service
    content: |
      [Service]
      ExecStart=/usr/local/bin/worker %i
      [Install]
      WantedBy=multi-user.target
  - unit: worker@mail.service
    enabled: true
",
    );
    let run = test.apply().success();
    assert!(run.stdout.contains("unit:worker@mail.service"), "{}", run.stdout);
    let wants = test.host_path("/etc/systemd/system/multi-user.target.wants/worker@mail.service");
    assert_eq!(fs::read_link(wants).unwrap(), Path::new("/etc/systemd/system/worker@.service"));
    test.expect_absent("/etc/systemd/system/multi-user.target.wants/worker@.service");
    test.plan().code(0);
}

fn a_template_is_never_enabled_and_an_instance_has_no_content() {
    let run = Test::new()
        .playbook(
            "resources:
  - unit: worker@.service
    content: \"[Service]\\nExecStart=/bin/true\\n\"
    active: true
  - unit: worker@one.service
    content: \"[Service]\\nExecStart=/bin/true\\n\"
",
        )
        .validate()
        .code(1);
    assert!(run.stderr.contains("`worker@.service` is a template"), "{}", run.stderr);
    assert!(run.stderr.contains("`worker@one.service` is an instance of `worker@.service`"), "{}", run.stderr);
}
