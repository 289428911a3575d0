//! `Bundle`: what a target needs to run a playbook exactly as it was resolved here.
//!
//! The playbook is resolved on this machine first (so every mistake points at the local YAML
//! and nothing is sent when there is one); the resolve records each file that a `template:` or
//! `source:` read (template.rs, `record_reads`). The bundle holds exactly those files, the
//! playbook's own `modules/*.yml`, the playbook's text and the variables, laid out as a tar:
//!
//! ```text
//! tree/<the playbook's directory>/site.yml     the playbook, byte for byte
//! tree/<the playbook's directory>/templates/…  every file it read, at its place relative to it
//! tree/shared/…                                files reached through `../` keep their place too
//! vars/0.yml, vars/1.yml, …                    inventory vars, each --vars-file, the --var values
//! ```
//!
//! `tree/` is rooted at the deepest directory that holds the playbook and every file it read,
//! so `../shared/x.j2` resolves on the target as it does here. The target runs the same binary
//! (the same sha256) on the same inputs, so its resolve renders the same resources; vars files
//! are given to it in order, so the precedence stays `vars:` < inventory < `--vars-file` <
//! `--var`. An absolute `template:` or `source:` path is refused: the target would read its own
//! file of that name, not this machine's.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::playbook::template::{FileRead, Read};

use super::tar::Tar;

/// What a path of the bundle holds.
#[derive(Debug, Clone)]
enum Item {
    /// A file, and whether its owner may execute it.
    File(Arc<[u8]>, bool),
    /// A directory of a `source:` tree: sent even when empty.
    Directory,
}

#[derive(Debug, Clone)]
pub struct Bundle {
    /// The playbook's directory inside the bundle (`tree/...`): where the target runs it.
    pub dir: PathBuf,
    /// The playbook's file name.
    pub playbook: String,
    /// Files and directories under `tree/`, by their path in the bundle.
    files: Vec<(PathBuf, Item)>,
    /// The vars files, in order of precedence (later wins).
    vars: Vec<Arc<[u8]>>,
    /// The secret variables (each --secrets-file, the --secret-var values): given to the
    /// target's engine as `--secrets-file`, so that it hides them as this machine does.
    secrets: Vec<Arc<[u8]>>,
}

impl Bundle {
    /// The bundle of a playbook at `path` (its text as loaded), the files its resolve read, and
    /// the vars files' contents in order.
    pub fn new(path: &Path, text: &str, reads: &[FileRead], vars: Vec<Vec<u8>>) -> Result<Bundle> {
        let playbook = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Usage {
                message: format!("{}: the playbook's file name is not UTF-8", path.display()),
            })?
            .to_owned();
        let parent = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = canonical(parent)?;

        let mut files: Vec<(PathBuf, Item)> =
            vec![(dir.join(&playbook), Item::File(Arc::from(text.as_bytes()), false))];
        let mut add = |path: PathBuf, item: Item| {
            if !files.iter().any(|(p, _)| *p == path) {
                files.push((path, item));
            }
        };
        // The playbook's own modules: module.rs reads `modules/NAME.yml` beside the playbook.
        if let Ok(entries) = std::fs::read_dir(dir.join("modules")) {
            let mut modules: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yml") && p.is_file())
                .collect();
            modules.sort();
            for module in modules {
                let bytes = std::fs::read(&module).map_err(|source| Error::Read { path: module.clone(), source })?;
                add(module, Item::File(Arc::from(bytes), false));
            }
        }
        for read in reads {
            if Path::new(&read.relative).is_absolute() {
                return Err(Error::Usage {
                    message: format!(
                        "`{}` is an absolute path: with --host, converge sends the files a playbook reads to the \
                         target, and only paths relative to the playbook keep their meaning there; write it \
                         relative to {}",
                        read.relative,
                        dir.display()
                    ),
                });
            }
            let item = match &read.read {
                Read::File { bytes, executable } => Item::File(Arc::from(bytes.as_slice()), *executable),
                Read::Directory => Item::Directory,
            };
            add(normalize(&canonical(&read.dir)?.join(&read.relative)), item);
        }

