//! Reading systemd unit files (systemd.syntax(7)): sections of `Key=Value` lines, `#`/`;`
//! comments, backslash line continuation. converge reads what it needs for its decisions: the
//! `[Install]` section (to enable units under `--root`), a socket's `Listen*=` paths and a
//! service's `RuntimeDirectory=`, `Sockets=` and `ExecReload=`.

/// A parsed unit file: (section, key, value) in file order. An empty value resets a list
/// setting, as systemd does (`ExecStart=` before a new `ExecStart=` in a drop-in).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UnitFile {
    entries: Vec<(String, String, String)>,
}

impl UnitFile {
    pub fn parse(text: &str) -> UnitFile {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';')) {
                continue;
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
                entries.push((section.clone(), key.trim().to_owned(), value.trim().to_owned()));
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
        for (s, k, v) in &self.entries {
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

    /// The last value of `key` in `section`.
    pub fn last(&self, section: &str, key: &str) -> Option<&str> {
        self.entries.iter().rev().find(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.as_str())
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
    fn socket_paths_not_ports() {
        let socket = UnitFile::parse(
            "[Socket]\nListenStream=/run/gunicorn/socket\nListenStream=8000\nListenDatagram=/run/x.dgram\n",
        );
        assert_eq!(socket.listen_paths(), ["/run/gunicorn/socket", "/run/x.dgram"]);
    }
}
