//! The deb822 stanza of an `apt_repository` (sources.list(5), "DEB822-STYLE FORMAT"), and the
//! checks its values pass first: each is one word of printable characters, so that none can end
//! its field, add a field or a stanza, or be read as an option.

use std::path::PathBuf;

/// What a source offers: binary packages or their sources (`Types:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceType {
    Deb,
    DebSrc,
}

impl SourceType {
    /// Every type, by its name in `types:`.
    pub const ALL: [SourceType; 2] = [SourceType::Deb, SourceType::DebSrc];

    /// The type `name` names in `types:`.
    pub fn named(name: &str) -> Option<SourceType> {
        SourceType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Its name in the stanza and in `types:`.
    pub fn name(self) -> &'static str {
        match self {
            SourceType::Deb => "deb",
            SourceType::DebSrc => "deb-src",
        }
    }
}

/// One source, as `/etc/apt/sources.list.d/NAME.sources` holds it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stanza {
    pub types: Vec<SourceType>,
    pub uris: Vec<String>,
    /// Distributions (`bookworm`), or one exact path ending in `/` for a flat repository.
    pub suites: Vec<String>,
    /// Empty for a flat repository.
    pub components: Vec<String>,
    /// Empty: apt's own (the host's architectures).
    pub architectures: Vec<String>,
    pub enabled: bool,
    /// The keyring that must have signed the repository's Release file.
    pub signed_by: Option<PathBuf>,
}

impl Stanza {
    /// The file's text: the fields in sources.list(5)'s order, the optional ones only when given.
    pub fn render(&self) -> String {
        let mut text = String::from("# Managed by converge.\n");
        let types: Vec<&str> = self.types.iter().map(|t| t.name()).collect();
        field(&mut text, "Types", &types);
        field(&mut text, "URIs", &self.uris);
        field(&mut text, "Suites", &self.suites);
        field(&mut text, "Components", &self.components);
        field(&mut text, "Architectures", &self.architectures);
        if !self.enabled {
            field(&mut text, "Enabled", &["no"]);
        }
        if let Some(keyring) = &self.signed_by {
            field(&mut text, "Signed-By", &[keyring.to_string_lossy()]);
        }
        text
    }
}

/// Adds the field `name` with its words to `text`; nothing when it has none.
fn field(text: &mut String, name: &str, words: &[impl AsRef<str>]) {
    if !words.is_empty() {
        let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
        *text += &format!("{name}: {}\n", words.join(" "));
    }
}

/// Why `name` cannot name a source file: apt reads only `NAME.sources` files whose names hold
/// letters, digits, `_`, `-` and `.` (sources.list(5)); it ignores the others without a word.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        Some("apt reads only source files named with letters, digits, `_`, `-` and `.`")
    } else if name.starts_with(['.', '-']) {
        Some("it starts with `.` or `-`")
    } else if name.len() > 200 {
        Some("it is longer than 200 characters")
    } else {
        None
    }
}

/// Why `value` cannot be one word of a field: it would split into several, end the field, or
/// read as an option.
pub fn value_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        Some("it is empty")
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it holds a space, a line break or a control character")
    } else if value.starts_with('-') {
        Some("it starts with `-`")
    } else if !value.is_ascii() {
        Some("it holds a character that is not ASCII")
    } else {
        None
    }
}

/// The URI schemes apt has methods for (/usr/lib/apt/methods).
const SCHEMES: &[&str] = &[
    "http",
    "https",
    "file",
    "copy",
    "cdrom",
    "ftp",
    "mirror",
    "mirror+http",
    "mirror+https",
    "mirror+file",
    "tor+http",
    "tor+https",
];

