//! `Tar`: the bundle's wire format, a POSIX tar stream (ustar headers, a pax `path` record for
//! names longer than ustar allows), written straight into ssh's stdin and unpacked on the target
//! by its own `tar -x` (GNU tar and busybox read it; Debian's tar is an essential package).
//! Entries are owned by root, dated 1970 and private (0600 files, 0700 directories): the bundle
//! can hold secrets, and nothing on the target depends on those attributes.

use std::io::{self, Write};

const BLOCK: usize = 512;
/// tar's default record: 20 blocks. The archive is padded to a whole record.
const RECORD: usize = 20 * BLOCK;

pub struct Tar<W: Write> {
    out: W,
    written: usize,
}

impl<W: Write> Tar<W> {
    pub fn new(out: W) -> Tar<W> {
        Tar { out, written: 0 }
    }

    pub fn directory(&mut self, path: &[u8]) -> io::Result<()> {
        let mut path = path.to_vec();
        if !path.ends_with(b"/") {
            path.push(b'/');
        }
        self.entry(&path, 0o700, b'5', &[])
    }

    pub fn file(&mut self, path: &[u8], bytes: &[u8]) -> io::Result<()> {
        self.entry(path, 0o600, b'0', bytes)
    }

    /// Ends the archive (two zero blocks, then padding to a whole record); returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write(&[0; 2 * BLOCK])?;
        let pad = (RECORD - self.written % RECORD) % RECORD;
        self.write(&vec![0; pad])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, path: &[u8], mode: u32, kind: u8, bytes: &[u8]) -> io::Result<()> {
        // 11 octal digits: 8 GiB. The bundle carries templates and small files; bigger ones
        // belong in a package or an artifact store, not in a playbook.
        if bytes.len() as u64 >= 1 << 33 {
            return Err(io::Error::other(format!("{} is too big for a bundle (8 GiB)", String::from_utf8_lossy(path))));
        }
        let (prefix, name) = match split_ustar(path) {
            Some(split) => split,
            None => {
                // A pax extended header carries the whole path; the ustar name is its start.
                let record = pax_record("path", path);
                let header = header(b"", b"././@PaxHeader", 0o600, b'x', record.len() as u64);
                self.write(&header)?;
                self.data(&record)?;
                (&b""[..], &path[..path.len().min(100)])
            }
        };
        self.write(&header(prefix, name, mode, kind, bytes.len() as u64))?;
        self.data(bytes)
    }

    fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write(bytes)?;
        let pad = (BLOCK - bytes.len() % BLOCK) % BLOCK;
        self.write(&[0; BLOCK][..pad])
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len();
        Ok(())
    }
}

/// A path as ustar's `prefix` (155 bytes) and `name` (100 bytes), split at a `/`; None when it
/// does not fit.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((b"", path));
    }
    // The last `/` that leaves a name of at most 100 bytes and a prefix of at most 155.
    (0..path.len())
        .rev()
        .filter(|&i| path[i] == b'/' && i <= 155 && path.len() - i - 1 <= 100 && i + 1 < path.len())
        .map(|i| (&path[..i], &path[i + 1..]))
        .next()
}

/// `LEN KEY=VALUE\n`, where LEN counts the whole record, its own digits included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // space, `=`, newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn header(prefix: &[u8], name: &[u8], mode: u32, kind: u8, size: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
    h[108..116].copy_from_slice(b"0000000\0"); // uid
    h[116..124].copy_from_slice(b"0000000\0"); // gid
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0"); // mtime
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[345..345 + prefix.len()].copy_from_slice(prefix);
    // The checksum is taken with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        assert_eq!(pax_record("path", b"a"), b"9 path=a\n");
        for n in [1, 90, 95, 96, 200, 990, 995] {
            let record = pax_record("path", &vec![b'x'; n]);
            let text = String::from_utf8(record.clone()).unwrap();
            let (len, rest) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), record.len(), "{n}");
            assert_eq!(rest, format!("path={}\n", "x".repeat(n)));
        }
    }

    #[test]
    fn ustar_split() {
        let path = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let (prefix, name) = split_ustar(path.as_bytes()).unwrap();
        assert_eq!((prefix.len(), name.len()), (120, 90));
        assert!(split_ustar(format!("{}/f", "d".repeat(200)).as_bytes()).is_none());
        assert!(split_ustar("f".repeat(101).as_bytes()).is_none());
    }

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
            tar.file(path.as_bytes(), bytes).unwrap();
        }
        let archive = tar.finish().unwrap();
        assert_eq!(archive.len() % RECORD, 0);

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
    }
}
