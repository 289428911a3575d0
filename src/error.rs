//! Errors. Playbook mistakes carry their source text and span from the moment they are made, so
//! they render through miette with a label on the offending YAML and a help line; everything that
//! goes wrong on the host names the resource and the path.

use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, Severity, SourceSpan};
use thiserror::Error;

use crate::host::systemd::SystemdError;
use crate::playbook::yaml_node::Span;

/// A text that errors can point into: the playbook, a vars file or a template.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: Arc<str>,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Source {
        Source { name: name.into(), text: text.into() }
    }

    /// An error about the text under `span`. Its snippet shows long lines cut around the
    /// error (a 200 KB line is not printed whole); line and column stay those of the file.
    pub fn error(&self, span: Span, message: impl Into<String>, label: impl Into<String>) -> PlaybookError {
        let (src, span) = Snippet::new(&self.name, &self.text, span);
        PlaybookError {
            message: shorten(message.into()),
            src,
            span: span.into(),
            label: shorten(label.into()),
            help: None,
            severity: Severity::Error,
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.text.get(..offset).unwrap_or(&self.text).matches('\n').count() + 1
    }

    /// The byte offset of a 1-based line and column (as parsers report them).
    pub fn offset_of(&self, line: usize, column: usize) -> usize {
        let line_start: usize = self.text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
        let rest = &self.text[line_start.min(self.text.len())..];
        let col: usize = rest.chars().take(column.saturating_sub(1)).map(char::len_utf8).sum();
        (line_start + col).min(self.text.len())
    }
}

/// A message that quotes a value of a 200 KB line quotes its start and end only (a help of a few
/// lines stays whole).
fn shorten(text: String) -> String {
    const KEEP: usize = 400;
    if text.len() <= 3 * KEEP {
        return text;
    }
    let mut head = KEEP;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - KEEP / 2;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}…({} bytes left out)…{}", &text[..head], tail - head, &text[tail..])
}

/// The text an error shows: the source, with each line longer than `LONG` cut to a window
/// (around the error on its own line), and the columns it reports those of the whole line.
#[derive(Debug)]
pub struct Snippet {
    inner: NamedSource<String>,
    /// For each cut line: where its text starts in the cut text, where it ends, and how many
    /// bytes were left out before the window (less the `…` that marks them).
    cuts: Vec<(usize, usize, usize)>,
}

const LONG: usize = 200;
const WINDOW: usize = 80;

impl Snippet {
    fn new(name: &str, text: &str, span: Span) -> (Snippet, Span) {
        if !text.split('\n').any(|l| l.len() > LONG) {
            let inner = NamedSource::new(name, text.to_owned());
            return (Snippet { inner, cuts: Vec::new() }, span);
        }
        let floor = |s: &str, mut i: usize| {
            i = i.min(s.len());
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let mut out = String::with_capacity(text.len().min(64 * 1024));
        let mut cuts = Vec::new();
        let mut new_span = span;
        let mut start = 0;
        for line in text.split_inclusive('\n') {
            let end = start + line.len();
            let body = line.trim_end_matches('\n');
            let here = (start..=start + body.len()).contains(&span.offset);
            if body.len() <= LONG {
                if here {
                    new_span.offset = out.len() + (span.offset - start);
                }
                out.push_str(line);
            } else {
                let (from, to) = if here {
                    let at = span.offset - start;
                    (floor(body, at.saturating_sub(WINDOW)), floor(body, at + span.len.min(WINDOW) + WINDOW))
                } else {
                    (0, floor(body, WINDOW))
                };
                let line_start = out.len();
                if from > 0 {
                    out.push('…');
                }
                if here {
                    new_span.offset = out.len() + (span.offset - start - from);
                    new_span.len = span.len.min(to - (span.offset - start).min(to));
                }
                out.push_str(&body[from..to]);
                if to < body.len() {
                    out.push('…');
                }
                // miette counts columns in bytes.
                let marker = if from > 0 { '…'.len_utf8() } else { 0 };
                cuts.push((line_start, out.len(), from - marker));
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            start = end;
        }
        (Snippet { inner: NamedSource::new(name, out), cuts }, new_span)
    }

    pub fn name(&self) -> &str {
        self.inner.name()
    }
}

impl miette::SourceCode for Snippet {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let contents = self.inner.read_span(span, before, after)?;
        let at = contents.span().offset();
        let Some((_, _, shift)) = self.cuts.iter().find(|(s, e, _)| (*s..=*e).contains(&at)) else {
            return Ok(contents);
        };
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.inner.name().to_owned(),
            contents.data(),
            *contents.span(),
            contents.line(),
            contents.column() + shift,
            contents.line_count(),
        )))
    }
}

