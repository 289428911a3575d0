//! A write killed half way leaves the old file or the new one, never a part of either.

use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::support::Test;

tests![
    killed_during_a_large_write_leaves_old_or_new,
];

const SIZE: usize = 64 * 1024 * 1024;

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
    for delay_ms in [5, 20, 40, 80, 120, 200, 300, 450] {
        fs::write(&target, vec![b'o'; SIZE]).unwrap();
        let mut child = test
            .command(&["apply", "{playbook}", "--root", "{root}", "-q"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.signal() == Some(9) {
            killed_mid_run += 1;
        }
        assert!(
            is_all(&target, b'o') || is_all(&target, b'n'),
            "after a kill at {delay_ms} ms the file is neither old nor new"
        );
    }
    assert!(killed_mid_run > 0, "no run was killed before it finished: make the file bigger");
    // A killed run may leave its temporary file; the next run replaces it and converges.
    test.apply().success();
    assert!(is_all(&target, b'n'));
    let leftovers: Vec<_> = fs::read_dir(test.host_path("/data")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["big.bin"], "no temporary file is left after a complete run");
}
