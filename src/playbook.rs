//! `load`: a playbook file read into a YAML tree whose nodes keep their spans.

use std::path::{Path, PathBuf};

use crate::error::{Error, PlaybookErrors, Result, Source};
use crate::yaml_node::{Node, Span};

/// A playbook as read from disk, not yet resolved.
pub struct Playbook {
    pub path: PathBuf,
    /// Relative `template:` and `source:` paths start here.
    pub dir: PathBuf,
    pub source: Source,
    pub root: Node,
}

impl Playbook {
    pub fn load(path: &Path) -> Result<Playbook> {
        let text =
            crate::host::read_input_text(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let source = Source::new(path.display().to_string(), text);
        let root = parse_yaml(&source).map_err(|e| PlaybookErrors { path: source.name.clone(), errors: vec![e] })?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        Ok(Playbook { path: path.to_owned(), dir, source, root })
    }
}

/// Parses YAML text, turning a syntax error into a labelled playbook error.
pub fn parse_yaml(source: &Source) -> Result<Node, crate::error::PlaybookError> {
    Node::parse(&source.text).map_err(|e| {
        let offset = e.location().map(|l| source.offset_of(l.line() as usize, l.column() as usize)).unwrap_or(0);
        // The first line; the rest is the crate's own snippet, which miette draws better.
        let message = e.to_string().lines().next().unwrap_or_default().to_owned();
        // serde-saphyr prefixes "error: line L column C: "; miette shows the place itself.
        let message = message.split_once(": ").map(|(_, m)| m).unwrap_or(&message);
        let message = match message.split_once("column ") {
            Some((head, rest)) if head.starts_with("line ") => rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest),
            _ => message,
        };
        source
            .error(Span { offset, len: 1 }, format!("invalid YAML: {message}"), "here")
            .help("check the indentation and quoting around this place")
    })
}
