//! Reading systemd unit files (systemd.syntax(7)): sections of `Key=Value` lines, `#`/`;`
//! comments, backslash line continuation. converge reads what it needs for its decisions: the
//! `[Install]` section (to enable units under `--root`), a socket's `Listen*=` paths and a
//! service's `RuntimeDirectory=`, `Sockets=` and `ExecReload=`.

/// A parsed unit file: (section, key, value, line) in file order. An empty value resets a list
/// setting, as systemd does (`ExecStart=` before a new `ExecStart=` in a drop-in).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UnitFile {
    entries: Vec<(String, String, String, usize)>,
}

/// The unit types systemd knows, as name suffixes.
pub const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".timer",
    ".target",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
    ".scope",
    ".device",
];

/// Checks a unit name the way systemd does (`unit_name_is_valid` in src/basic/unit-name.c): at
/// most 255 bytes, a known type suffix, and a prefix of `[a-zA-Z0-9:_.\\-]`, either plain
/// (`app.service`), a template (`app@.service`) or an instance (`app@one.service`; the instance
/// may hold `@` too). No `/`, so a name can never lead out of a unit directory. The error says
/// what is wrong.
pub fn check_unit_name(name: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || ":-_.\\".contains(c);
    if name.len() > 255 {
        return Err(format!("is {} bytes; a unit name has at most 255", name.len()));
    }
    let Some((prefix, suffix)) = name.rsplit_once('.') else {
        return Err("has no type suffix such as .service".into());
    };
    if !UNIT_SUFFIXES.contains(&format!(".{suffix}").as_str()) {
        return Err(format!("has no known unit type (`.{suffix}`); use one of {}", UNIT_SUFFIXES.join(", ")));
    }
    let (base, instance) = match prefix.split_once('@') {
        Some((base, instance)) => (base, Some(instance)),
        None => (prefix, None),
    };
    if base.is_empty() {
        return Err("has an empty name before its suffix or `@`".into());
    }
    if let Some(bad) = base.chars().chain(instance.unwrap_or_default().chars()).find(|&c| !valid(c) && c != '@') {
        return Err(format!("holds `{}`, which systemd does not allow in unit names", bad.escape_debug()));
    }
    if base.contains('@') {
        return Err("holds `@` before its instance".into());
    }
    Ok(())
}

/// The unit a name without a known suffix likely means: a misspelt suffix corrected
/// (`ssh.servic` -> `ssh.service`), else `.service` added; never a second suffix.
pub fn unit_suggestion(name: &str) -> String {
    if let Some((stem, suffix)) = name.rsplit_once('.')
        && !stem.is_empty()
        && let Some(close) = crate::error::did_you_mean(suffix, UNIT_SUFFIXES.iter().map(|s| &s[1..]))
    {
        return format!("{stem}.{close}");
    }
    format!("{name}.service")
}

/// Whether `name` is a template (`app@.service`): a unit file for instances, never a unit that
/// runs.
pub fn is_template(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(prefix, _)| prefix.ends_with('@') && prefix.matches('@').count() == 1)
}

/// The template of an instance: `app@one.service` -> `app@.service`; None for other names.
pub fn template_of(name: &str) -> Option<String> {
    let (prefix, suffix) = name.rsplit_once('.')?;
    let (base, instance) = prefix.split_once('@')?;
    (!instance.is_empty()).then(|| format!("{base}@.{suffix}"))
}

/// The `ListUnitsByPatterns` pattern of a template's instances: `app@.service` -> `app@*.service`.
pub fn instance_pattern(template: &str) -> Option<String> {
    let (prefix, suffix) = template.rsplit_once('.')?;
    is_template(template).then(|| format!("{prefix}*.{suffix}"))
}