        let root = files.iter().fold(dir.clone(), |common, (path, _)| common_ancestor(&common, path));
        let inside = |path: &Path| Path::new("tree").join(path.strip_prefix(&root).expect("under the common root"));
        Ok(Bundle {
            dir: inside(&dir),
            playbook,
            files: files.into_iter().map(|(path, item)| (inside(&path), item)).collect(),
            vars: vars.into_iter().map(Arc::from).collect(),
            secrets: Vec::new(),
        })
    }

    /// The bundle of a saved plan (`apply --plan DIR`): its file alone, which the target's
    /// engine applies exactly or refuses; nothing is resolved there.
    pub fn saved_plan(bytes: &[u8]) -> Bundle {
        Bundle {
            dir: PathBuf::from("tree"),
            playbook: "plan.json".into(),
            files: vec![(PathBuf::from("tree/plan.json"), Item::File(Arc::from(bytes), false))],
            vars: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// The same bundle with secret variables files.
    pub fn with_secrets(mut self, secrets: Vec<Vec<u8>>) -> Bundle {
        self.secrets = secrets.into_iter().map(Arc::from).collect();
        self
    }

    /// The secrets files' paths relative to the bundle's top, in order.
    pub fn secrets_files(&self) -> Vec<String> {
        (0..self.secrets.len()).map(|i| format!("secrets/{i}.yml")).collect()
    }

    /// The vars files' paths relative to the bundle's top, in order.
    pub fn vars_files(&self) -> Vec<String> {
        (0..self.vars.len()).map(|i| format!("vars/{i}.yml")).collect()
    }

    /// The paths of the files under `tree/`, for tests and `-v`.
    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().filter(|(_, item)| matches!(item, Item::File(..))).map(|(p, _)| p.as_path()).collect()
    }

    /// Writes the bundle as a tar stream.
    pub fn write_tar(&self, out: impl std::io::Write) -> std::io::Result<()> {
        let mut tar = Tar::new(out);
        let mut dirs: Vec<&Path> = Vec::new();
        let mut vars: Vec<(PathBuf, Item)> = self
            .vars_files()
            .into_iter()
            .map(PathBuf::from)
            .zip(self.vars.iter().map(|b| Item::File(b.clone(), false)))
            .collect();
        vars.extend(
            self.secrets_files()
                .into_iter()
                .map(PathBuf::from)
                .zip(self.secrets.iter().map(|b| Item::File(b.clone(), false))),
        );
        for (path, item) in self.files.iter().chain(&vars) {
            // Each directory before what is inside it, once.
            let mut parents: Vec<&Path> = path.ancestors().filter(|a| !a.as_os_str().is_empty()).collect();
            if matches!(item, Item::File(..)) {
                parents.remove(0);
            }
            parents.reverse();
            for parent in parents {
                if !dirs.contains(&parent) {
                    tar.directory(parent.as_os_str().as_bytes())?;
                    dirs.push(parent);
                }
            }
            if let Item::File(bytes, executable) = item {
                tar.file(path.as_os_str().as_bytes(), bytes, *executable)?;
            }
        }
        tar.finish()?;
        Ok(())
    }

    /// The size of the tar stream, in bytes.
    pub fn size(&self) -> usize {
        let mut counter = Counter(0);
        self.write_tar(&mut counter).expect("counting cannot fail");
        counter.0
    }
}

struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn canonical(dir: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(dir).map_err(|source| Error::Read { path: dir.to_owned(), source })
}

