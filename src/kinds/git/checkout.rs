//! What a checkout says about itself, read from its files through the host (no git process, so
//! that a converged checkout costs a few reads): the commit `.git/HEAD` names (directly, or
//! through a loose ref or `packed-refs`) and the URL of its `origin` remote in `.git/config`.
//! Every read goes through host/fs: a symlink on the way is refused, never followed.

use std::io;
use std::path::Path;

use crate::host::{FileKind, Host};

/// A checkout's HEAD and origin, as its files say.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkout {
    /// The commit checked out (full hex); None on a branch with no commit yet.
    pub head: Option<String>,
    /// The branch HEAD is on (`main`); None when detached.
    pub branch: Option<String>,
    /// `remote.origin.url`; None when there is no origin.
    pub origin: Option<String>,
}

/// Whether `text` is a full object name: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_full_hash(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The checkout at `path`: None when there is no `.git` there. A `.git` that is not a
/// directory (a worktree's or submodule's `gitdir:` file, a symlink) is refused.
pub fn read(host: &Host, path: &Path) -> io::Result<Option<Checkout>> {
    let git_dir = path.join(".git");
    match host.stat(&git_dir)? {
        None => return Ok(None),
        Some(stat) if stat.kind == FileKind::Directory => {}
        Some(stat) => {
            return Err(io::Error::other(format!(
                "{} is {}, not a directory: converge manages plain clones only",
                git_dir.display(),
                stat.kind.name()
            )));
        }
    }
    let head = text(host, &git_dir.join("HEAD"))?.unwrap_or_default();
    let (head, branch) = match head.trim().strip_prefix("ref: ") {
        Some(name) => (resolve(host, &git_dir, name.trim())?, name.trim().strip_prefix("refs/heads/").map(str::to_owned)),
        None if is_full_hash(head.trim()) => (Some(head.trim().to_owned()), None),
        None => return Err(io::Error::other(format!("{} names no commit", git_dir.join("HEAD").display()))),
    };
    let origin = text(host, &git_dir.join("config"))?.and_then(|config| origin_url(&config));
    Ok(Some(Checkout { head, branch, origin }))
}

/// A file's text; None when it is not there.
fn text(host: &Host, path: &Path) -> io::Result<Option<String>> {
    match host.stat(path)? {
        None => Ok(None),
        Some(_) => Ok(Some(String::from_utf8_lossy(&host.read(path)?).into_owned())),
    }
}

/// The commit a ref names: its loose file, else its line of `packed-refs`; symbolic refs are
/// followed a few times.
fn resolve(host: &Host, git_dir: &Path, name: &str) -> io::Result<Option<String>> {
    let mut name = name.to_owned();
    for _ in 0..5 {
        if !name.starts_with("refs/") || name.split('/').any(|part| part.is_empty() || part == "..") {
            return Err(io::Error::other(format!("`{name}` is not a ref of {}", git_dir.display())));
        }
        match text(host, &git_dir.join(&name))? {
            Some(loose) => match loose.trim().strip_prefix("ref: ") {
                Some(next) => name = next.trim().to_owned(),
                None => return Ok(Some(loose.trim().to_owned()).filter(|c| is_full_hash(c))),
            },
            None => return Ok(text(host, &git_dir.join("packed-refs"))?.and_then(|packed| packed_ref(&packed, &name))),
        }
    }
    Ok(None)
}

/// The commit of `name` in the text of `packed-refs`.
fn packed_ref(packed: &str, name: &str) -> Option<String> {
    packed
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('^'))
        .filter_map(|line| line.split_once(' '))
        .find(|(_, refname)| refname.trim() == name)
        .map(|(commit, _)| commit.to_owned())
        .filter(|commit| is_full_hash(commit))
}

/// `url` of `[remote "origin"]` in the text of `.git/config` (as git writes it: one
/// `url = VALUE` line in that section).
fn origin_url(config: &str) -> Option<String> {
    let mut in_origin = false;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            in_origin = line.replace(' ', "").eq_ignore_ascii_case("[remote\"origin\"]");
        } else if in_origin
            && let Some((key, value)) = line.split_once('=')
            && key.trim().eq_ignore_ascii_case("url")
        {
            return Some(value.trim().trim_matches('"').to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn packed_refs_are_read_as_git_writes_them() {
        let packed = format!("# pack-refs with: peeled fully-peeled sorted \n{A} refs/heads/main\n^{A}\n{A} refs/tags/v1\n");
        assert_eq!(packed_ref(&packed, "refs/heads/main"), Some(A.to_owned()));
        assert_eq!(packed_ref(&packed, "refs/heads/other"), None);
    }

    #[test]
    fn the_origin_url_is_found_in_its_section() {
        let config = "[core]\n\turl = no\n[remote \"origin\"]\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n\turl = /srv/git/app.git\n[branch \"main\"]\n";
        assert_eq!(origin_url(config).as_deref(), Some("/srv/git/app.git"));
        assert_eq!(origin_url("[remote \"upstream\"]\n\turl = x\n"), None);
    }

    #[test]
    fn full_hashes_are_40_or_64_lowercase_hex_digits() {
        assert!(is_full_hash(A));
        assert!(!is_full_hash(&A[..39]));
        assert!(!is_full_hash(&A.to_uppercase()));
    }
}
