//! File modes as a playbook writes them: "0644", a bare 0644 (always the octal it looks like,
//! never decimal 644), "0o644", or symbolic "u=rw,g=r,o=r".

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
    /// Parses the mode as written; the error says what is wrong, for a help line.
    pub fn parse(text: &str) -> Result<Mode, String> {
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
        symbolic(text)
    }
}

/// `u=rw,g=r,o=`: each clause sets the bits of the classes it names (absent classes get none).
fn symbolic(text: &str) -> Result<Mode, String> {
    let mut mode = 0;
    for clause in text.split(',') {
        let Some((who, perms)) = clause.split_once('=') else {
            return Err(format!("`{clause}` is neither octal nor a symbolic clause like u=rw"));
        };
        if who.is_empty() || !who.chars().all(|c| "ugoa".contains(c)) {
            return Err(format!("`{who}` should name classes from u, g, o, a"));
        }
        for class in who.chars() {
            let (shift, special) = match class {
                'u' => (6, 0o4000),
                'g' => (3, 0o2000),
                'o' => (0, 0o1000),
                _ => {
                    mode |= symbolic(&format!("u={perms},g={perms},o={perms}"))?.0;
                    continue;
                }
            };
            for p in perms.chars() {
                mode |= match p {
                    'r' => 4 << shift,
                    'w' => 2 << shift,
                    'x' => 1 << shift,
                    's' if class != 'o' => special,
                    't' if class == 'o' => special,
                    _ => {
                        return Err(format!(
                            "`{p}` is not a permission for `{class}`: use r, w, x (s for u/g, t for o)"
                        ));
                    }
                };
            }
        }
    }
    Ok(Mode(mode))
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
    }
}
