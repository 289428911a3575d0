//! sysctl: a kernel parameter's file in /etc/sysctl.d, in a temporary root (where it is written
//! and never applied: `sysctl -p` would set this machine's kernel).

use crate::support::Test;

tests![writes_the_file_then_plans_nothing, a_changed_value_is_a_content_diff, a_bad_key_is_an_error_at_its_line];

const FORWARD: &str = "resources:\n  - sysctl: net.ipv4.ip_forward\n    value: \"1\"\n";

fn writes_the_file_then_plans_nothing() {
    let test = Test::new().playbook(FORWARD);
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("+ sysctl:net.ipv4.ip_forward (create)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+net.ipv4.ip_forward = 1"), "{}", plan.stdout);
    test.apply().success();
    test.expect_file("/etc/sysctl.d/net.ipv4.ip_forward.conf", "# Managed by converge.\nnet.ipv4.ip_forward = 1\n");
    test.plan().code(0);
}

fn a_changed_value_is_a_content_diff() {
    let test = Test::new().playbook(FORWARD);
    test.apply().success();
    let test = test.playbook("resources:\n  - sysctl: net.ipv4.ip_forward\n    value: \"0\"\n");
    let plan = test.plan().code(2);
    assert!(plan.stdout.contains("~ sysctl:net.ipv4.ip_forward (update)"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("-net.ipv4.ip_forward = 1") && plan.stdout.contains("+net.ipv4.ip_forward = 0"),
        "{}",
        plan.stdout
    );
    test.apply().success();
    test.expect_file("/etc/sysctl.d/net.ipv4.ip_forward.conf", "# Managed by converge.\nnet.ipv4.ip_forward = 0\n");
    let test = test.playbook("resources:\n  - sysctl: net.ipv4.ip_forward\n    state: absent\n");
    test.apply().success();
    test.expect_absent("/etc/sysctl.d/net.ipv4.ip_forward.conf");
}

fn a_bad_key_is_an_error_at_its_line() {
    let test =
        Test::new().playbook("resources:\n  - sysctl: ../../etc/passwd\n    value: \"1\"\n  - sysctl: vm.swappiness\n");
    let run = test.validate().code(1);
    let err = run.err();
    assert!(err.contains("`../../etc/passwd` is not a sysctl key"), "{err}");
    assert!(err.contains("playbook.yml:2:"), "{err}");
    assert!(err.contains("this sysctl needs `value`"), "{err}");
}
