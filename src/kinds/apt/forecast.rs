//! What packages will bring, learned without installing them, so that the plan of a first run
//! says what apply will find (docs/first-run.md):
//!
//! 1. `apt-get install -s` names every package the install brings (dependencies too) and the
//!    version it takes;
//! 2. their `.deb`s are downloaded once (`apt-get download`) into [`CACHE`], each named by its
//!    version, so a later plan reads them again without a download (apt's own archive cache is
//!    looked into first);
//! 3. `dpkg-deb --fsys-tarfile` and `--ctrl-tarfile` unpack each to a stream that the `tar`
//!    crate reads: the files, directories and links of its data (the bytes of those under /etc
//!    and of its unit files), its conffiles, and its postinst;
//! 4. the postinst says what it does on a first install that the data does not: which units it
//!    starts (`deb-systemd-invoke start`, `invoke-rc.d NAME start`), as this host's
//!    `/usr/sbin/policy-rc.d` allows, and the links it makes (`ln -s /TARGET /LINK`).
//!
//! What the postinst does otherwise (users it adds, files it writes from a program's output) is
//! not foreseen; docs/first-run.md says so.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use crate::host::forecast::{Forecast, Foreseen, ForeseenUnit};
use crate::host::mode::Mode;
use crate::host::{FileKind, Host};

/// Where the `.deb`s that plans download are kept.
pub const CACHE: &str = "/var/cache/converge/debs";

/// apt's own cache of the `.deb`s it downloaded, looked into before downloading.
const ARCHIVES: &str = "/var/cache/apt/archives";

/// apt's binary caches are built in memory, never written: a plan leaves pkgcache.bin as it
/// was, and with it the age of the lists that `update_cache: SECONDS` goes by.
pub const NO_CACHE_FILES: [&str; 4] = ["-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="];

/// The largest file whose bytes the forecast keeps.
const KEPT: u64 = 1024 * 1024;

/// Where packages put their unit files.
const UNIT_DIRS: [&str; 2] = ["/lib/systemd/system", "/usr/lib/systemd/system"];

/// A package that apt would install, as `apt-get install -s` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The package's name.
    pub name: String,
    /// The version apt would install.
    pub version: String,
    /// Its architecture (`amd64`, `all`).
    pub arch: String,
}

impl Incoming {
    /// Its file name as `apt-get download` writes it: `NAME_VERSION_ARCH.deb`, an epoch's `:`
    /// written `%3a`.
    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.arch)
    }
}

/// What installing `packages` (names, or `name=version`) will bring; or why that cannot be
/// known, in words for the plan.
pub fn forecast(host: &Host, packages: &[String]) -> Result<Forecast, String> {
    if host.root().is_some() {
        return Err("the plan of an offline root downloads no package into it".into());
    }
    let incoming = simulate(host, packages)?;
    let starts = Starts::on(host);
    let mut forecast = Forecast::default();
    for package in &incoming {
        let deb = fetch(host, package)?;
        let read = read_deb(host, package, &deb, &starts);
        if read.is_err() {
            // A download cut short is not kept: the next plan fetches it again.
            let _ = host.remove(&deb);
        }
        forecast.extend(read?);
    }
    Ok(forecast)
}

/// `apt-get install -s`: the packages the install brings, with their versions.
fn simulate(host: &Host, packages: &[String]) -> Result<Vec<Incoming>, String> {
    let mut argv = vec!["apt-get", "install", "-s", "-q", "--no-install-recommends"];
    argv.extend(NO_CACHE_FILES);
    argv.push("--");
    argv.extend(packages.iter().map(String::as_str));
    let output = host
        .program(&argv)
        .env("LC_ALL", "C")
        .command()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-get install -s: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("apt-get install -s failed: {}", last_line(&stderr)));
    }
    Ok(parse_simulation(&String::from_utf8_lossy(&output.stdout)))
}

/// The `Inst NAME [OLD] (VERSION ORIGIN [ARCH])` lines of a simulated install.
fn parse_simulation(text: &str) -> Vec<Incoming> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("Inst ")?.split_once(' ')?;
            let inner = &rest[rest.find('(')? + 1..rest.rfind(')')?];
            let version = inner.split_whitespace().next()?;
            let arch = inner.rsplit_once('[')?.1.strip_suffix(']')?;
            Some(Incoming { name: name.to_owned(), version: version.to_owned(), arch: arch.to_owned() })
        })
        .collect()
}