impl UnitFile {
    pub fn parse(text: &str) -> UnitFile {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        let mut first_line = 0;
        for (number, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if pending.is_empty() {
                first_line = number + 1;
            }
            if let Some(continued) = line.strip_suffix('\\') {
                pending.push_str(continued);
                pending.push(' ');
                continue;
            }
            let line = std::mem::take(&mut pending) + line;
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
            } else if let Some((key, value)) = line.split_once('=') {
                entries.push((section.clone(), key.trim().to_owned(), value.trim().to_owned(), first_line));
            }
        }
        UnitFile { entries }
    }

    /// A unit file with its drop-ins applied on top, in order.
    pub fn with_dropins<'a>(text: &str, dropins: impl IntoIterator<Item = &'a str>) -> UnitFile {
        let mut unit = UnitFile::parse(text);
        for dropin in dropins {
            unit.entries.extend(UnitFile::parse(dropin).entries);
        }
        unit
    }

    /// Every value of `key` in `section`, space-separated words split, with resets applied.
    pub fn list(&self, section: &str, key: &str) -> Vec<String> {
        let mut values = Vec::new();
        for (s, k, v, _) in &self.entries {
            if s == section && k == key {
                if v.is_empty() {
                    values.clear();
                } else {
                    values.extend(v.split_whitespace().map(str::to_owned));
                }
            }
        }
        values
    }

    /// Every word of `key` in `section` with the line it is on (resets applied), for errors
    /// that point at the line.
    pub fn list_with_lines(&self, section: &str, key: &str) -> Vec<(String, usize)> {
        let mut values = Vec::new();
        for (s, k, v, line) in &self.entries {
            if s == section && k == key {
                if v.is_empty() {
                    values.clear();
                } else {
                    values.extend(v.split_whitespace().map(|w| (w.to_owned(), *line)));
                }
            }
        }
        values
    }

    /// The last value of `key` in `section`.
    pub fn last(&self, section: &str, key: &str) -> Option<&str> {
        self.entries.iter().rev().find(|(s, k, ..)| s == section && k == key).map(|(_, _, v, _)| v.as_str())
    }

    /// A socket unit's file-system paths (`ListenStream=/run/x.sock` and kin; not ports).
    pub fn listen_paths(&self) -> Vec<String> {
        ["ListenStream", "ListenDatagram", "ListenSequentialPacket", "ListenFIFO"]
            .iter()
            .flat_map(|key| self.list("Socket", key))
            .filter(|v| v.starts_with('/'))
            .collect()
    }

    /// A service's runtime directories as absolute paths (`RuntimeDirectory=gunicorn` ->
    /// `/run/gunicorn`), and whether they survive a stop (`RuntimeDirectoryPreserve=yes|restart`).
    pub fn runtime_directories(&self) -> (Vec<String>, bool) {
        let dirs = self.list("Service", "RuntimeDirectory").into_iter().map(|d| format!("/run/{d}")).collect();
        let preserve = matches!(self.last("Service", "RuntimeDirectoryPreserve"), Some("yes" | "restart" | "true"));
        (dirs, preserve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "[Unit]\nDescription=gunicorn daemon\nRequires=gunicorn.socket\n\n[Service]\n# comment\nRuntimeDirectory=gunicorn\nExecStart=/venv/bin/gunicorn \\\n  --bind unix:/run/gunicorn/socket app.wsgi\nExecReload=/bin/kill -s HUP $MAINPID\n\n[Install]\nWantedBy=multi-user.target\n";

    #[test]
    fn reads_sections_lists_and_continuations() {
        let unit = UnitFile::parse(SERVICE);
        assert_eq!(unit.list("Install", "WantedBy"), ["multi-user.target"]);
        assert_eq!(
            unit.last("Service", "ExecStart"),
            Some("/venv/bin/gunicorn  --bind unix:/run/gunicorn/socket app.wsgi")
        );
        assert_eq!(unit.runtime_directories(), (vec!["/run/gunicorn".to_owned()], false));
    }

    #[test]
    fn dropins_override_and_reset() {
        let unit = UnitFile::with_dropins(
            SERVICE,
            ["[Service]\nRuntimeDirectoryPreserve=yes\n", "[Install]\nWantedBy=\nWantedBy=sockets.target\n"],
        );
        assert_eq!(unit.runtime_directories(), (vec!["/run/gunicorn".to_owned()], true));
        assert_eq!(unit.list("Install", "WantedBy"), ["sockets.target"]);
    }

    #[test]
    fn unit_names_are_checked_as_systemd_does() {
        for good in ["app.service", "getty@tty1.service", "echo@.service", "a:b-c_d.e\\x2d.socket", "x@a@b.service"] {
            assert_eq!(check_unit_name(good), Ok(()), "{good}");
        }
        for bad in [
            "../../../../tmp/victim",
            "a/b.service",
            "app",
            "app.servic",
            ".service",
            "@x.service",
            "a b.service",
            "-x.service\n",
        ] {
            assert!(check_unit_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_unit_name(&format!("{}.service", "a".repeat(250))).is_err());
    }

    #[test]
    fn unit_suggestions_never_double_the_suffix() {
        assert_eq!(unit_suggestion("ssh.servic"), "ssh.service");
        assert_eq!(unit_suggestion("app.sokcet"), "app.socket");
        assert_eq!(unit_suggestion("nginx"), "nginx.service");
        assert_eq!(unit_suggestion("my.app"), "my.app.service");
    }

    #[test]
    fn install_words_keep_their_line() {
        let unit =
            UnitFile::parse("[Unit]\nDescription=x\n\n[Install]\nWantedBy=a.target \\\n  b.target\nAlias=c.service\n");
        assert_eq!(
            unit.list_with_lines("Install", "WantedBy"),
            [("a.target".to_owned(), 5), ("b.target".to_owned(), 5)]
        );
        assert_eq!(unit.list_with_lines("Install", "Alias"), [("c.service".to_owned(), 7)]);
    }

    #[test]
    fn socket_paths_not_ports() {
        let socket = UnitFile::parse(
            "[Socket]\nListenStream=/run/gunicorn/socket\nListenStream=8000\nListenDatagram=/run/x.dgram\n",
        );
        assert_eq!(socket.listen_paths(), ["/run/gunicorn/socket", "/run/x.dgram"]);
    }

    #[test]
    fn templates_and_instances() {
        assert!(is_template("echo@.service"));
        assert!(!is_template("echo@one.service"));
        assert!(!is_template("echo.service"));
        assert_eq!(template_of("echo@one.service").as_deref(), Some("echo@.service"));
        assert_eq!(template_of("echo@a@b.socket").as_deref(), Some("echo@.socket"));
        assert_eq!(template_of("echo@.service"), None);
        assert_eq!(template_of("echo.service"), None);
        assert_eq!(instance_pattern("gunicorn@.service").as_deref(), Some("gunicorn@*.service"));
        assert_eq!(instance_pattern("gunicorn.service"), None);
    }
}
