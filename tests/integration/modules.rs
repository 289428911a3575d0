//! Modules: typed parameters in, resources out; shipped in the binary, overridable by the
//! playbook's own modules/ folder; listed by `converge modules`.

use crate::support::Test;

tests![
    shipped_modules_expand_into_resources,
    parameter_mistakes_point_at_the_use_site,
    a_playbook_module_overrides_a_shipped_one_and_is_listed,
    converge_modules_lists_parameters,
    modules_stay_within_100_columns_and_json_defaults_keep_their_types,
    a_package_named_by_a_module_and_the_playbook_is_one_install,
    a_modules_resource_can_loop_over_a_list_parameter,
];

fn shipped_modules_expand_into_resources() {
    let test = Test::new().playbook(
        "resources:
  - use: nginx-proxy
    with:
      name: mysite
      upstream: unix:/run/gunicorn.sock
      listen: 8080
      static_dir: /srv/mysite/static
",
    );
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "-q"]).code(2);
    // Installing nginx creates it; under --root the reload is skipped, as apply says.
    assert_eq!(run.stdout, "Plan: 2 to create, 0 to update, 0 to remove; 1 trigger (skipped).\n");
    let run = test.plan();
    for line in ["listen 8080;", "alias /srv/mysite/static/;", "proxy_pass http://unix:/run/gunicorn.sock;"] {
        assert!(
            run.stdout.lines().any(|l| l.trim_start().starts_with('+') && l.contains(line)),
            "{line}:\n{}",
            run.stdout
        );
    }
}

fn parameter_mistakes_point_at_the_use_site() {
    let test = Test::new().playbook(
        "resources:
  - use: gunicorn
    with:
      user: www-data
      app_dir: /srv/app
      wsgi: app:application
      workers: many
      timout: 30
  - use: nginx-prox
",
    );
    insta::assert_snapshot!(test.validate().code(1).err());
}

fn a_playbook_module_overrides_a_shipped_one_and_is_listed() {
    let test = Test::new()
        .playbook("resources:\n  - use: nginx-proxy\n    with: {greeting: hi}\n")
        .file(
            "modules/nginx-proxy.yml",
            "description: my own\nparams:\n  greeting:\n    type: string\n    description: what to say\nresources:\n  - file: /etc/greeting\n    content: \"{{ greeting }}\\n\"\n",
        )
        .file("modules/motd.yml", "description: a message of the day\nparams:\n  text: {type: string, default: hello}\nresources:\n  - file: /etc/motd\n    content: \"{{ text }}\\n\"\n");
    test.apply().success();
    test.expect_file("/etc/greeting", "hi\n");
    let run = test.run_args(&["modules", "{playbook}"]).success();
    assert!(run.stdout.contains("gunicorn (shipped)"), "{}", run.stdout);
    assert!(run.out().contains("nginx-proxy ([TMP]/modules/nginx-proxy.yml)\n  my own"), "{}", run.stdout);
    assert!(run.stdout.contains("  text  string  default hello"), "{}", run.stdout);
}

fn converge_modules_lists_parameters() {
    let run = Test::new().run_args(&["modules"]).success();
    insta::assert_snapshot!(run.stdout);
}

fn modules_stay_within_100_columns_and_json_defaults_keep_their_types() {
    let run = Test::new().run_args(&["modules"]).success();
    for line in run.stdout.lines() {
        assert!(line.chars().count() <= 100, "a line wider than 100 columns:\n{line}");
    }
    let run = Test::new().run_args(&["modules", "--output", "json"]).success();
    let records: Vec<serde_json::Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let param = |module: &str, name: &str| {
        let m = records.iter().find(|r| r["name"] == module).unwrap();
        m["params"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["default"].clone()
    };
    assert_eq!(param("gunicorn", "workers"), serde_json::json!(3));
    assert_eq!(param("nginx-proxy", "listen"), serde_json::json!(80));
    assert_eq!(param("nginx-proxy", "remove_default"), serde_json::json!(true));
    assert_eq!(param("nginx-proxy", "static_dir"), serde_json::json!(""));
    assert_eq!(param("gunicorn", "user"), serde_json::Value::Null);
}

fn a_package_named_by_a_module_and_the_playbook_is_one_install() {
    let test = Test::new().playbook(
        "resources:
  - use: nginx-proxy
    with:
      name: mysite
      upstream: unix:/run/gunicorn.sock
  - apt: [nginx, curl]
",
    );
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "--no-color"]).code(2);
    assert_eq!(run.stdout.matches("package: nginx: install").count(), 1, "{}", run.stdout);
    assert_eq!(run.stdout.matches("package: curl: install").count(), 1, "{}", run.stdout);
    assert!(run.stdout.contains("Plan: 3 to create, 0 to update, 0 to remove;"), "{}", run.stdout);
}

/// A module's resource with `for_each:` over a list parameter: one resource per item.
fn a_modules_resource_can_loop_over_a_list_parameter() {
    let test = Test::new()
        .playbook("resources:\n  - use: greetings\n    with: {names: [ann, bob]}\n")
        .file(
            "modules/greetings.yml",
            "description: one greeting per name\nparams:\n  names: {type: list, description: who}\nresources:\n  - file: \"/etc/hello-{{ item }}\"\n    for_each: \"{{ names }}\"\n    content: \"hello {{ item }}\\n\"\n",
        );
    test.apply().success();
    test.expect_file("/etc/hello-ann", "hello ann\n").expect_file("/etc/hello-bob", "hello bob\n");
    assert!(test.apply().success().stdout.starts_with("No changes."));
}
