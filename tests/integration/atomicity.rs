//! A write killed half way leaves the old file or the new one, never a part of either.

use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::support::{Test, wait_until};

tests![
    killed_during_a_large_write_leaves_old_or_new,
];

const SIZE: usize = 64 * 1024 * 1024;

/// The temporary files (`.cvg.XXXXXXXX`) beside the target.
fn temp_files(test: &Test) -> Vec<std::ffi::OsString> {
    let entries = fs::read_dir(test.host_path("/data")).unwrap().map(|e| e.unwrap().file_name());
    entries.filter(|name| name.to_string_lossy().starts_with(".cvg.")).collect()
}

/// Whether the file is all `byte` and `SIZE` long.
fn is_all(path: &std::path::Path, byte: u8) -> bool {
    let mut file = fs::File::open(path).unwrap();
    if file.metadata().unwrap().len() != SIZE as u64 {
        return false;
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return true;
        }
        if buf[..n].iter().any(|b| *b != byte) {
            return false;
        }
    }
}

fn killed_during_a_large_write_leaves_old_or_new() {
    let test = Test::new().playbook("resources:\n  - file: /data/big.bin\n    source: big.bin\n  - directory: /data\n");
    fs::write(test.dir.path().join("big.bin"), vec![b'n'; SIZE]).unwrap();
    fs::create_dir_all(test.host_path("/data")).unwrap();
    let target = test.host_path("/data/big.bin");
    let mut killed_mid_run = 0;
    // Kills that left the temporary file (`.cvg.XXXXXXXX`) behind: killed during the write.
    let mut killed_mid_write = 0;
    // At fixed delays, and (None) as soon as the temporary file appears.
    let delays = [Some(5), Some(20), Some(40), Some(80), Some(120), Some(200), Some(300), Some(450), None];
    for delay_ms in delays {
        for leftover in temp_files(&test) {
            fs::remove_file(test.host_path("/data").join(leftover)).unwrap();
        }
        fs::write(&target, vec![b'o'; SIZE]).unwrap();
        let mut child = test
            .command(&["apply", "{playbook}", "--root", "{root}", "-q"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        match delay_ms {
            Some(ms) => std::thread::sleep(Duration::from_millis(ms)),
            None => assert!(
                wait_until(Duration::from_secs(60), || !temp_files(&test).is_empty()
                    || child.try_wait().unwrap().is_some()),
                "no temporary file appeared"
            ),
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.signal() == Some(9) {
            killed_mid_run += 1;
            if !temp_files(&test).is_empty() {
                killed_mid_write += 1;
            }
        }
        assert!(
            is_all(&target, b'o') || is_all(&target, b'n'),
            "after a kill at {delay_ms:?} ms the file is neither old nor new"
        );
    }
    assert!(killed_mid_run > 0, "no run was killed before it finished: make the file bigger");
    assert!(killed_mid_write > 0, "no run was killed while it wrote the file: make the file bigger");
    // A killed run may leave its temporary file; the next run replaces it and converges.
    test.apply().success();
    assert!(is_all(&target, b'n'));
    let leftovers: Vec<_> = fs::read_dir(test.host_path("/data")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["big.bin"], "no temporary file is left after a complete run");
}
