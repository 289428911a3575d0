//! What a venv is asked to hold: the `packages` attribute and requirements files, read into
//! PEP 508 requirements (`pep508_rs`), and how an installed version meets one (PEP 440
//! specifiers by `pep440_rs`, markers evaluated for the venv's interpreter).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder, Requirement, VersionOrUrl};

use super::metadata::Installed;
use super::observe::Observed;
use crate::error::Source;
use crate::playbook::attrs::Attrs;
use crate::playbook::yaml_node::{Node, Span};

/// One requirement: the string pip is given, exactly as written, and what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub text: String,
    pub requirement: Requirement,
}

impl Wanted {
    /// Parses a requirement as written (surrounding whitespace dropped).
    pub fn parse(text: &str) -> Result<Wanted, pep508_rs::Pep508Error> {
        let text = text.trim();
        Ok(Wanted { text: text.to_owned(), requirement: text.parse()? })
    }

    pub(super) fn name(&self) -> &str {
        self.requirement.name.as_ref()
    }
}

const REQUIREMENT_HELP: &str =
    "write a PEP 508 requirement, such as `requests>=2.31`, `Django~=5.0` or `name @ https://host/name.whl`";

/// `packages`, then the lines of the `requirements` file (and the files it includes), in order;
/// each mistake is reported where it is written.
pub(super) fn from_attrs(attrs: &mut Attrs) -> Vec<Wanted> {
    let mut requirements = Vec::new();
    for (text, span) in attrs.strings("packages") {
        match Wanted::parse(&text) {
            Ok(wanted) => requirements.push(wanted),
            Err(e) => {
                let at = narrow(attrs.templates().source(), span, &text, &e);
                attrs.error(
                    at,
                    format!("`{}` is not a valid requirement: {}", text.trim(), e.message),
                    "here",
                    REQUIREMENT_HELP,
                );
            }
        }
    }
    if let Some(node) = attrs.node("requirements")
        && let Some(relative) = attrs.render_string("requirements", node)
    {
        let file = attrs.templates().dir().join(&relative);
        let mut seen = Vec::new();
        requirements_file(&file, node, attrs, &mut seen, &mut requirements);
    }
    requirements
}

/// The part of a YAML string that a requirement error points at, when the string is written as
/// it is parsed (no template); else the whole value.
fn narrow(source: &Source, span: Span, text: &str, error: &pep508_rs::Pep508Error) -> Span {
    let written = source.text.get(span.offset..span.offset + span.len).unwrap_or("");
    let (inner, skip) = match written.chars().next() {
        Some(q @ ('"' | '\'')) if written.len() >= 2 && written.ends_with(q) => (&written[1..written.len() - 1], 1),
        _ => (written, 0),
    };
    let lead = text.len() - text.trim_start().len();
    if inner != text || error.start > error.input.len() {
        return span;
    }
    within(Span { offset: span.offset + skip + lead, len: 0 }, error)
}

/// Where in a requirement written at `at` its parse error is: one character at least, and never
/// past its end.
fn within(at: Span, error: &pep508_rs::Pep508Error) -> Span {
    let len = error.len.max(1).min(error.input.len().saturating_sub(error.start).max(1));
    Span { offset: at.offset + error.start.min(error.input.len()), len }
}

/// Reads a requirements file (and the files its `-r` lines include) into `out`; mistakes point
/// into the file, at their line.
fn requirements_file(file: &Path, node: &Node, attrs: &mut Attrs, seen: &mut Vec<PathBuf>, out: &mut Vec<Wanted>) {
    if seen.contains(&file.to_path_buf()) {
        return;
    }
    seen.push(file.to_path_buf());
    let Some(text) = read(file, node, attrs) else { return };
    let source = Source::new(file.display().to_string(), text.as_str());
    for (start, line) in logical_lines(&text) {
        let content = without_comment(&line);
        let trimmed = content.trim();
        if trimmed.is_empty() {
            continue;
        }
        let lead = content.len() - content.trim_start().len();
        let at = Span { offset: start + lead, len: trimmed.len() };
        match trimmed.strip_prefix('-') {
            Some(option) => match included(option) {
                Some(path) => {
                    let path = file.parent().unwrap_or(Path::new(".")).join(path.trim());
                    requirements_file(&path, node, attrs, seen, out);
                }
                None => attrs.errors.push(
                    source
                        .error(at, format!("converge does not read `{trimmed}` in a requirements file"), "an option")
                        .help("requirements files may hold requirements and `-r FILE`; give index options as attributes: `index_url`, `extra_index_urls`, `find_links`, `no_index`, `pip_args`"),
                ),
            },
            None => match Wanted::parse(trimmed) {
                Ok(wanted) => out.push(wanted),
                Err(e) => {
                    let message = format!("`{trimmed}` is not a valid requirement: {}", e.message);
                    attrs.errors.push(source.error(within(at, &e), message, "here").help(REQUIREMENT_HELP));
                }
            },
        }
    }
}

