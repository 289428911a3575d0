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
    /// The newest glibc symbol version it needs (`(2, 38)`); None for a static binary, which
    /// runs on any Linux of its architecture.
    pub glibc: Option<(u32, u32)>,
}

/// The Rust target of a static converge for this architecture.
pub fn static_target() -> String {
    format!("{}-unknown-linux-musl", std::env::consts::ARCH)
}

/// How to build the static binary, for messages and the README.
pub fn static_build_hint() -> String {
    let target = static_target();
    format!("rustup target add {target} && cargo build --release --target {target}")
}

impl Binary {
    /// What `--host` uploads: a static converge, which runs on any Linux of its architecture.
    /// That is this executable when it is static (built for the musl target); otherwise a
    /// static build of the same checkout (`target/ARCH-unknown-linux-musl/release/converge`
    /// beside `target/{debug,release}/converge`, when it is not older than this one), or
    /// `$CONVERGE_UPLOAD_BINARY`. Failing those, this dynamically linked executable, with the
    /// glibc it needs: `Session` checks the target's before uploading it.
    pub fn for_upload() -> Result<Binary> {
        if let Some(path) = std::env::var_os("CONVERGE_UPLOAD_BINARY").filter(|p| !p.is_empty()) {
            let binary = Binary::at(PathBuf::from(path))?;
            return Ok(binary);
        }
        let current = Binary::current()?;
        if current.glibc.is_none() {
            return Ok(current);
        }
        if let Some(sibling) = static_sibling() {
            return Binary::at(sibling);
        }
        Ok(current)
    }

    /// This executable. Its digest is remembered in the user's cache, keyed by the file's
    /// device, inode, size and mtime (a rebuild writes a new file): hashing a debug build
    /// (150 MB) takes seconds. The memo keeps the last [`MEMO_ENTRIES`] binaries, so that
    /// several builds used in turn (a release and a debug one, two checkouts) each hash once.
    pub fn current() -> Result<Binary> {
        let path = PathBuf::from("/proc/self/exe");
        let key = std::fs::metadata(&path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            format!("{} {} {} {}.{}", m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())
        });
        let memo = digest_memo();
        let known = memo.as_ref().and_then(|m| std::fs::read_to_string(m).ok()).unwrap_or_default();
        if let Some(key) = &key
            && let Some(sha256) = recall(&known, key)
        {
            let size = key.split(' ').nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
            let glibc = glibc_needed(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
            return Ok(Binary { path, sha256: sha256.to_owned(), size, glibc });
        }
        let binary = Binary::at(path)?;
        if let (Some(key), Some(memo)) = (key, memo) {
            // A cache: when it cannot be written, the next run hashes again.
            let _ = write_atomically(&memo, remember(&known, &key, &binary.sha256).as_bytes());
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
        let glibc = glibc_needed(&path).map_err(read)?;
        Ok(Binary { path, sha256, size, glibc })
    }
}

/// A static build beside this executable: `target/ARCH-unknown-linux-musl/release/converge`
/// for `target/{debug,release}/converge`, when it is static and not older than this one.
fn static_sibling() -> Option<PathBuf> {
    let exe = std::fs::canonicalize("/proc/self/exe").ok()?;
    let target_dir = exe.parent()?.parent()?;
    let candidate = target_dir.join(static_target()).join("release").join("converge");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&candidate)? < modified(&exe)? {
        return None;
    }
    matches!(glibc_needed(&candidate), Ok(None)).then_some(candidate)
}

/// Whether an ELF file asks for a program interpreter (`PT_INTERP`: the dynamic loader), and if
/// so the newest `GLIBC_2.x` version it needs (from `.gnu.version_r`). None: statically linked.
/// Reads only the headers and the version tables, not the whole (debug: 150 MB) file.
pub fn glibc_needed(path: &std::path::Path) -> std::io::Result<Option<(u32, u32)>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let read = |offset: u64, len: usize| -> std::io::Result<Vec<u8>> {
        let mut buffer = vec![0; len];
        file.read_exact_at(&mut buffer, offset)?;
        Ok(buffer)
    };
    let u16_of = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_of = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_of = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    if file.metadata()?.len() < 64 {
        return Ok(Some((2, 0)));
    }
    let header = read(0, 64)?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        // Not an ELF64 little-endian file: say it needs some glibc, so that targets are checked.
        return Ok(Some((2, 0)));
    }
    let (phoff, phentsize, phnum) = (u64_of(&header, 0x20), u16_of(&header, 0x36), u16_of(&header, 0x38));
    let programs = read(phoff, usize::from(phentsize) * usize::from(phnum))?;
    let interp = (0..usize::from(phnum)).any(|i| u32_of(&programs, i * usize::from(phentsize)) == 3);
    if !interp {
        return Ok(None);
    }
    let (shoff, shentsize, shnum) = (u64_of(&header, 0x28), usize::from(u16_of(&header, 0x3a)), u16_of(&header, 0x3c));
    let sections = read(shoff, shentsize * usize::from(shnum))?;
    let section = |i: usize| {
        let s = &sections[i * shentsize..];
        (u32_of(s, 4), u64_of(s, 24), u64_of(s, 32) as usize, u32_of(s, 40) as usize, u32_of(s, 44))
    };
    let mut newest = (2, 0);
    for i in 0..usize::from(shnum) {
        let (kind, offset, size, link, count) = section(i);
        if kind != 0x6fff_fffe || link >= usize::from(shnum) {
            continue; // not SHT_GNU_verneed
        }
        let needs = read(offset, size)?;
        let (_, str_offset, str_size, _, _) = section(link);
        let strings = read(str_offset, str_size)?;
        let name = |at: usize| strings.get(at..).map(|s| s.split(|&b| b == 0).next().unwrap_or_default());
        let mut entry = 0usize;
        for _ in 0..count {
            let (aux_count, mut aux) = (u16_of(&needs, entry + 2), entry + u32_of(&needs, entry + 8) as usize);
            for _ in 0..aux_count {
                if let Some(version) = name(u32_of(&needs, aux + 8) as usize)
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .and_then(|n| n.strip_prefix("GLIBC_2."))
                    .and_then(|minor| minor.split('.').next()?.parse::<u32>().ok())
                {
                    newest = newest.max((2, version));
                }
                aux += u32_of(&needs, aux + 12) as usize;
            }
            entry += u32_of(&needs, entry + 12) as usize;
        }
    }
    Ok(Some(newest))
}

