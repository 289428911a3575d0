//! File modes as a playbook writes them: "0644", a bare 0644 (always the octal it looks like,
//! never decimal 644), "0o644", or any symbolic mode chmod(1) accepts ("u=rw,g=r,o=r",
//! "a=rX,u+w", "g=u-w"), applied clause by clause as chmod applies it to a file that has no
//! permission bits yet: a mode says what the file ends up with, whatever it had before.

use std::fmt;

/// Permission bits, including setuid, setgid and sticky.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mode(pub u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Mode {
    /// Parses the mode of a file as written; the error says what is wrong, for a help line.
    pub fn parse(text: &str) -> Result<Mode, String> {
        Mode::parse_for(text, false)
    }

    /// Parses a mode for a file or (`dir`) a directory: `X` gives execute permission to a
    /// directory. A symbolic mode is applied as chmod(1) applies it, clause after clause, to a
    /// file with no permission bits and a umask of 0: the mode is what the file ends up with.
    pub fn parse_for(text: &str, dir: bool) -> Result<Mode, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("a mode cannot be empty".into());
        }
        let octal = text.strip_prefix("0o").unwrap_or(text);
        if octal.chars().all(|c| c.is_ascii_digit()) {
            if let Some(bad) = octal.chars().find(|c| *c > '7') {
                return Err(format!("`{bad}` is not an octal digit: modes are octal, each digit 0 to 7"));
            }
            let value = u32::from_str_radix(octal, 8).map_err(|e| e.to_string())?;
            if value > 0o7777 {
                return Err("an octal mode has at most four digits".into());
            }
            return Ok(Mode(value));
        }
        symbolic(text, 0, dir).map(Mode)
    }
}

const ALL: u32 = 0o7777;
const READ: u32 = 0o444;
const WRITE: u32 = 0o222;
const EXEC: u32 = 0o111;

