//! `converge schema`: the committed schema is what the binary prints; every shipped playbook and
//! module names it on its first line and is valid against it (a real JSON Schema validator);
//! broken playbooks are not. Every playbook the other tests run and converge accepts is checked
//! against it too (support.rs, `check_against_schema`).

use std::path::Path;

use crate::support::{Test, schema_errors};

tests![
    the_committed_schema_is_what_converge_schema_prints,
    every_shipped_playbook_and_module_names_the_schema_and_is_valid,
    broken_playbooks_fail_the_schema,
];

const HEADER: &str = "# yaml-language-server: $schema=../schema/converge.schema.json\n";

fn the_committed_schema_is_what_converge_schema_prints() {
    let run = Test::new().run_args(&["schema"]).success();
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(converge::kinds::schema::REPO_PATH))
            .expect("schema/converge.schema.json");
    assert!(
        run.stdout == committed,
        "schema/converge.schema.json is stale: run `converge schema > schema/converge.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    jsonschema::draft202012::new(&schema).expect("a valid draft 2020-12 schema");
}

fn every_shipped_playbook_and_module_names_the_schema_and_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for dir in ["playbooks", "modules"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with(HEADER), "{} does not start with {HEADER}", path.display());
            let errors = schema_errors(&text);
            assert!(errors.is_empty(), "{} is not valid against the schema: {errors:#?}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 6, "only {seen} playbooks and modules found");
}

/// Each broken playbook fails the schema, and `converge validate` rejects it too.
fn broken_playbooks_fail_the_schema() {
    let broken = [
        ("unknown kind", "resources:\n  - fiel: /etc/motd\n    content: hi\n"),
        ("misspelled attribute", "resources:\n  - file: /etc/motd\n    content: hi\n    ownr: root\n"),
        ("wrong type", "resources:\n  - user: app\n    uid: [1001]\n"),
        ("not a boolean", "resources:\n  - unit: app.service\n    enabled: maybe\n"),
        ("relative path", "resources:\n  - directory: srv/app\n"),
        ("unknown state", "resources:\n  - file: /etc/motd\n    state: gone\n"),
        ("unknown top-level key", "resource:\n  - file: /etc/motd\n    content: hi\n"),
        ("resources not a list", "resources:\n  file: /etc/motd\n"),
        ("unknown key in use", "resources:\n  - use: nginx-proxy\n    wiht: {name: a, upstream: b}\n"),
    ];
    for (what, yaml) in broken {
        assert!(!schema_errors(yaml).is_empty(), "{what}: the schema accepts\n{yaml}");
        Test::new().playbook(yaml).validate().code(1);
    }
    // And what is only a template now is left to `converge validate`.
    let templated =
        "vars: {on: true, id: 7}\nresources:\n  - user: app\n    uid: \"{{ id }}\"\n    system: \"{{ on }}\"\n";
    assert_eq!(schema_errors(templated), Vec::<String>::new());
}