/// The text of a requirements file; None, and an error at the `requirements` attribute, when
/// it cannot be read.
fn read(file: &Path, node: &Node, attrs: &mut Attrs) -> Option<String> {
    match crate::host::read_input_text(file) {
        Ok(text) => Some(text),
        Err(e) => {
            let reason =
                if e.kind() == std::io::ErrorKind::NotFound { "no such file".to_owned() } else { e.to_string() };
            let help = format!("paths are relative to the playbook's directory, {}", attrs.templates().dir().display());
            attrs.error(node.span, format!("cannot read `{}`: {reason}", file.display()), "this file", help);
            None
        }
    }
}

/// The logical lines of a requirements file, each with the offset where it starts: a trailing
/// backslash continues a line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\n', '\r']);
        let (start, mut joined) = pending.take().unwrap_or((offset, String::new()));
        offset += raw.len();
        match line.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(line);
                logical.push((start, joined));
            }
        }
    }
    logical.extend(pending);
    logical
}

/// A line without its comment, which starts at `#` at the start of the line or after whitespace.
fn without_comment(line: &str) -> &str {
    match line.char_indices().find(|&(i, c)| c == '#' && (i == 0 || line[..i].ends_with(char::is_whitespace))) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// The file an option line (after its first `-`) includes: `-r FILE`, `--requirement FILE`,
/// `--requirement=FILE`; None for any other option.
fn included(option: &str) -> Option<&str> {
    option
        .strip_prefix("r ")
        .or_else(|| option.strip_prefix("-requirement "))
        .or_else(|| option.strip_prefix("-requirement="))
}

/// `name[extras]specifiers`: a dependency as pip is given it, its marker already evaluated.
pub(super) fn plain(requirement: &Requirement) -> String {
    let mut text = requirement.name.to_string();
    if !requirement.extras.is_empty() {
        let extras: Vec<String> = requirement.extras.iter().map(ToString::to_string).collect();
        text += &format!("[{}]", extras.join(","));
    }
    match &requirement.version_or_url {
        Some(VersionOrUrl::VersionSpecifier(specifiers)) => text += &specifiers.to_string(),
        Some(VersionOrUrl::Url(url)) => text += &format!(" @ {url}"),
        None => {}
    }
    text
}

/// Whether `installed` fails `requirement`, and which way it must move: None when it satisfies it.
/// A URL requirement is satisfied by any installed version of its name.
pub(super) fn unsatisfied(requirement: &Requirement, installed: &Installed) -> Option<&'static str> {
    let Some(VersionOrUrl::VersionSpecifier(specifiers)) = &requirement.version_or_url else {
        return None;
    };
    let Ok(version) = Version::from_str(&installed.version) else {
        return Some("replace");
    };
    direction(specifiers, &version)
}

/// None when `version` satisfies every specifier; else "upgrade" when it is below all that it
/// fails, "downgrade" when above, "replace" otherwise (`!=1.0` with 1.0 installed).
fn direction(specifiers: &VersionSpecifiers, version: &Version) -> Option<&'static str> {
    let failing: Vec<_> = specifiers.iter().filter(|s| !s.contains(version)).collect();
    if failing.is_empty() {
        None
    } else if failing.iter().all(|s| version < s.version()) {
        Some("upgrade")
    } else if failing.iter().all(|s| version > s.version()) {
        Some("downgrade")
    } else {
        Some("replace")
    }
}

/// The marker environment of the venv's interpreter, from pyvenv.cfg and the kernel: None when
/// the version is unknown, and then markers about the environment count as true.
pub(super) fn marker_environment(venv: &Observed) -> Option<MarkerEnvironment> {
    let full = venv.python_version.as_deref()?;
    let short: Vec<&str> = full.split('.').take(2).collect();
    let short = short.join(".");
    let implementation = venv.implementation.as_deref().unwrap_or("CPython");
    let name = implementation.to_ascii_lowercase();
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: &name,
        implementation_version: full,
        os_name: "posix",
        platform_machine: &venv.platform.machine,
        platform_python_implementation: implementation,
        platform_release: &venv.platform.release,
        platform_system: "Linux",
        platform_version: &venv.platform.version,
        python_full_version: full,
        python_version: &short,
        sys_platform: "linux",
    })
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backslashes_continue_lines_and_comments_are_cut() {
        let lines = logical_lines("demo==1.0 \\\n  --hash=x\n# a comment\nidna # why\\\n");
        assert_eq!(
            lines,
            [(0, "demo==1.0   --hash=x".to_owned()), (23, "# a comment".into()), (35, "idna # why".into())]
        );
        assert_eq!(without_comment(&lines[1].1), "");
        assert_eq!(without_comment(&lines[2].1), "idna ");
        assert_eq!(without_comment("pkg @ https://host/p.whl#sha256=x"), "pkg @ https://host/p.whl#sha256=x");
        assert_eq!(included("r base.txt"), Some("base.txt"));
        assert_eq!(included("-requirement=base.txt"), Some("base.txt"));
        assert_eq!(included("-index-url x"), None);
    }
}