/// `getconf GNU_LIBC_VERSION` as the probe reports it ("glibc 2.36") -> (2, 36).
pub fn parse_glibc(text: &str) -> Option<(u32, u32)> {
    let version = text.trim().strip_prefix("glibc ")?;
    let (major, minor) = version.split_once('.')?;
    let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// How many binaries' digests the memo keeps (newest first).
const MEMO_ENTRIES: usize = 8;

/// The digest the memo's text `known` holds for `key`.
fn recall<'a>(known: &'a str, key: &str) -> Option<&'a str> {
    let valid = |sha256: &str| sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    known
        .lines()
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(k, sha256)| *k == key && valid(sha256))
        .map(|(_, s)| s)
}

/// The memo's text with `key`'s digest first, then the others, [`MEMO_ENTRIES`] at most.
fn remember(known: &str, key: &str, sha256: &str) -> String {
    let mut lines = vec![format!("{key} {sha256}")];
    lines.extend(known.lines().filter(|line| line.rsplit_once(' ').is_none_or(|(k, _)| k != key)).map(str::to_owned));
    lines.truncate(MEMO_ENTRIES);
    lines.join("\n") + "\n"
}

/// `$XDG_CACHE_HOME/converge/self-sha256` (or `~/.cache/...`): one `KEY SHA256` line per binary.
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
    fn the_memo_keeps_several_binaries_newest_first() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let memo = remember("", "1 2 3 4.5", &a);
        let memo = remember(&memo, "1 9 3 4.5", &b);
        assert_eq!(recall(&memo, "1 2 3 4.5"), Some(a.as_str()), "the first build is still known");
        assert_eq!(recall(&memo, "1 9 3 4.5"), Some(b.as_str()));
        assert_eq!(recall(&memo, "1 9 3 4.6"), None);
        assert!(memo.starts_with("1 9 3 4.5 "), "newest first: {memo}");
        let again = remember(&memo, "1 2 3 4.5", &a);
        assert_eq!(again.lines().count(), 2, "a key is kept once: {again}");
        let full = (0..20).fold(String::new(), |m, i| remember(&m, &format!("1 {i} 3 4.5"), &a));
        assert_eq!(full.lines().count(), MEMO_ENTRIES);
        assert_eq!(recall("1 2 3 4.5 not-hex", "1 2 3 4.5"), None, "a damaged line is ignored");
    }

    #[test]
    fn digest_is_sha256_in_hex() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"abc").unwrap();
        let binary = Binary::at(file.path().to_owned()).unwrap();
        assert_eq!(binary.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(binary.size, 3);
    }

    #[test]
    fn glibc_of_this_test_binary_and_of_the_probe() {
        // The test binary is linked like converge: dynamically (gnu target) or statically (musl).
        let needed = glibc_needed(std::path::Path::new("/proc/self/exe")).unwrap();
        if cfg!(target_env = "gnu") {
            // Every Rust std of this toolchain needs at least glibc 2.17.
            assert!(needed.is_some_and(|v| v >= (2, 17)), "{needed:?}");
        } else {
            assert_eq!(needed, None);
        }
        // As binutils reads it, when it is there.
        if let Ok(out) = std::process::Command::new("objdump").args(["-T", "/proc/self/exe"]).output() {
            let text = String::from_utf8_lossy(&out.stdout);
            let newest = text
                .split("GLIBC_2.")
                .skip(1)
                .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u32>().ok())
                .max();
            assert_eq!(needed, newest.map(|minor| (2, minor)), "objdump -T says {newest:?}");
        }
        assert_eq!(parse_glibc("glibc 2.36\n"), Some((2, 36)));
        assert_eq!(parse_glibc(""), None);
    }

    #[test]
    fn machine_names() {
        assert_eq!(arch_of_uname("x86_64"), "x86_64");
        assert_eq!(arch_of_uname("arm64"), "aarch64");
        assert_eq!(arch_of_uname("armv7l"), "arm");
        assert_eq!(arch_of_uname("i686"), "x86");
    }
}
