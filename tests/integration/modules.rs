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
    drop_ins_for_a_module_unit_merge_into_it,
    a_second_content_for_a_module_unit_names_both_lines,
    gunicorn_environment_is_a_hidden_file_and_service_settings_are_checked,
    converge_modules_name_shows_the_resources_as_a_playbook_would_write_them,
    converge_modules_name_explains_an_unknown_module_and_missing_parameters,
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
    let run = test.run_args(&["modules", "--playbook", "{playbook}"]).success();
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

const GUNICORN: &str = "  - use: gunicorn
    with: {name: app, user: www-data, app_dir: /srv/app, venv: /srv/venv, wsgi: app:application}
  - directory: /srv
  - virtualenv: /srv/venv
    packages: [gunicorn]
";

fn drop_ins_for_a_module_unit_merge_into_it() {
    // Before the module's entry or after it, the drop-ins land beside its unit file.
    for playbook in [
        format!("resources:\n{GUNICORN}  - unit: app.service\n    dropins:\n      limits.conf: \"[Service]\\nLimitNOFILE=8192\\n\"\n"),
        format!("resources:\n  - unit: app.service\n    dropins: {{limits.conf: \"[Service]\\nLimitNOFILE=8192\\n\"}}\n{GUNICORN}"),
    ] {
        let test = Test::new().playbook(&playbook);
        let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "--no-color"]).code(2);
        assert!(run.stdout.contains("app.service.d/limits.conf"), "{}", run.stdout);
        assert!(run.stdout.contains("+LimitNOFILE=8192"), "{}", run.stdout);
        assert_eq!(run.stdout.matches("+ unit:app.service").count(), 1, "{}", run.stdout);
    }
}

fn a_second_content_for_a_module_unit_names_both_lines() {
    let test = Test::new().playbook(&format!(
        "resources:\n{GUNICORN}  - unit: app.service\n    content: \"[Service]\\nExecStart=/bin/true\\n\"\n"
    ));
    let err = test.validate().code(1).err();
    assert!(err.contains("may only add `dropins:`"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    let test = Test::new().playbook(&format!(
        "resources:\n{GUNICORN}  - unit: app.service\n    dropins: {{a.conf: one}}\n  - unit: app.service\n    dropins: {{a.conf: two}}\n"
    ));
    let err = test.validate().code(1).err();
    assert!(err.contains("both entries for `app.service` set the drop-in `a.conf`"), "{err}");
}

fn gunicorn_environment_is_a_hidden_file_and_service_settings_are_checked() {
    let playbook = "resources:
  - use: gunicorn
    with:
      name: app
      user: www-data
      app_dir: /srv/app
      venv: /srv/venv
      wsgi: app:application
      environment: {GREETING: 'hi \"there\"', DEBUG: false}
      service: {TimeoutStartSec: 30, Environment: [A=1, B=2]}
  - directory: /srv
  - virtualenv: /srv/venv
    packages: [gunicorn]
";
    let test = Test::new().with_accounts().host_file("/etc/default/.keep", "").playbook(playbook);
    let run = test.run_args(&["plan", "{playbook}", "--root", "{root}", "--no-color"]).code(2);
    assert!(run.stdout.contains("+ file:/etc/default/app (create)"), "{}", run.stdout);
    assert!(!run.stdout.contains("there"), "the environment is never shown: {}", run.stdout);
    assert!(run.stdout.contains("mode: 0640\n      owner: root\n      group: www-data"), "{}", run.stdout);
    for line in ["+EnvironmentFile=/etc/default/app", "+Environment=A=1\n", "+Environment=B=2\n", "+TimeoutStartSec=30"] {
        assert!(run.stdout.contains(line), "{line}: {}", run.stdout);
    }
    let mistakes = "resources:\n  - use: gunicorn\n    with:\n      user: www-data\n      app_dir: /srv/app\n      venv: /srv/venv\n      wsgi: a:b\n      environment: {2FA: x, NAME: \"a\\nb\"}\n      service: {Exec-Start: x}\n";
    let err = crate::lines::flat(&Test::new().playbook(mistakes).validate().code(1).err());
    assert!(err.contains("`2FA` is not a valid name here"), "{err}");
    assert!(err.contains("the value of `NAME` holds a line break"), "{err}");
    assert!(err.contains("`Exec-Start` is not a valid name here"), "{err}");
}

fn converge_modules_name_shows_the_resources_as_a_playbook_would_write_them() {
    let test = Test::new();
    let args = ["modules", "nginx-proxy", "--var", "name=mysite", "--var", "upstream=unix:/run/x.sock", "--var", "listen=8080"];
    let run = test.run_args(&args).success();
    for line in ["#   listen: 8080\n", "#   server_name: \"_\"  # default\n", "  # nginx_site:mysite\n", "    remove_default: true\n", "          listen 8080;\n"] {
        assert!(run.stdout.contains(line), "{line}: {}", run.stdout);
    }
    // What it prints is a playbook as it stands.
    let test = test.playbook(&run.stdout);
    assert_eq!(test.validate().success().stdout, "The playbook is valid: 2 resources.\n");
    let json = test.run_args(&[&args[..], &["--output", "json"]].concat()).success();
    let record: serde_json::Value = serde_json::from_str(json.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(record["type"], "module_resources");
    assert_eq!(record["resources"][1]["id"], "nginx_site:mysite");
    assert_eq!(record["params"][3], serde_json::json!({"name": "listen", "value": 8080, "default": false}));
    // A resource its `when:` leaves out is named.
    let run = test
        .run_args(&["modules", "gunicorn", "--var", "user=app", "--var", "app_dir=/srv/a", "--var", "venv=/srv/v", "--var", "wsgi=a:b"])
        .success();
    assert!(run.stdout.contains("  # a file left out by `when: environment | length > 0`\n"), "{}", run.stdout);
    assert!(run.stdout.contains("--workers 3 --bind unix:/run/gunicorn.sock a:b\n"), "{}", run.stdout);
}

fn converge_modules_name_explains_an_unknown_module_and_missing_parameters() {
    let err = crate::lines::flat(&Test::new().run_args(&["modules", "nginx-proxi"]).code(1).stderr);
    assert!(err.contains("no module `nginx-proxi` (did you mean `nginx-proxy`?); the modules here are gunicorn,"), "{err}");
    let err = crate::lines::flat(&Test::new().run_args(&["modules", "gunicorn", "--var", "user=app"]).code(1).stderr);
    assert!(err.contains("needs app_dir, venv, wsgi"), "{err}");
    assert!(err.contains("converge modules gunicorn --var app_dir=... --var venv=... --var wsgi=..."), "{err}");
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
