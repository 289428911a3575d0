//! The playbook layer: a playbook file read into a YAML tree whose nodes keep their spans
//! (`load`, here), the attribute readers the kinds use (`attrs`), templates, modules and secret
//! values (`redact`). It imports only the host (and `error.rs`): never the kinds, the engine,
//! the output, remote/ or the command line.

pub mod attrs;
pub mod for_each;
pub mod module;
pub mod redact;
pub mod table;
pub mod template;
pub mod values;
pub mod yaml_node;

use std::path::{Path, PathBuf};

use crate::error::{Error, PlaybookErrors, Result, Source};
use crate::playbook::yaml_node::{Node, Span};

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
        let source = read_source(path)?;
        let root = parse_yaml(&source).map_err(|e| PlaybookErrors { path: source.name.clone(), errors: vec![e] })?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        Ok(Playbook { path: path.to_owned(), dir, source, root })
    }
}

/// Reads a YAML file as text; a file that is not UTF-8 is an error at its first bad byte.
pub fn read_source(path: &Path) -> Result<Source> {
    let bytes = crate::host::read_input(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
    let name = path.display().to_string();
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::new(name, text)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let byte = e.as_bytes()[at];
            // What is before the bad byte is shown as it is; the rest as lossy text.
            let source = Source::new(name.clone(), String::from_utf8_lossy(e.as_bytes()).into_owned());
            let error = source
                .error(
                    Span { offset: at, len: 1 },
                    format!("the file is not UTF-8: byte 0x{byte:02x} here"),
                    "not UTF-8",
                )
                .help("save the file as UTF-8 (iconv -f latin1 -t utf-8, or your editor's encoding setting)");
            Err(PlaybookErrors { path: name, errors: vec![error] }.into())
        }
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