/// chmod(1)'s symbolic modes, as GNU coreutils (gnulib modechange.c) applies them to `mode`:
/// `[ugoa]*([-+=]([rwxXst]*|[ugo]))+` clauses separated by commas, each applied in turn. Without
/// `ugoa`, a clause is `a` (the umask, which chmod would leave out, is 0 here). `X` is execute
/// when the file is a directory or some execute bit is already set; `u`/`g`/`o` after the
/// operator copy that class's current bits; setuid and setgid of a directory change only when
/// named.
fn symbolic(text: &str, mut mode: u32, dir: bool) -> Result<u32, String> {
    for clause in text.split(',') {
        let bytes = clause.as_bytes();
        let mut i = 0;
        let mut affected = 0;
        while i < bytes.len() && b"ugoa".contains(&bytes[i]) {
            affected |= match bytes[i] {
                b'u' => 0o4700,
                b'g' => 0o2070,
                b'o' => 0o1007,
                _ => ALL,
            };
            i += 1;
        }
        if i == bytes.len() || !b"+-=".contains(&bytes[i]) {
            return Err(format!(
                "`{clause}` is neither octal nor a symbolic clause like u=rw (classes u, g, o, a; then +, - or =)"
            ));
        }
        while i < bytes.len() {
            let op = bytes[i];
            if !b"+-=".contains(&op) {
                let bad = clause[i..].chars().next().unwrap_or('?');
                return Err(format!("`{bad}` is not a permission: use r, w, x, X, s, t, or one of u, g, o"));
            }
            i += 1;
            let mut value = 0;
            let mut copy = None;
            let mut if_any_x = false;
            // `=640`, `+755`, `-111`: an octal operand, only without classes and last in its clause.
            if bytes.get(i).is_some_and(u8::is_ascii_digit) {
                let digits: String = clause[i..].chars().take_while(char::is_ascii_digit).collect();
                let octal = u32::from_str_radix(&digits, 8).ok().filter(|v| *v <= ALL);
                let (Some(octal), 0, true) = (octal, affected, i + digits.len() == bytes.len()) else {
                    return Err(format!(
                        "`{clause}`: an octal number after {} needs no classes before it, at most four octal digits, and nothing after it",
                        op as char
                    ));
                };
                match op {
                    b'=' => mode = octal,
                    b'+' => mode |= octal,
                    _ => mode &= !octal,
                }
                i = bytes.len();
                continue;
            }
            match bytes.get(i) {
                Some(b'u') => copy = Some(0o700),
                Some(b'g') => copy = Some(0o070),
                Some(b'o') => copy = Some(0o007),
                _ => {}
            }
            if copy.is_some() {
                i += 1;
            } else {
                while let Some(&p) = bytes.get(i) {
                    value |= match p {
                        b'r' => READ,
                        b'w' => WRITE,
                        b'x' => EXEC,
                        b'X' => {
                            if_any_x = true;
                            0
                        }
                        b's' => 0o6000,
                        b't' => 0o1000,
                        _ => break,
                    };
                    i += 1;
                }
            }
            let mentioned = if affected != 0 { affected & value } else { value };
            let omit = if dir { 0o6000 & !mentioned } else { 0 };
            if let Some(class) = copy {
                let bits = mode & class;
                value = (if bits & READ != 0 { READ } else { 0 })
                    | (if bits & WRITE != 0 { WRITE } else { 0 })
                    | (if bits & EXEC != 0 { EXEC } else { 0 });
            }
            if if_any_x && (mode & EXEC != 0 || dir) {
                value |= EXEC;
            }
            let who = if affected != 0 { affected } else { ALL };
            value &= who & !omit;
            match op {
                b'=' => {
                    let preserved = (if affected != 0 { !affected } else { 0 }) | omit;
                    mode = (mode & preserved) | value;
                }
                b'+' => mode |= value,
                _ => mode &= !value,
            }
        }
    }
    Ok(mode & ALL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_forms() {
        assert_eq!(Mode::parse("0644"), Ok(Mode(0o644)));
        assert_eq!(Mode::parse("644"), Ok(Mode(0o644)));
        assert_eq!(Mode::parse("0o755"), Ok(Mode(0o755)));
        assert_eq!(Mode::parse("2775"), Ok(Mode(0o2775)));
        assert_eq!(Mode(0o644).to_string(), "0644");
    }

    #[test]
    fn symbolic_forms() {
        assert_eq!(Mode::parse("u=rw,g=r,o=r"), Ok(Mode(0o644)));
        assert_eq!(Mode::parse("u=rwx,go=rx"), Ok(Mode(0o755)));
        assert_eq!(Mode::parse("a=r"), Ok(Mode(0o444)));
        assert_eq!(Mode::parse("u=rwxs,o=t"), Ok(Mode(0o5700)));
    }

    #[test]
    fn bad_modes_say_why() {
        assert!(Mode::parse("0999").unwrap_err().contains("octal digit"));
        assert!(Mode::parse("77777").unwrap_err().contains("four digits"));
        assert!(Mode::parse("rw-r--r--").unwrap_err().contains("symbolic"));
        assert!(Mode::parse("u=rq").unwrap_err().contains("`q`"));
        assert!(Mode::parse("u").unwrap_err().contains("symbolic"));
        assert!(Mode::parse("u=644").unwrap_err().contains("octal number"));
        assert!(Mode::parse("=9").unwrap_err().contains("octal number"));
        assert!(Mode::parse("").unwrap_err().contains("empty"));
    }

    #[test]
    fn clauses_apply_in_order_as_chmod_does() {
        assert_eq!(Mode::parse("go=,u=rw,a=r"), Ok(Mode(0o444)));
        assert_eq!(Mode::parse("u=rwx,u=r"), Ok(Mode(0o400)));
        assert_eq!(Mode::parse("u=rwx,g=u,o=g-w"), Ok(Mode(0o775)));
        assert_eq!(Mode::parse_for("a=rX", true), Ok(Mode(0o555)));
        assert_eq!(Mode::parse_for("a=rX", false), Ok(Mode(0o444)));
        assert_eq!(Mode::parse("u+x,go+X"), Ok(Mode(0o111)));
    }

    /// The real chmod on a table of forms: each applied to a file (and a directory) with no
    /// permission bits and a umask of 0, as converge applies it.
    #[test]
    fn agrees_with_the_real_chmod() {
        let dir = tempfile_dir().expect("a temporary directory");
        let forms = [
            "u=rw,g=r,o=r",
            "go=,u=rw,a=r",
            "u=rwx,u=r",
            "a=r",
            "=r",
            "+x",
            "u+x,g+X,o=X",
            "a+X",
            "u=rwxs,o=t",
            "ug+s",
            "+s",
            "+t",
            "=t",
            "u=rw,g=u",
            "u=rwx,g=u-w,o=g",
            "u=rw,o=u,u-w",
            "a=rwx,o-rwx,g-w",
            "a+rw-w+x",
            "u=r,u+w,u-r",
            "a=,u+s",
            "g+s,u=rx",
            "a=rwx,a-s",
            "o=t,o+x,u=",
            "ug=rwx,o=rx,+t",
            "u=rwX,go=rX",
            "a=rwxst",
            "-x",
            "a=X,+X",
            "u+s,g=u",
            "g=o,o=u",
        ];
        for form in forms {
            for is_dir in [false, true] {
                let path = dir.join(if is_dir { "d" } else { "f" });
                let _ = std::fs::remove_dir(&path);
                let _ = std::fs::remove_file(&path);
                if is_dir {
                    std::fs::create_dir(&path).unwrap();
                } else {
                    std::fs::write(&path, "").unwrap();
                }
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
                let mut chmod = std::process::Command::new("chmod");
                chmod.arg("--").arg(form).arg(&path);
                // chmod leaves the umask's bits alone when no class is named: run it with 0.
                unsafe {
                    std::os::unix::process::CommandExt::pre_exec(&mut chmod, || {
                        nix::sys::stat::umask(nix::sys::stat::Mode::empty());
                        Ok(())
                    });
                }
                let status = chmod.status().expect("chmod runs");
                assert!(status.success(), "chmod {form}");
                let real = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
                let ours = Mode::parse_for(form, is_dir).unwrap();
                assert_eq!(
                    ours,
                    Mode(real),
                    "{form} on a {}: chmod gives {real:04o}",
                    if is_dir { "directory" } else { "file" }
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
        let dir = std::env::temp_dir().join(format!("converge-mode-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}
