//! `Target`: one machine that converge provisions over SSH, from `--host [USER@]HOST[:PORT]` or
//! from an inventory entry, with what ssh needs to reach it and the variables it adds.

use std::path::PathBuf;

/// A machine to converge, and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What output calls it: the `--host` value as written, or the inventory's name.
    pub name: String,
    /// What ssh connects to: a host name, an address, or a `Host` of the ssh config.
    pub destination: String,
    /// The login user (`ssh -l`); None leaves it to the ssh config.
    pub user: Option<String>,
    /// The port (`ssh -p`); None leaves it to the ssh config.
    pub port: Option<u16>,
    /// The private key (`ssh -i`, with `IdentitiesOnly=yes`).
    pub key: Option<PathBuf>,
    /// Run the engine through `sudo -n` on the target.
    pub become_root: bool,
    /// The inventory's variables for this host (its groups', then its own); a JSON object.
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// The inventory groups it is in (for `--limit`).
    pub groups: Vec<String>,
}

impl Target {
    /// Parses `[USER@]HOST[:PORT]`; an IPv6 address with a port is written `[ADDR]:PORT`.
    pub fn parse(spec: &str) -> Result<Target, String> {
        let bad =
            |why: &str| format!("--host `{spec}`: {why}; write [USER@]HOST[:PORT], e.g. vagrant@192.168.56.10:22");
        let (user, rest) = match spec.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, spec),
        };
        if user.is_some_and(str::is_empty) {
            return Err(bad("the user before `@` is empty"));
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let Some((addr, after)) = inner.split_once(']') else { return Err(bad("`[` without `]`")) };
            match after {
                "" => (addr, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (addr, Some(port)),
                    None => return Err(bad("unexpected text after `]`")),
                },
            }
        } else {
            match rest.split_once(':') {
                // One colon separates the port; more make a bare IPv6 address.
                Some((host, port)) if !port.contains(':') => (host, Some(port)),
                _ => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if host.starts_with('-') || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("a host name cannot start with `-` or contain spaces"));
        }
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
            ),
            None => None,
        };
        Ok(Target {
            name: spec.to_owned(),
            destination: host.to_owned(),
            user: user.map(str::to_owned),
            port,
            key: None,
            become_root: false,
            vars: serde_json::Map::new(),
            groups: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(spec: &str) -> (Option<String>, String, Option<u16>) {
        let t = Target::parse(spec).unwrap();
        (t.user, t.destination, t.port)
    }

    #[test]
    fn user_host_and_port() {
        assert_eq!(parts("web1"), (None, "web1".into(), None));
        assert_eq!(parts("vagrant@10.0.0.5"), (Some("vagrant".into()), "10.0.0.5".into(), None));
        assert_eq!(parts("root@10.0.0.5:2222"), (Some("root".into()), "10.0.0.5".into(), Some(2222)));
        assert_eq!(parts("default"), (None, "default".into(), None));
    }

    #[test]
    fn ipv6_addresses() {
        assert_eq!(parts("fe80::1"), (None, "fe80::1".into(), None));
        assert_eq!(parts("root@[::1]:22"), (Some("root".into()), "::1".into(), Some(22)));
        assert_eq!(parts("[::1]"), (None, "::1".into(), None));
    }

    #[test]
    fn mistakes_are_explained() {
        for spec in ["", "@host", "host:", "host:99999", "host:ssh", "-oProxyCommand=x", "[::1", "[::1]x", "a b"] {
            let e = Target::parse(spec).unwrap_err();
            assert!(e.contains("[USER@]HOST[:PORT]"), "{spec}: {e}");
        }
    }
}
