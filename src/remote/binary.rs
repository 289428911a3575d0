//! `Binary`: this converge executable, as it is sent to targets: its bytes (`/proc/self/exe`),
//! its sha256 (which names its place in the target's cache) and the architecture it runs on.

use std::io::Read;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Binary {
    pub path: PathBuf,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
}

impl Binary {
    /// This executable. Its digest is remembered in the user's cache, keyed by the file's
    /// device, inode, size and mtime (a rebuild writes a new file): hashing a debug build
    /// (150 MB) takes seconds.
    pub fn current() -> Result<Binary> {
        let path = PathBuf::from("/proc/self/exe");
        let key = std::fs::metadata(&path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            format!("{} {} {} {}.{}", m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())
        });
        let memo = digest_memo();
        if let (Some(key), Some(memo)) = (&key, &memo)
            && let Ok(text) = std::fs::read_to_string(memo)
            && let Some((known, sha256)) = text.trim_end().rsplit_once(' ')
            && known == key
            && sha256.len() == 64
            && sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let size = key.split(' ').nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
            return Ok(Binary { path, sha256: sha256.to_owned(), size });
        }
        let binary = Binary::at(path)?;
        if let (Some(key), Some(memo)) = (key, memo) {
            // A cache: when it cannot be written, the next run hashes again.
            let _ = write_atomically(&memo, format!("{key} {}\n", binary.sha256).as_bytes());
        }
        Ok(binary)
    }

    pub fn at(path: PathBuf) -> Result<Binary> {
        let read = |source| Error::Read { path: path.clone(), source };
        let mut file = std::fs::File::open(&path).map_err(read)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buffer).map_err(read)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            size += n as u64;
        }
        let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Binary { path, sha256, size })
    }
}

/// `$XDG_CACHE_HOME/converge/self-sha256` (or `~/.cache/...`).
fn digest_memo() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("converge").join("self-sha256"))
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".self-sha256.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `uname -m` of a machine that runs this binary, as Rust names it (`std::env::consts::ARCH`).
pub fn arch_of_uname(machine: &str) -> &str {
    match machine {
        "amd64" => "x86_64",
        "arm64" | "armv8l" | "aarch64_be" => "aarch64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        m if m.starts_with("armv") => "arm",
        "ppc64le" => "powerpc64",
        m => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha256_in_hex() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"abc").unwrap();
        let binary = Binary::at(file.path().to_owned()).unwrap();
        assert_eq!(binary.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(binary.size, 3);
    }

    #[test]
    fn machine_names() {
        assert_eq!(arch_of_uname("x86_64"), "x86_64");
        assert_eq!(arch_of_uname("arm64"), "aarch64");
        assert_eq!(arch_of_uname("armv7l"), "arm");
        assert_eq!(arch_of_uname("i686"), "x86");
    }
}