/// One mistake in a playbook, pointing at the YAML that causes it; or, with the severity
/// [`Severity::Warning`] ([`PlaybookError::warning`]), something in it that works but is likely
/// to hurt: printed, never fatal. Both render alike through miette, a warning with its own mark.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct PlaybookError {
    pub message: String,
    pub src: Snippet,
    pub span: SourceSpan,
    pub label: String,
    pub help: Option<String>,
    pub severity: Severity,
}

impl PlaybookError {
    pub fn help(mut self, help: impl Into<String>) -> PlaybookError {
        self.help = Some(shorten(help.into()));
        self
    }

    /// The same mistake, saying where it was made (`in for_each item "b"`).
    pub fn within(mut self, place: &str) -> PlaybookError {
        self.message = format!("{} ({place})", self.message);
        self
    }

    /// The same remark, as a warning.
    pub fn warning(self) -> PlaybookError {
        PlaybookError { severity: Severity::Warning, ..self }
    }
}

impl Diagnostic for PlaybookError {
    fn severity(&self) -> Option<Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help.as_ref().map(|help| Box::new(help) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(Some(self.label.clone()), self.span))))
    }
}

/// Every mistake found in a playbook: `validate` reports them all at once.
#[derive(Debug, Error, Diagnostic)]
#[error("{path}: {} error{} in the playbook; nothing was changed", errors.len(), if errors.len() == 1 { "" } else { "s" })]
pub struct PlaybookErrors {
    pub path: String,
    #[related]
    pub errors: Vec<PlaybookError>,
}

/// Everything that can stop a run.
#[derive(Debug, Error, Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Playbook(#[from] PlaybookErrors),

    /// A file converge reads (a playbook, an inventory, a journal) cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file converge writes for itself (not a resource's) cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The run lock cannot be opened or taken (not: another run holds it, which is `Locked`).
    #[error("cannot take the lock {}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{id}: {message}")]
    Resource {
        id: String,
        message: String,
        #[source]
        source: Option<std::io::Error>,
    },

    #[error("{id}: the host changed between plan and apply")]
    #[diagnostic(help("something else is changing this host; run `converge apply` again to see a fresh plan"))]
    Drift { id: String },

    #[error("another converge run holds the lock {}", path.display())]
    #[diagnostic(help(
        "wait for it to finish (or let this run wait: --lock-wait SECONDS), or check that no converge process is left running"
    ))]
    Locked { path: PathBuf },

    /// systemd refused a call or failed a job; a job or start that failed shows the unit's last
    /// journal lines, which usually say why it died.
    #[error("systemd: {error}{}", journal.as_ref().map(ToString::to_string).unwrap_or_default())]
    Systemd { error: SystemdError, journal: Option<JournalTail> },

    /// No system bus, and no offline root: unit state cannot be read, nor units (re)started.
    #[error(
        "systemd: the system bus is not reachable, so unit state cannot be read and units cannot be reloaded or \
         restarted; run converge on a host booted with systemd, or converge an offline image with --root DIR"
    )]
    NoBus,

    #[error("stopped by {signal}: the step in progress was finished, and nothing after it was started")]
    #[diagnostic(help(
        "run `converge apply` again to do the rest; the triggers owed so far are kept in the journal \
         (/var/lib/converge/pending-triggers.json) and fire then"
    ))]
    Stopped { signal: &'static str, number: i32 },

    #[error("{message}")]
    Usage { message: String },

    /// A saved plan that cannot be written, read or applied (saved.rs).
    #[error("{message}")]
    #[diagnostic(help("{help}"))]
    PlanFile { message: String, help: String },
}

