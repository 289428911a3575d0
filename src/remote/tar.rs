//! `Tar`: the bundle's wire format, a tar stream (the `tar` crate's GNU headers, which carry long
//! names), written straight into ssh's stdin and unpacked on the target by its own `tar -x` (GNU
//! tar and busybox read it; Debian's tar is an essential package). Entries are owned by root,
//! dated 1970 and private (0600 files, 0700 directories and files their owner may execute): the
//! bundle can hold secrets, and nothing on the target depends on other bits than the owner's
//! execute bit (which a `directory:` tree copy keeps, tree.rs).

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// tar's default record: 20 blocks of 512 bytes. The stream is padded to a whole record: the
/// target's `tar -x` reads a pipe a record at a time, and ssh's stdin stays open after the
/// archive, so a short last record would leave it waiting.
const RECORD: u64 = 20 * 512;

pub struct Tar<W: Write> {
    builder: tar::Builder<Counted<W>>,
}

/// A writer that counts what goes through it.
struct Counted<W> {
    out: W,
    written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.out.write(bytes)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> Tar<W> {
    pub fn new(out: W) -> Tar<W> {
        Tar { builder: tar::Builder::new(Counted { out, written: 0 }) }
    }

    pub fn directory(&mut self, path: &[u8]) -> io::Result<()> {
        self.entry(path, 0o700, tar::EntryType::Directory, &[])
    }

    /// A file, executable by its owner or not.
    pub fn file(&mut self, path: &[u8], bytes: &[u8], executable: bool) -> io::Result<()> {
        let mode = if executable { 0o700 } else { 0o600 };
        self.entry(path, mode, tar::EntryType::Regular, bytes)
    }

    /// Ends the archive (two zero blocks, then padding to a whole record); returns the writer.
    pub fn finish(self) -> io::Result<W> {
        let mut counted = self.builder.into_inner()?;
        let pad = (RECORD - counted.written % RECORD) % RECORD;
        counted.write_all(&vec![0; pad as usize])?;
        counted.flush()?;
        Ok(counted.out)
    }

    fn entry(&mut self, path: &[u8], mode: u32, kind: tar::EntryType, bytes: &[u8]) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(bytes.len() as u64);
        let path = Path::new(std::ffi::OsStr::from_bytes(path));
        self.builder.append_data(&mut header, path, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real `tar` reads what `Tar` writes.
    #[test]
    fn tar_extracts_it() {
        let deep = format!("tree/{}/{}/file.txt", "a".repeat(90), "b".repeat(90));
        let long_name = format!("tree/{}.j2", "n".repeat(120));
        let entries: Vec<(String, Vec<u8>)> = vec![
            ("tree/playbook.yml".into(), b"resources: []\n".to_vec()),
            ("tree/empty".into(), Vec::new()),
            ("tree/block".into(), vec![7; 512]),
            ("tree/binary".into(), (0..=255u8).cycle().take(1500).collect()),
            (deep.clone(), b"deep\n".to_vec()),
            (long_name.clone(), b"long\n".to_vec()),
            ("tree/caf\u{e9} \u{2603}.txt".into(), b"utf-8\n".to_vec()),
        ];
        let mut tar = Tar::new(Vec::new());
        tar.directory(b"tree").unwrap();
        for (path, bytes) in &entries {
            tar.file(path.as_bytes(), bytes, false).unwrap();
        }
        tar.file(b"tree/run.sh", b"#!/bin/sh\n", true).unwrap();
        let archive = tar.finish().unwrap();
        assert_eq!(archive.len() as u64 % RECORD, 0, "whole records, or the target's tar waits for more");

        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("tar")
            .args(["-x", "-o", "-f", "-", "-C"])
            .arg(dir.path())
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
        for (path, bytes) in &entries {
            assert_eq!(&std::fs::read(dir.path().join(path)).unwrap(), bytes, "{path}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tree/playbook.yml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(dir.path().join("tree/run.sh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
