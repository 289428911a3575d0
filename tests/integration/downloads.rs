//! `download`: from an HTTP server on 127.0.0.1 that the test starts (it counts the requests),
//! from `file://`, and through a proxy named by the environment; the sha256 check, a no-op that
//! makes no request, archives extracted once (tar.gz, tar.xz, zip), and hostile archives refused
//! with nothing written.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::support::{Run, Test};

tests![
    a_download_is_checked_and_a_no_op_makes_no_request,
    a_wrong_sha256_is_refused_with_nothing_written,
    file_urls_work_and_a_changed_file_is_fetched_again,
    the_proxy_of_the_environment_is_used,
    archives_are_extracted_once_and_again_when_changed,
    hostile_archives_are_refused_with_nothing_extracted,
    bad_urls_and_digests_are_errors_at_their_line,
];

/// An HTTP/1.1 server on 127.0.0.1 that answers every GET with `body` and keeps the request
/// lines it got. It stops by itself: after 50 connections or 5 minutes.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(body: Vec<u8>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut served = 0;
            while Instant::now() < deadline && served < 50 {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                served += 1;
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                // A proxy's client asks for a tunnel first (CONNECT host:port), then sends its
                // request through it.
                let mut line = read_request(&mut reader);
                if line.starts_with("CONNECT ") {
                    seen.lock().unwrap().push(line);
                    let _ = stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                    line = read_request(&mut reader);
                }
                seen.lock().unwrap().push(line);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
            }
        });
        Server { port, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// An error as one line: miette wraps long messages and decorates them.
pub fn flat(text: &str) -> String {
    let words = text.lines().map(|l| l.trim_start_matches([' ', '│', '╰', '─', '▶', '×']).trim());
    words.filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Reads a request's line and headers; returns the line.
fn read_request(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    line.trim_end().to_owned()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs converge with no proxy in its environment (a test machine's proxy would not reach the
/// test's server), plus `env`.
fn run(test: &Test, args: &[&str], env: &[(&str, String)]) -> Run {
    let mut command: Command = test.command(args);
    for var in ["http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
        command.env_remove(var);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    test.run_command(command)
}

fn apply(test: &Test) -> Run {
    run(test, &["apply", "{playbook}", "--root", "{root}"], &[])
}

fn plan(test: &Test) -> Run {
    run(test, &["plan", "{playbook}", "--root", "{root}"], &[])
}

fn playbook(path: &str, url: &str, sha: &str, extra: &str) -> String {
    format!("resources:\n  - directory: /opt\n  - download: {path}\n    url: {url}\n    sha256: {sha}\n{extra}")
}

fn a_download_is_checked_and_a_no_op_makes_no_request() {
    let body = b"#!/bin/sh\necho tool\n".to_vec();
    let server = Server::start(body.clone());
    let test = Test::new().playbook(&playbook("/opt/tool", &server.url("/tool"), &sha256(&body), "    mode: \"0755\"\n"));
    let out = plan(&test).code(2).stdout;
    assert!(out.contains("+ download:/opt/tool (create)") && out.contains(&format!("sha256: {}", sha256(&body))), "{out}");
    assert_eq!(server.count(), 0, "a plan downloads nothing");
    apply(&test).success();
    assert_eq!(fs::read(test.host_path("/opt/tool")).unwrap(), body);
    assert_eq!(fs::metadata(test.host_path("/opt/tool")).unwrap().permissions().mode() & 0o7777, 0o755);
    assert_eq!(server.requests.lock().unwrap().as_slice(), ["GET /tool HTTP/1.1"]);

    let again = apply(&test).success();
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);
    assert_eq!(server.count(), 1, "the no-op made a request");
}

fn a_wrong_sha256_is_refused_with_nothing_written() {
    let body = b"what the server has\n".to_vec();
    let server = Server::start(body.clone());
    let wrong = "0".repeat(64);
    let test = Test::new().playbook(&playbook("/opt/app.bin", &server.url("/app.bin"), &wrong, ""));
    let run = apply(&test).code(1);
    let err = flat(&run.stderr);
    assert!(err.contains(&format!("has sha256 {}, not {wrong}", sha256(&body))), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    let left: Vec<_> = fs::read_dir(test.host_path("/opt")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "the download left {left:?}");

    // An existing file stays as it was.
    fs::write(test.host_path("/opt/app.bin"), "old\n").unwrap();
    apply(&test).code(1);
    test.expect_file("/opt/app.bin", "old\n");
}

fn file_urls_work_and_a_changed_file_is_fetched_again() {
    let test = Test::new().file("release/app.bin", "v1\n");
    let url = format!("file://{}", test.dir.path().join("release/app.bin").display());
    let test = test.playbook(&playbook("/opt/app.bin", &url, &sha256(b"v1\n"), ""));
    apply(&test).success();
    test.expect_file("/opt/app.bin", "v1\n");
    fs::write(test.host_path("/opt/app.bin"), "tampered\n").unwrap();
    let out = plan(&test).code(2).stdout;
    assert!(out.contains(&format!("sha256: {} -> {}", sha256(b"tampered\n"), sha256(b"v1\n"))), "{out}");
    apply(&test).success();
    test.expect_file("/opt/app.bin", "v1\n");
    assert!(plan(&test).code(0).stdout.starts_with("No changes."));
}

/// A URL whose host does not resolve is reached through the proxy of HTTP_PROXY, which is the
/// test's server: it gets the request in a proxy's form (the whole URL).
fn the_proxy_of_the_environment_is_used() {
    let body = b"through the proxy\n".to_vec();
    let proxy = Server::start(body.clone());
    let test = Test::new().playbook(&playbook("/opt/p.bin", "http://releases.invalid/p.bin", &sha256(&body), ""));
    let args = ["apply", "{playbook}", "--root", "{root}"];
    run(&test, &args, &[("HTTP_PROXY", format!("http://127.0.0.1:{}", proxy.port))]).success();
    test.expect_file("/opt/p.bin", "through the proxy\n");
    let requests = proxy.requests.lock().unwrap().clone();
    assert!(requests.iter().any(|r| r.contains("releases.invalid")), "the proxy got {requests:?}");
}

/// A tar archive of a small release: a folder, a program, a text file and a symlink inside.
fn release_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, kind: tar::EntryType, body: &[u8], link: Option<&str>| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(body.len() as u64);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        builder.append_data(&mut header, path, body).unwrap();
    };
    add("app/", 0o755, tar::EntryType::Directory, b"", None);
    add("app/bin/app", 0o755, tar::EntryType::Regular, b"#!/bin/sh\necho app\n", None);
    add("app/README", 0o644, tar::EntryType::Regular, b"read me\n", None);
    add("app/current", 0o777, tar::EntryType::Symlink, b"", Some("bin/app"));
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn xz(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("xz")
        .args(["-c", "-z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap().stdout
}

fn release_zip() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = |mode| zip::write::SimpleFileOptions::default().unix_permissions(mode);
    zip.add_directory("app/", options(0o755)).unwrap();
    zip.start_file("app/bin/app", options(0o755)).unwrap();
    zip.write_all(b"#!/bin/sh\necho app\n").unwrap();
    zip.start_file("app/README", options(0o644)).unwrap();
    zip.write_all(b"read me\n").unwrap();
    zip.add_symlink("app/current", "bin/app", options(0o777)).unwrap();
    zip.finish().unwrap().into_inner()
}

fn archives_are_extracted_once_and_again_when_changed() {
    require!(Tool("xz"));
    for (name, archive) in [("app.tar.gz", gzip(&release_tar())), ("app.tar.xz", xz(&release_tar())), ("app.zip", release_zip())] {
        let server = Server::start(archive.clone());
        let test = Test::new().playbook(&playbook(
            &format!("/opt/{name}"),
            &server.url(&format!("/{name}")),
            &sha256(&archive),
            "    extract: /opt/release\n",
        ));
        let out = plan(&test).code(2).stdout;
        assert!(out.contains("extract: /opt/release"), "{name}: {out}");
        apply(&test).success();
        test.expect_file("/opt/release/app/README", "read me\n").expect_file("/opt/release/app/bin/app", "#!/bin/sh\necho app\n");
        let mode = |p: &str| fs::metadata(test.host_path(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode("/opt/release/app/bin/app"), mode("/opt/release/app/README")), (0o755, 0o644), "{name}");
        assert_eq!(fs::read_link(test.host_path("/opt/release/app/current")).unwrap(), Path::new("bin/app"), "{name}");

        let inode = |p: &str| std::os::unix::fs::MetadataExt::ino(&fs::metadata(test.host_path(p)).unwrap());
        let before = inode("/opt/release/app/README");
        assert!(apply(&test).success().stdout.starts_with("No changes."), "{name}");
        assert_eq!(inode("/opt/release/app/README"), before, "{name}: extracted again on a no-op");
        assert_eq!(server.count(), 1, "{name}");

        // A member removed by hand: extracted again from the file already there, no request.
        fs::remove_file(test.host_path("/opt/release/app/README")).unwrap();
        let out = plan(&test).code(2).stdout;
        assert!(out.contains("extract: changed since it was extracted -> /opt/release"), "{name}: {out}");
        apply(&test).success();
        test.expect_file("/opt/release/app/README", "read me\n");
        assert_eq!(server.count(), 1, "{name}");
        plan(&test).code(0);
    }
}

/// A tar whose one member is named `name` as written (the tar crate refuses to write `..`).
fn raw_tar(name: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(if kind == tar::EntryType::Regular { 5 } else { 0 });
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    if kind == tar::EntryType::Regular {
        let mut block = b"evil\n".to_vec();
        block.resize(512, 0);
        bytes.extend(block);
    }
    bytes
}

fn hostile_archives_are_refused_with_nothing_extracted() {
    let concat = |parts: &[Vec<u8>]| {
        let mut all: Vec<u8> = parts.concat();
        all.extend([0u8; 1024]);
        all
    };
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("../evil", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(b"evil\n").unwrap();
    let evil_zip = zip.finish().unwrap().into_inner();
    let cases = [
        ("dotdot", gzip(&concat(&[raw_tar("../../etc/evil", tar::EntryType::Regular, None)])), "climbs out with `..`"),
        ("absolute", gzip(&concat(&[raw_tar("/etc/evil", tar::EntryType::Regular, None)])), "is an absolute path"),
        (
            "link",
            gzip(&concat(&[
                raw_tar("ok", tar::EntryType::Regular, None),
                raw_tar("etc", tar::EntryType::Symlink, Some("/etc")),
            ])),
            "is a symlink to `/etc`, which is outside",
        ),
        (
            "through a link",
            gzip(&concat(&[
                raw_tar("lib", tar::EntryType::Symlink, Some("lib64")),
                raw_tar("lib/evil", tar::EntryType::Regular, None),
            ])),
            "lies below `lib`, a symlink of the archive",
        ),
        ("hard link", gzip(&concat(&[raw_tar("h", tar::EntryType::Link, Some("/etc/shadow"))])), "is a hard link"),
        ("zip", evil_zip, "climbs out with `..`"),
    ];
    for (what, archive, why) in cases {
        let test = Test::new().file("evil.bin", "");
        fs::write(test.dir.path().join("evil.bin"), &archive).unwrap();
        let url = format!("file://{}", test.dir.path().join("evil.bin").display());
        let test = test.playbook(&playbook("/opt/evil.bin", &url, &sha256(&archive), "    extract: /opt/x\n"));
        let run = apply(&test).code(1);
        let err = run.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(err.contains(why) && err.contains("nothing was extracted into /opt/x"), "{what}: {err}");
        test.expect_absent("/opt/x").expect_absent("/etc/evil");
        assert!(!test.dir.path().join("evil").exists(), "{what}: a member reached the test's folder");
    }
}

fn bad_urls_and_digests_are_errors_at_their_line() {
    let test = Test::new().playbook(
        "resources:\n  - download: /opt/a\n    url: ftp://example.org/a\n    sha256: abc\n  - download: /opt/b\n    url: http://example.org/b\n",
    );
    let run = test.validate().code(1);
    let err = run.err();
    assert!(err.contains("`ftp://example.org/a` is not a URL converge can download from"), "{err}");
    assert!(err.contains("playbook.yml:3:10") && err.contains("`abc` is not a sha256"), "{err}");
    assert!(err.contains("a download needs `sha256`"), "{err}");
}