impl Error {
    pub fn resource(id: impl ToString, message: impl Into<String>) -> Error {
        Error::Resource { id: id.to_string(), message: message.into(), source: None }
    }

    /// The process exit code: 128 + the signal's number for a run stopped by one, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Stopped { number, .. } => u8::try_from(128 + number).unwrap_or(1),
            _ => 1,
        }
    }

    /// The run was asked to stop by a signal (see `stop.rs`): an error between two steps.
    pub fn check_stop() -> Result<()> {
        match crate::engine::stop::received() {
            Some(signal) => Err(Error::Stopped { signal: signal.as_str(), number: signal as i32 }),
            None => Ok(()),
        }
    }

    pub fn resource_io(id: impl ToString, message: impl Into<String>, source: std::io::Error) -> Error {
        Error::Resource { id: id.to_string(), message: message.into(), source: Some(source) }
    }
}

impl From<SystemdError> for Error {
    fn from(error: SystemdError) -> Error {
        Error::Systemd { error, journal: None }
    }
}

/// The last lines a unit logged (`journalctl --unit UNIT -n ASKED`), shown under its failure.
#[derive(Debug)]
pub struct JournalTail {
    pub unit: String,
    /// How many lines were asked for (`-n`).
    pub asked: usize,
    pub lines: Vec<String>,
}

impl std::fmt::Display for JournalTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\nits last journal lines (journalctl --unit {} -n {}):", self.unit, self.asked)?;
        self.lines.iter().try_for_each(|line| write!(f, "\n  {line}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Text from the playbook or the host made safe for a terminal: control characters other than
/// newline and tab are shown escaped (`\x1b`), so that no byte of a file or a name can move the
/// cursor, retitle the window or clear the screen.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| (c.is_control() && c != '\n' && c != '\t') || c == '\u{2028}' || c == '\u{2029}';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !unsafe_char(c) => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The help of every "unknown name" error: "did you mean `NAME`?", naming the candidate nearest to
/// `word` (see [`nearest`]); None when none is close.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    nearest(word, candidates).map(|close| format!("did you mean `{close}`?"))
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment):
/// `debgu` is one edit from `debug`, as a typo is.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let keys = ["owner", "group", "mode", "content"];
        assert_eq!(nearest("ownr", keys), Some("owner"));
        assert_eq!(nearest("contnet", keys), Some("content"));
        assert_eq!(nearest("colour", keys), None);
        assert_eq!(nearest("debgu", ["debug", "dbg"]), Some("debug"));
        assert_eq!(nearest("wrokers", ["workers"]), Some("workers"));
        assert_eq!(did_you_mean("ownr", keys).as_deref(), Some("did you mean `owner`?"));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(escape("\x1b]0;title\x07\x1b[2J"), "\\x1b]0;title\\x07\\x1b[2J");
        assert_eq!(escape("cr\rdel\x7f\u{9b}"), "cr\\x0ddel\\x7f\\x9b");
    }

    #[test]
    fn long_lines_are_cut_around_the_error() {
        let long = format!("key: {}BAD{}\n", "a".repeat(100_000), "b".repeat(100_000));
        let text = format!("first: 1\n{long}{}\nlast: 2\n", "c".repeat(5000));
        let src = Source::new("p.yml", text.as_str());
        let offset = text.find("BAD").unwrap();
        let e = src.error(Span { offset, len: 3 }, "bad value", "here");
        let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
        let mut out = String::new();
        handler.render_report(&mut out, &e).unwrap();
        assert!(out.len() < 2000, "{} bytes", out.len());
        assert!(out.contains("[p.yml:2:100006]"), "{out}");
        assert!(out.contains("2 │ …aaaa") && out.contains("aaaaBADbbbb"), "{out}");
        use miette::SourceCode;
        let at = e.src.read_span(&e.span, 0, 0).unwrap();
        assert_eq!((at.line(), at.column()), (1, 100_005));
    }

    #[test]
    fn offsets_from_line_and_column() {
        let src = Source::new("p.yml", "ab\ncdé\nf");
        assert_eq!(src.offset_of(1, 1), 0);
        assert_eq!(src.offset_of(2, 3), 5);
        assert_eq!(src.offset_of(3, 1), 8);
    }
}
