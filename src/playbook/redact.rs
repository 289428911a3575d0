//! Secrets that no output may show: the values of secret variables (`secrets:`, `--secret-var`,
//! `--secrets-file`) and what `sensitive: true` resources were given. The printer passes every
//! line, JSON record and error through [`apply`] before it is written; the journal too. This is
//! the net under the structural hiding (a sensitive resource's changes are never printed): a
//! value that still slips into a message (a tool's stderr echoing an argument, an error snippet
//! of the playbook) is replaced there.

use std::borrow::Cow;
use std::sync::RwLock;

/// Shorter values are hidden structurally but not searched for in text: replacing every "yes"
/// of the output would make it unreadable and tell an onlooker the value anyway.
pub const MIN_LEN: usize = 4;

pub const MASK: &str = "(sensitive)";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds a secret value (and its JSON-escaped spelling, as JSON records show it). Each line of a
/// value of several lines (a key, a certificate) is a secret too: output shows it line by line.
pub fn add(value: &str) {
    if value.contains('\n') {
        value.lines().for_each(add_one);
    }
    add_one(value);
}

fn add_one(value: &str) {
    let value = value.trim();
    if value.len() < MIN_LEN {
        return;
    }
    let json = serde_json::to_string(value).expect("a string serializes");
    let json = json[1..json.len() - 1].to_owned();
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for v in [value.to_owned(), json] {
        if !secrets.contains(&v) {
            secrets.push(v);
        }
    }
    // Longest first, so that a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Whether there is any secret to search for.
pub fn any() -> bool {
    !SECRETS.read().unwrap_or_else(|e| e.into_inner()).is_empty()
}

/// `text` with every secret value replaced by `(sensitive)`.
pub fn apply(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    Cow::Owned(out)
}

/// `text` with each of `values` (an entry's own, not all of them global) replaced too.
pub fn apply_with(text: &str, values: &[String]) -> String {
    let mut out = apply(text).into_owned();
    let mut values: Vec<&String> = values.iter().filter(|v| v.trim().len() >= MIN_LEN).collect();
    values.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for v in values {
        out = out.replace(v.trim(), MASK);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_everywhere() {
        add("hunter2-secret");
        add("abc");
        add("tok\"en\\x");
        assert_eq!(apply("pw=hunter2-secret; again hunter2-secret"), "pw=(sensitive); again (sensitive)");
        assert_eq!(apply("abc stays: too short"), "abc stays: too short");
        assert_eq!(apply(r#"{"v":"tok\"en\\x"}"#), r#"{"v":"(sensitive)"}"#);
        add("-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----\n");
        assert_eq!(apply("  │ MIIEvQIBADANBg"), "  │ (sensitive)");
        assert_eq!(apply_with("echo line-of-content", &["line-of-content".into()]), "echo (sensitive)");
    }
}