/// The package's `.deb`: from the caches, else downloaded into [`CACHE`].
fn fetch(host: &Host, package: &Incoming) -> Result<PathBuf, String> {
    let cached = || {
        [CACHE, ARCHIVES]
            .iter()
            .map(|dir| Path::new(dir).join(package.file_name()))
            .find(|path| host.stat(path).ok().flatten().is_some_and(|s| s.kind == FileKind::File))
    };
    if let Some(deb) = cached() {
        return Ok(deb);
    }
    host.create_dirs(Path::new(CACHE)).map_err(|e| format!("cannot make {CACHE} to download it into: {e}"))?;
    let spec = format!("{}={}", package.name, package.version);
    let mut argv = vec!["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root"];
    argv.extend(NO_CACHE_FILES);
    argv.extend(["--", &spec]);
    let output = host
        .program(&argv)
        .env("LC_ALL", "C")
        .network(true)
        .cwd(Path::new(CACHE))
        .command()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-get download: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("apt-get download {spec} failed: {}", last_line(&stderr)));
    }
    cached().ok_or_else(|| format!("apt-get download {spec} left no {}", package.file_name()))
}

fn last_line(text: &str) -> &str {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim()
}

/// Whether a postinst's start will run on this host: a service manager runs it (the postinst
/// asks `[ -d /run/systemd/system ]`), and what `/usr/sbin/policy-rc.d` answers.
struct Starts<'h> {
    host: &'h Host,
    systemd: bool,
    policy: bool,
}

impl<'h> Starts<'h> {
    const POLICY: &'static str = "/usr/sbin/policy-rc.d";

    fn on(host: &'h Host) -> Starts<'h> {
        let runs = host.stat(Path::new("/run/systemd/system")).ok().flatten();
        let policy = host.stat(Path::new(Self::POLICY)).ok().flatten().is_some();
        Starts { host, systemd: runs.is_some_and(|s| s.kind == FileKind::Directory), policy }
    }

    /// Whether the postinst's start of `unit` runs, and why, for people.
    fn unit(&self, postinst: &str, unit: &str) -> (bool, String) {
        if !postinst_starts(postinst, unit) {
            return (false, "its postinst does not start it".into());
        }
        if !self.systemd {
            return (false, "no service manager runs here, so its postinst cannot start it".into());
        }
        // deb-systemd-invoke and invoke-rc.d skip a start that policy-rc.d answers 101.
        let status = self.policy.then(|| self.host.program(&[Self::POLICY, unit, "start"]).command().status());
        match status {
            Some(Ok(status)) if status.code() == Some(101) => {
                (false, format!("{} forbids its postinst to start it", Self::POLICY))
            }
            _ => (true, "its postinst starts it".into()),
        }
    }
}

/// Whether a postinst starts `unit` on a first install: dh_installsystemd's
/// `deb-systemd-invoke $_dh_action 'UNIT'` (start, on a first install), or dh_installinit's
/// `invoke-rc.d NAME start`, which systemd makes a start of NAME.service; not one with
/// `--skip-systemd-native`, which leaves a unit of systemd's own to deb-systemd-invoke.
fn postinst_starts(postinst: &str, unit: &str) -> bool {
    let script = unit.strip_suffix(".service");
    postinst.lines().any(|line| {
        let words = shell_words::split(line.trim()).unwrap_or_default();
        let Some(at) = words.iter().position(|w| w == "deb-systemd-invoke" || w == "invoke-rc.d") else {
            return false;
        };
        let args = &words[at + 1..];
        let has = |word: &str| args.iter().any(|a| a == word);
        let starting = has("start") || has("$_dh_action") || has("restart");
        match words[at].as_str() {
            "deb-systemd-invoke" => starting && has(unit),
            _ => starting && !has("--skip-systemd-native") && script.is_some_and(has),
        }
    })
}

/// The links a postinst makes with a plain `ln -s /TARGET /LINK` (both absolute, no variable):
/// (target, link).
fn postinst_links(postinst: &str) -> Vec<(PathBuf, PathBuf)> {
    postinst
        .lines()
        .filter_map(|line| {
            let words = shell_words::split(line.trim()).ok()?;
            let at = words.iter().position(|w| w == "ln")?;
            let (options, paths): (Vec<&String>, Vec<&String>) =
                words[at + 1..].iter().take_while(|w| !matches!(w.as_str(), "&&" | "||" | ";")).partition(|w| w.starts_with('-'));
            let symbolic = options.iter().any(|o| !o.starts_with("--") && o.contains('s'));
            let literal = |p: &&String| p.starts_with('/') && !p.contains('$');
            match paths[..] {
                [target, link] if symbolic && literal(&target) && literal(&link) => {
                    Some((PathBuf::from(target), PathBuf::from(link)))
                }
                _ => None,
            }
        })
        .collect()
}

/// A tar stream's entries as foreseen paths (`./etc/x` is `/etc/x`); the bytes of the files
/// `keep` names, up to [`KEPT`].
fn entries(stream: impl Read, origin: &str, keep: impl Fn(&Path) -> bool) -> std::io::Result<Vec<(PathBuf, Foreseen)>> {
    let mut archive = tar::Archive::new(stream);
    let mut found = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let normal = |c: &std::path::Component| matches!(c, std::path::Component::Normal(_));
        let path: PathBuf = Path::new("/").components().chain(entry.path()?.components().filter(normal)).collect();
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => FileKind::Directory,
            tar::EntryType::Symlink => FileKind::Symlink,
            tar::EntryType::Regular | tar::EntryType::Link => FileKind::File,
            _ => FileKind::Other,
        };
        let target = match kind {
            FileKind::Symlink => entry.link_name()?.map(|t| t.into_owned()),
            _ => None,
        };
        let (mode, uid, gid, size) = (header.mode()?, header.uid()? as u32, header.gid()? as u32, header.size()?);
        let content = match kind == FileKind::File && header.entry_type() == tar::EntryType::Regular {
            true if size <= KEPT && keep(&path) => {
                let mut bytes = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut bytes)?;
                Some(Arc::from(bytes))
            }
            _ => None,
        };
        let foreseen =
            Foreseen { kind, mode: Mode(mode & 0o7777), uid, gid, size, content, target, origin: origin.to_owned() };
        if path != Path::new("/") {
            found.push((path, foreseen));
        }
    }
    Ok(found)
}

