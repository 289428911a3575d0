//! Runs, `rollback` and `history` under `--root`: apply v1, apply v2, roll back to v1's tree
//! exactly, roll the rollback back to v2, and retention.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::support::Test;

tests![
    rollback_restores_the_tree_of_the_previous_run_and_can_itself_be_rolled_back,
    rollback_to_n_undoes_every_run_from_n,
    rollback_puts_back_owners_and_groups,
    a_noop_apply_records_nothing_and_retention_drops_old_runs_and_their_content,
    a_failed_run_is_recorded_and_what_cannot_be_restored_is_listed,
    a_unit_file_is_rolled_back_and_its_triggers_are_named,
    a_run_record_this_converge_cannot_read_is_kept_and_never_skipped,
];

const V1: &str = "resources:\n  - directory: /etc/app\n    mode: \"0750\"\n  - file: /etc/app/app.conf\n    content: \"port = 80\\n\"\n  - file: /etc/app/old.conf\n    content: \"old\\n\"\n    mode: \"0600\"\n";
const V2: &str = "resources:\n  - directory: /etc/app\n    mode: \"0755\"\n  - file: /etc/app/app.conf\n    content: \"port = 8000\\n\"\n    mode: \"0640\"\n  - file: /etc/app/old.conf\n    state: absent\n  - symlink: /etc/app/current\n    target: /etc/app/app.conf\n";

/// Every path of the root but the state directory: type, mode, owner, content or target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        if rel.starts_with("var/lib/converge") || rel == "var/lib" || rel == "var" {
            if path.is_dir() && !rel.starts_with("var/lib/converge") {
                walk(root, &path, out);
            }
            continue;
        }
        let meta = fs::symlink_metadata(&path).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!("link {}", fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            "dir".into()
        } else {
            format!("file {:?}", fs::read_to_string(&path).unwrap())
        };
        out.insert(rel, format!("{what} mode {:o} owner {}:{}", meta.mode() & 0o7777, meta.uid(), meta.gid()));
        if meta.is_dir() {
            walk(root, &path, out);
        }
    }
}