/// `a/b/../c` -> `a/c`, without touching the disk (the path was read already).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn common_ancestor(a: &Path, b: &Path) -> PathBuf {
    a.components().zip(b.components()).take_while(|(x, y)| x == y).map(|(x, _)| x).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path, relative: &str, text: &str) -> FileRead {
        FileRead {
            dir: dir.to_owned(),
            relative: relative.into(),
            read: Read::File { bytes: text.as_bytes().to_vec(), executable: false },
        }
    }

    #[test]
    fn a_tree_keeps_its_empty_directories_and_execute_bits() {
        let dir = tempfile::tempdir().unwrap();
        let reads = [
            FileRead { dir: dir.path().into(), relative: "files/site".into(), read: Read::Directory },
            FileRead { dir: dir.path().into(), relative: "files/site/empty".into(), read: Read::Directory },
            FileRead {
                dir: dir.path().into(),
                relative: "files/site/run.sh".into(),
                read: Read::File { bytes: b"#!/bin/sh\n".to_vec(), executable: true },
            },
            read(dir.path(), "files/site/index.html", "hi"),
        ];
        let bundle = Bundle::new(&dir.path().join("p.yml"), "x: 1\n", &reads, Vec::new()).unwrap();
        let mut tar = Vec::new();
        bundle.write_tar(&mut tar).unwrap();
        let mut archive = ::tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.path().unwrap().display().to_string(), e.header().mode().unwrap()))
            .collect();
        let mode = |name: &str| entries.iter().find(|(n, _)| n == name).map(|(_, m)| *m);
        assert_eq!(mode("tree/files/site/empty"), Some(0o700), "{entries:?}");
        assert_eq!(mode("tree/files/site/run.sh"), Some(0o700), "{entries:?}");
        assert_eq!(mode("tree/files/site/index.html"), Some(0o600), "{entries:?}");
        assert_eq!(entries.iter().filter(|(n, _)| n == "tree/files/site").count(), 1, "once: {entries:?}");
    }

    #[test]
    fn files_keep_their_place_relative_to_the_playbook() {
        let top = tempfile::tempdir().unwrap();
        let site = top.path().join("site");
        std::fs::create_dir_all(site.join("modules")).unwrap();
        std::fs::write(site.join("modules/web.yml"), "resources: []\n").unwrap();
        std::fs::write(site.join("modules/notes.txt"), "not a module\n").unwrap();
        std::fs::create_dir_all(top.path().join("shared")).unwrap();
        let reads = [
            read(&site, "templates/app.j2", "app"),
            read(&site, "../shared/motd", "motd"),
            read(&site, "templates/./app.j2", "app"),
        ];
        let bundle = Bundle::new(&site.join("site.yml"), "resources: []\n", &reads, vec![b"{}".to_vec()]).unwrap();
        assert_eq!(bundle.dir, Path::new("tree/site"));
        assert_eq!(bundle.playbook, "site.yml");
        let paths: Vec<&str> = bundle.paths().iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            ["tree/site/site.yml", "tree/site/modules/web.yml", "tree/site/templates/app.j2", "tree/shared/motd"]
        );
        assert_eq!(bundle.vars_files(), ["vars/0.yml"]);
    }

    #[test]
    fn secret_variables_travel_as_secrets_files() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::new(&dir.path().join("p.yml"), "x: 1\n", &[], vec![b"{}".to_vec()])
            .unwrap()
            .with_secrets(vec![b"{\"token\": \"s3cret\"}".to_vec()]);
        assert_eq!(bundle.secrets_files(), ["secrets/0.yml"]);
        let mut tar = Vec::new();
        bundle.write_tar(&mut tar).unwrap();
        let mut archive = ::tar::Archive::new(tar.as_slice());
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert!(names.iter().any(|n| n == "secrets/0.yml"), "{names:?}");
    }

    #[test]
    fn a_playbook_alone_sits_at_the_top_of_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::new(&dir.path().join("p.yml"), "x: 1\n", &[], Vec::new()).unwrap();
        assert_eq!(bundle.dir, Path::new("tree"));
        assert_eq!(bundle.paths(), [Path::new("tree/p.yml")]);
    }

    #[test]
    fn absolute_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let reads = [read(dir.path(), "/etc/motd", "motd")];
        let e = Bundle::new(&dir.path().join("p.yml"), "", &reads, Vec::new()).unwrap_err().to_string();
        assert!(e.contains("`/etc/motd` is an absolute path"), "{e}");
    }
}