/// `dpkg-deb FLAG DEB` (`--fsys-tarfile`, `--ctrl-tarfile`): its tar stream's entries.
fn unpack(
    host: &Host,
    deb: &Path,
    flag: &str,
    origin: &str,
    keep: impl Fn(&Path) -> bool,
) -> Result<Vec<(PathBuf, Foreseen)>, String> {
    let program = host.program(&[std::ffi::OsStr::new("dpkg-deb"), flag.as_ref(), deb.as_os_str()]);
    let mut child = program
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let read = entries(stdout, origin, keep);
    if read.is_err() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().map_err(|e| format!("dpkg-deb: {e}"))?;
    let cannot = |why: String| format!("cannot read {}: {why}", deb.display());
    if !output.status.success() {
        return Err(cannot(last_line(&String::from_utf8_lossy(&output.stderr)).to_owned()));
    }
    read.map_err(|e| cannot(e.to_string()))
}

/// What one package brings: its data, its conffiles, the links its postinst makes, its units.
fn read_deb(host: &Host, package: &Incoming, deb: &Path, starts: &Starts) -> Result<Forecast, String> {
    let name = &package.name;
    let origin = format!("package {name}");
    let control = unpack(host, deb, "--ctrl-tarfile", &origin, |_| true)?;
    let text = |member: &str| {
        control
            .iter()
            .find(|(path, _)| path == Path::new("/").join(member).as_path())
            .and_then(|(_, f)| f.content.as_ref())
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default()
    };
    let (postinst, conffiles) = (text("postinst"), text("conffiles"));
    let keep = |path: &Path| path.starts_with("/etc") || UNIT_DIRS.iter().any(|d| path.starts_with(d));
    let mut forecast = Forecast::default();
    for (path, mut foreseen) in unpack(host, deb, "--fsys-tarfile", &origin, keep)? {
        if conffiles.lines().any(|c| Path::new(c.trim()) == path) {
            foreseen.origin = format!("a conffile of package {name}");
        }
        forecast.paths.insert(path, foreseen);
    }
    for (target, link) in postinst_links(&postinst) {
        let parent_there = link.parent().is_some_and(|p| {
            forecast.at(p).is_some_and(|f| f.kind == FileKind::Directory)
                || host.stat(p).ok().flatten().is_some_and(|s| s.kind == FileKind::Directory)
        });
        if parent_there {
            let size = target.as_os_str().len() as u64;
            let origin = format!("the postinst of package {name}");
            let link_entry = Foreseen {
                kind: FileKind::Symlink,
                mode: Mode(0o777),
                uid: 0,
                gid: 0,
                size,
                content: None,
                target: Some(target),
                origin,
            };
            forecast.paths.insert(link, link_entry);
        }
    }
    forecast.units = units(&forecast, name, &postinst, starts);
    Ok(forecast)
}