fn run_dirs(test: &Test) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(test.host_path("/var/lib/converge/runs"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn rollback_restores_the_tree_of_the_previous_run_and_can_itself_be_rolled_back() {
    let test = Test::new().playbook(V1);
    test.apply().success();
    let after_v1 = tree(&test.root());
    fs::write(test.playbook_path(), V2).unwrap();
    test.apply().success();
    let after_v2 = tree(&test.root());
    assert_ne!(after_v1, after_v2);
    assert_eq!(run_dirs(&test), ["1", "2"]);

    // --check shows what it would do and changes nothing.
    let check = test.run_args(&["rollback", "--root", "{root}", "--check"]).code(2);
    assert!(check.stdout.contains("will undo run 2"), "{}", check.stdout);
    assert!(
        check.stdout.contains("+ /etc/app/old.conf") && check.stdout.contains("- /etc/app/current"),
        "{}",
        check.stdout
    );
    assert_eq!(tree(&test.root()), after_v2);

    let run = test.run_args(&["rollback", "--root", "{root}"]).success();
    assert!(run.stdout.contains("recorded as run 3"), "{}", run.stdout);
    assert_eq!(tree(&test.root()), after_v1, "file by file: content, mode, owner, type");

    test.run_args(&["rollback", "--root", "{root}"]).success();
    assert_eq!(tree(&test.root()), after_v2, "the rollback of the rollback is v2 again");

    let history = test.run_args(&["history", "--root", "{root}", "--output", "json"]).success();
    let runs: Vec<serde_json::Value> =
        // After the stream record.
        history.stdout.lines().skip(1).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[1]["rolled_back_by"], 3);
    assert_eq!(runs[2]["kind"], "rollback");
    assert_eq!(runs[3]["rollback_of"], serde_json::json!([3]));
    assert_eq!(runs[0]["update"], 0);
    assert_eq!(runs[1]["remove"], 1);
}

/// v2 gives a directory, a file and a symlink other owners and groups: the rollback puts v1's
/// back, compared file by file with the tree after v1.
fn rollback_puts_back_owners_and_groups() {
    require!(Root);
    let owned = "  - directory: /srv/www\n    owner: www-data\n    group: www-data\n  - file: /srv/www/index.html\n    content: hi\n    owner: nobody\n    group: www-data\n    mode: \"0640\"\n";
    let test = Test::new().with_accounts().playbook(V1);
    test.apply().success();
    let after_v1 = tree(&test.root());
    fs::write(test.playbook_path(), format!("{V1}{owned}").replace("/etc/app/old.conf\n", "/etc/app/old.conf\n    owner: nobody\n")).unwrap();
    test.apply().success();
    let after_v2 = tree(&test.root());
    assert!(after_v2["etc/app/old.conf"].contains("owner 65534:"), "{after_v2:?}");
    test.run_args(&["rollback", "--root", "{root}"]).success();
    assert_eq!(tree(&test.root()), after_v1, "file by file: content, mode, owner, type");
}

fn rollback_to_n_undoes_every_run_from_n() {
    let test = Test::new().playbook(V1);
    test.apply().success();
    fs::write(test.playbook_path(), V2).unwrap();
    test.apply().success();
    fs::write(test.playbook_path(), V2.replace("8000", "9000")).unwrap();
    test.apply().success();
    test.run_args(&["rollback", "--root", "{root}", "--to", "1"]).success();
    let left: Vec<_> = tree(&test.root()).into_keys().filter(|k| k.starts_with("etc/app")).collect();
    assert!(left.is_empty(), "before run 1 there was no /etc/app: {left:?}");
    let run = test.run_args(&["rollback", "--root", "{root}", "--to", "42"]).code(1);
    assert!(run.stderr.contains("there is no run 42"), "{}", run.stderr);
}

fn a_noop_apply_records_nothing_and_retention_drops_old_runs_and_their_content() {
    let test = Test::new().playbook(V1);
    test.apply().success();
    test.apply().success();
    assert_eq!(run_dirs(&test), ["1"], "a run that changed nothing is not recorded");
    for i in 0..4 {
        fs::write(test.playbook_path(), V1.replace("port = 80", &format!("port = {i}"))).unwrap();
        test.run_args(&["apply", "{playbook}", "--root", "{root}", "--keep-runs", "2"]).success();
    }
    assert_eq!(run_dirs(&test), ["4", "5"]);
    // Only the previous contents of the kept runs are stored: "port = 1" and "port = 2".
    let objects = fs::read_dir(test.host_path("/var/lib/converge/objects")).unwrap().count();
    assert_eq!(objects, 2);
}

fn a_failed_run_is_recorded_and_what_cannot_be_restored_is_listed() {
    // The command fails (no such program in the root) after the file was written.
    let test = Test::new().playbook(
        "resources:\n  - file: /etc/x\n    content: x\n  - command: [\"no-such-program\"]\n    creates: /etc/made\n",
    );
    test.apply().code(1);
    test.expect_file("/etc/x", "x");
    let run = test.run_args(&["rollback", "--root", "{root}", "--check"]).code(2);
    assert!(run.stdout.contains("- /etc/x"), "{}", run.stdout);
    assert!(run.stdout.contains("(not restored: a command that ran cannot be undone)"), "{}", run.stdout);
    test.run_args(&["rollback", "--root", "{root}"]).success();
    test.expect_absent("/etc/x");
    let none = Test::new();
    let run = none.run_args(&["rollback", "--root", "{root}"]).code(1);
    assert!(run.stderr.contains("no run is recorded"), "{}", run.stderr);
}

fn a_unit_file_is_rolled_back_and_its_triggers_are_named() {
    let unit = |v: &str| {
        format!("resources:\n  - unit: app.service\n    content: |\n      [Service]\n      ExecStart=/bin/sleep {v}\n")
    };
    let test = Test::new().playbook(&unit("1"));
    test.apply().success();
    let v1 = fs::read_to_string(test.host_path("/etc/systemd/system/app.service")).unwrap();
    fs::write(test.playbook_path(), unit("2")).unwrap();
    test.apply().success();
    let check = test.run_args(&["rollback", "--root", "{root}", "--check"]).code(2);
    assert!(check.stdout.contains("Triggers, in order:\n  daemon-reload   (app.service changed): skipped"), "{}", check.stdout);
    assert!(check.stdout.contains("  restart app.service   (app.service changed): skipped"), "{}", check.stdout);
    let run = test.run_args(&["rollback", "--root", "{root}"]).success();
    assert_eq!(fs::read_to_string(test.host_path("/etc/systemd/system/app.service")).unwrap(), v1);
    assert!(run.stdout.contains("daemon-reload: skipped") && run.stdout.contains("restart app.service: skipped"), "{}", run.stdout);
}

/// A record of another converge version (or a damaged one) does not stop an apply: the next run
/// gets a later number, the content it refers to survives retention, history lists it, and a
/// rollback refuses to reach past it.
fn a_run_record_this_converge_cannot_read_is_kept_and_never_skipped() {
    let test = Test::new().playbook(V1);
    test.apply().success();
    fs::write(test.playbook_path(), V2).unwrap();
    test.apply().success();
    let objects = |test: &Test| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(test.host_path("/var/lib/converge/objects"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let kept = objects(&test);
    assert!(!kept.is_empty(), "run 2 stored the previous content of app.conf");
    // Run 2 as a future converge might write it: valid JSON of another shape, same objects.
    let record = test.host_path("/var/lib/converge/runs/2/run.json");
    let mut value: serde_json::Value = serde_json::from_str(&fs::read_to_string(&record).unwrap()).unwrap();
    value["number"] = serde_json::json!("two");
    fs::write(&record, value.to_string()).unwrap();

    fs::write(test.playbook_path(), V2.replace("8000", "9000")).unwrap();
    test.run_args(&["apply", "{playbook}", "--root", "{root}", "--keep-runs", "1"]).success();
    assert_eq!(run_dirs(&test), ["2", "3"], "run 3 is recorded; retention drops readable runs only");
    for object in &kept {
        assert!(objects(&test).contains(object), "{object}: referred to by the unreadable run 2");
    }

    let history = test.run_args(&["history", "--root", "{root}"]).success();
    assert!(history.stdout.contains("2  cannot be read:"), "{}", history.stdout);
    assert!(history.stdout.contains("is not a run record this converge can read"), "{}", history.stdout);

    test.run_args(&["rollback", "--root", "{root}"]).success();
    let past = test.run_args(&["rollback", "--root", "{root}", "--to", "2"]).code(1);
    assert!(past.stderr.contains("run 2 cannot be rolled back by this converge"), "{}", past.stderr);
}