/// Why `uri` cannot be a repository's URI: one word, parsed by the `url` crate, with a scheme apt
/// knows, a host where the scheme needs one, and no password (the file is world-readable).
pub fn uri_problem(uri: &str) -> Option<String> {
    if let Some(problem) = value_problem(uri) {
        return Some(problem.to_owned());
    }
    let parsed = match url::Url::parse(uri) {
        Ok(parsed) => parsed,
        Err(e) => return Some(format!("it is not a URI ({e})")),
    };
    if !SCHEMES.contains(&parsed.scheme()) {
        return Some(format!("apt has no method for `{}:` URIs", parsed.scheme()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some("it holds a user name or password, which a world-readable file must not".into());
    }
    let needs_host = !matches!(parsed.scheme(), "file" | "copy" | "cdrom" | "mirror+file");
    // As written: the parser makes `https:///debian` a URI of the host `debian`.
    let authority = uri.split_once("://").map(|(_, rest)| rest).filter(|rest| !rest.starts_with('/'));
    if needs_host && (authority.is_none() || parsed.host_str().is_none_or(str::is_empty)) {
        return Some(format!("a `{}:` URI names a host", parsed.scheme()));
    }
    None
}

/// Why `suites` and `components` do not make a repository as apt reads them: a suite that is an
/// exact path ends in `/` and takes no components; any other needs at least one.
pub fn layout_problem(suites: &[String], components: &[String]) -> Option<&'static str> {
    let exact = suites.iter().filter(|s| s.ends_with('/')).count();
    if exact > 0 && exact < suites.len() {
        Some("a suite that ends in `/` (a flat repository) cannot be listed with suites that do not")
    } else if exact > 0 && !components.is_empty() {
        Some("a suite that ends in `/` is a flat repository, which has no components")
    } else if exact == 0 && components.is_empty() {
        Some("a suite that does not end in `/` needs `components:`")
    } else {
        None
    }
}

/// Why `arch` is not an architecture as dpkg names them (`amd64`, `arm64`, `i386`).
pub fn architecture_problem(arch: &str) -> Option<&'static str> {
    let valid = !arch.is_empty()
        && arch.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && arch.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!valid).then_some("dpkg names architectures with lowercase letters, digits and `-`, such as amd64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nginx() -> Stanza {
        Stanza {
            types: vec![SourceType::Deb],
            uris: vec!["https://nginx.org/packages/debian".into()],
            suites: vec!["bookworm".into()],
            components: vec!["nginx".into()],
            architectures: vec![],
            enabled: true,
            signed_by: Some("/etc/apt/keyrings/nginx.asc".into()),
        }
    }

    #[test]
    fn renders_the_fields_given() {
        assert_eq!(
            nginx().render(),
            "# Managed by converge.\nTypes: deb\nURIs: https://nginx.org/packages/debian\nSuites: bookworm\n\
             Components: nginx\nSigned-By: /etc/apt/keyrings/nginx.asc\n"
        );
        let flat = Stanza {
            types: vec![SourceType::Deb, SourceType::DebSrc],
            uris: vec!["file:/srv/repo".into(), "http://10.0.0.1/repo".into()],
            suites: vec!["./".into()],
            components: vec![],
            architectures: vec!["amd64".into(), "arm64".into()],
            enabled: false,
            signed_by: None,
        };
        assert_eq!(
            flat.render(),
            "# Managed by converge.\nTypes: deb deb-src\nURIs: file:/srv/repo http://10.0.0.1/repo\nSuites: ./\n\
             Architectures: amd64 arm64\nEnabled: no\n"
        );
    }

    #[test]
    fn names_follow_apts_file_name_rules() {
        for good in ["nginx", "docker-ce", "pgdg_16", "vendor.list", "a"] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        for bad in ["", "a b", "a/b", "../etc", ".hidden", "-o", "ngin×", "a\nb", "a:b", &"x".repeat(201)] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn no_value_adds_a_field_or_an_option() {
        for good in ["bookworm", "stable/updates", "./", "main", "non-free-firmware"] {
            assert_eq!(value_problem(good), None, "{good}");
        }
        for bad in ["", "main\nTrusted: yes", "main contrib", "a\tb", "-oAPT::x", "a\u{7f}", "é"] {
            assert!(value_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn uris_are_parsed() {
        for good in
            ["https://nginx.org/packages/debian", "http://127.0.0.1:8080/repo", "file:/srv/repo", "file:///srv/repo"]
        {
            assert_eq!(uri_problem(good), None, "{good}");
        }
        for bad in [
            "nginx.org/packages",
            "gopher://example.org/debian",
            "https://user:secret@example.org/debian",
            "https:///debian",
            "https://example.org/a b",
            "https://example.org/\nTrusted: yes",
            "-https://example.org",
        ] {
            assert!(uri_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn a_flat_repository_has_no_components() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(layout_problem(&words(&["bookworm"]), &words(&["main"])), None);
        assert_eq!(layout_problem(&words(&["./"]), &[]), None);
        assert_eq!(layout_problem(&words(&["stable/"]), &[]), None);
        assert!(layout_problem(&words(&["./"]), &words(&["main"])).is_some());
        assert!(layout_problem(&words(&["bookworm"]), &[]).is_some());
        assert!(layout_problem(&words(&["bookworm", "./"]), &[]).is_some());
    }

    #[test]
    fn architectures_are_dpkgs_names() {
        assert_eq!(architecture_problem("amd64"), None);
        assert_eq!(architecture_problem("kfreebsd-amd64"), None);
        assert!(architecture_problem("AMD64").is_some());
        assert!(architecture_problem("-amd64").is_some());
    }
}
