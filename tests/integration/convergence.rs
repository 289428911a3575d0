//! Every playbook in `playbooks/` converges: apply into an empty root, then `plan` exits 0 with
//! no change, and a third apply touches no file (same inode, same mtime).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Test, is_root};

tests![
    every_example_playbook_converges,
];

fn snapshot(dir: &Path, into: &mut BTreeMap<PathBuf, (u64, i64, i64)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        into.insert(entry.path(), (meta.ino(), meta.mtime(), meta.mtime_nsec()));
        if meta.is_dir() {
            snapshot(&entry.path(), into);
        }
    }
}

fn every_example_playbook_converges() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let mut playbooks: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    playbooks.sort();
    assert!(!playbooks.is_empty());
    let mut need_root = false;
    for playbook in playbooks {
        let text = fs::read_to_string(&playbook).unwrap();
        // Playbooks for a live host (apt, systemd) are proven in containers (scenario_e2e.rs).
        if text.contains("# needs: a live host") {
            continue;
        }
        if text.contains("# needs: root") && !is_root() {
            need_root = true;
            continue;
        }
        let test = Test::new().with_accounts();
        let run = |args: &[&str]| {
            let output = Command::new(env!("CARGO_BIN_EXE_converge"))
                .args(args)
                .arg(&playbook)
                .arg("--root")
                .arg(test.root())
                .output()
                .unwrap();
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr),
            )
        };
        let (code, out) = run(&["apply"]);
        assert_eq!(code, Some(0), "{}: first apply\n{out}", playbook.display());
        assert!(out.contains("Apply complete"), "{}: {out}", playbook.display());

        let (code, out) = run(&["plan"]);
        assert_eq!(
            (code, out.as_str()),
            (Some(0), "No changes. The host matches the playbook.\n"),
            "{}: plan after apply",
            playbook.display()
        );

        let mut before = BTreeMap::new();
        snapshot(&test.root(), &mut before);
        let (code, out) = run(&["apply"]);
        assert_eq!(code, Some(0), "{}: third apply\n{out}", playbook.display());
        let mut after = BTreeMap::new();
        snapshot(&test.root(), &mut after);
        assert_eq!(before, after, "{}: the third apply touched files", playbook.display());
    }
    // The others converged; the test is whole only with those that need root.
    if need_root {
        require!(Root);
    }
}