/// The units among a package's files, and whether its postinst starts them.
fn units(forecast: &Forecast, package: &str, postinst: &str, starts: &Starts) -> Vec<ForeseenUnit> {
    let mut units = Vec::new();
    for (path, foreseen) in &forecast.paths {
        let in_unit_dir = path.parent().is_some_and(|p| UNIT_DIRS.iter().any(|d| p == Path::new(d)));
        let Some(name) = path.file_name().and_then(|n| n.to_str()).filter(|_| in_unit_dir) else { continue };
        if foreseen.kind != FileKind::File || name.contains("@.") || !name.contains('.') {
            continue;
        }
        let can_reload = foreseen
            .content
            .as_ref()
            .is_some_and(|c| String::from_utf8_lossy(c).lines().any(|l| l.trim_start().starts_with("ExecReload=")));
        let (starts, why) = starts.unit(postinst, name);
        units.push(ForeseenUnit { name: name.to_owned(), starts, can_reload, package: package.to_owned(), why });
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian 12's nginx-common postinst, the lines that matter.
    const POSTINST: &str = r#"
    if [ -z $2 ] && [ ! -e /etc/nginx/sites-enabled/default ] &&
       [ -d /etc/nginx/sites-enabled ] && [ -d /etc/nginx/sites-available ]; then
      ln -s /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default
    fi
    ln -sf "$dir/x" /etc/x
	deb-systemd-helper enable 'nginx.service' >/dev/null || true
		deb-systemd-invoke $_dh_action 'nginx.service' >/dev/null || true
		invoke-rc.d --skip-systemd-native other $_dh_action || exit 1
"#;

    #[test]
    fn reads_a_simulated_install() {
        let text = "NOTE: This is only a simulation!\nInst nginx-common (1.22.1-9+deb12u11 local [all])\n\
                    Inst libfoo1 [1.0-1] (1:1.1-2 Debian:12.8/stable [amd64]) []\n\
                    Conf nginx-common (1.22.1-9+deb12u11 local [all])\n";
        let incoming = parse_simulation(text);
        assert_eq!(
            incoming,
            [
                Incoming { name: "nginx-common".into(), version: "1.22.1-9+deb12u11".into(), arch: "all".into() },
                Incoming { name: "libfoo1".into(), version: "1:1.1-2".into(), arch: "amd64".into() },
            ]
        );
        assert_eq!(incoming[1].file_name(), "libfoo1_1%3a1.1-2_amd64.deb");
    }

    #[test]
    fn reads_what_a_postinst_starts_and_links() {
        assert!(postinst_starts(POSTINST, "nginx.service"));
        assert!(!postinst_starts(POSTINST, "other.service"), "--skip-systemd-native");
        assert!(!postinst_starts(POSTINST, "ssh.service"));
        assert!(postinst_starts("invoke-rc.d ssh start", "ssh.service"));
        assert!(!postinst_starts("deb-systemd-invoke stop 'a.service'", "a.service"));
        assert_eq!(
            postinst_links(POSTINST),
            [(PathBuf::from("/etc/nginx/sites-available/default"), PathBuf::from("/etc/nginx/sites-enabled/default"))],
            "a link to a variable's path is not foreseen"
        );
    }

    #[test]
    fn reads_a_data_tar() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, body: &[u8], link: Option<&str>| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
            header.set_size(body.len() as u64);
            header.set_uid(0);
            header.set_gid(0);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            builder.append_data(&mut header, path, body).unwrap();
        };
        add("./etc/nginx/", tar::EntryType::Directory, b"", None);
        add("./etc/nginx/nginx.conf", tar::EntryType::Regular, b"events {}\n", None);
        add("./usr/sbin/nginx", tar::EntryType::Regular, b"\x7fELF", None);
        add("./usr/sbin/nginx-alias", tar::EntryType::Symlink, b"", Some("nginx"));
        let tar = builder.into_inner().unwrap();
        let keep = |p: &Path| p.starts_with("/etc");
        let found: std::collections::BTreeMap<PathBuf, Foreseen> =
            entries(&tar[..], "nginx", keep).unwrap().into_iter().collect();
        assert_eq!(found[Path::new("/etc/nginx")].kind, FileKind::Directory);
        let conf = &found[Path::new("/etc/nginx/nginx.conf")];
        assert_eq!((conf.mode, conf.size, conf.content.as_deref()), (Mode(0o644), 10, Some(&b"events {}\n"[..])));
        assert_eq!(found[Path::new("/usr/sbin/nginx")].content, None, "not kept outside /etc and unit dirs");
        assert_eq!(found[Path::new("/usr/sbin/nginx-alias")].target, Some(PathBuf::from("nginx")));
    }
}
