//! A file's text as lines, each with its own ending, and the edits of `line_in_file` made on it.
//! What no edit touches comes out byte for byte: CRLF and LF endings as they were, and a missing
//! final newline stays missing.

use std::fmt;

use crate::playbook::values::State;

/// A regular expression that finds lines (the `regex` crate's syntax), matched against each
/// line without its ending. It is kept as the playbook wrote it (saved plans keep it as text).
#[derive(Clone)]
pub struct Pattern(regex::bytes::Regex);

impl Pattern {
    /// Compiles `text`; the regex crate's error says what is wrong and where.
    pub fn new(text: &str) -> Result<Pattern, regex::Error> {
        regex::bytes::Regex::new(text).map(Pattern)
    }

    /// As the playbook wrote it.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether it finds something in `line` (no ending).
    pub fn finds(&self, line: &[u8]) -> bool {
        self.0.is_match(line)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.as_str())
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Pattern, D::Error> {
        let text = String::deserialize(deserializer)?;
        Pattern::new(&text).map_err(serde::de::Error::custom)
    }
}

/// Where a line that is not in the file yet goes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// At the end of the file.
    End,
    /// Right after the first line the pattern finds (at the end when it finds none).
    #[serde(rename = "insert_after")]
    After(Pattern),
    /// Right before the first line the pattern finds (at the end when it finds none).
    #[serde(rename = "insert_before")]
    Before(Pattern),
}

/// The lines an edit removes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finder {
    /// Every line equal to this one.
    Line(String),
    /// Every line the pattern finds.
    #[serde(rename = "match")]
    Pattern(Pattern),
}

/// One `line_in_file` entry: what it makes of the file (kept in saved plans with the playbook's
/// words: `match`, `insert_after`, `insert_before`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edit {
    /// `line` is in the file: it replaces the first line `pattern` finds; else, when no line is
    /// equal to it, it is inserted at `anchor`.
    Ensure {
        line: String,
        #[serde(rename = "match")]
        pattern: Option<Pattern>,
        anchor: Anchor,
    },
    /// No line of the file is one the finder finds.
    Remove(Finder),
}

impl Edit {
    /// Whether it is `state: present` or `absent`.
    pub fn state(&self) -> State {
        match self {
            Edit::Ensure { .. } => State::Present,
            Edit::Remove(_) => State::Absent,
        }
    }
}

/// How a line ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Lf,
    CrLf,
    /// The last line of a file without a final newline.
    Missing,
}

impl End {
    fn bytes(self) -> &'static [u8] {
        match self {
            End::Lf => b"\n",
            End::CrLf => b"\r\n",
            End::Missing => b"",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Line {
    body: Vec<u8>,
    end: End,
}

/// A file's lines, and the ending a new line gets: the file's first line's (LF for a file
/// without one).
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    lines: Vec<Line>,
    newline: End,
}

impl Text {
    /// The lines of `bytes`; `\n` ends a line, a `\r` before it is part of the ending.
    pub fn parse(bytes: &[u8]) -> Text {
        let mut lines = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (line, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => {
                    lines.push(Line { body: rest.to_vec(), end: End::Missing });
                    break;
                }
            };
            lines.push(match line.strip_suffix(b"\r") {
                Some(body) => Line { body: body.to_vec(), end: End::CrLf },
                None => Line { body: line.to_vec(), end: End::Lf },
            });
            rest = next;
        }
        let newline = match lines.first().map(|l| l.end) {
            Some(End::CrLf) => End::CrLf,
            _ => End::Lf,
        };
        Text { lines, newline }
    }

    /// The file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.lines.iter().flat_map(|l| l.body.iter().chain(l.end.bytes())).copied().collect()
    }

    /// Makes `edit`.
    pub fn apply(&mut self, edit: &Edit) {
        match edit {
            Edit::Ensure { line, pattern, anchor } => self.ensure(line.as_bytes(), pattern.as_ref(), anchor),
            Edit::Remove(Finder::Line(line)) => self.remove(|body| body == line.as_bytes()),
            Edit::Remove(Finder::Pattern(pattern)) => self.remove(|body| pattern.finds(body)),
        }
    }

    /// The index of the first line `pattern` finds.
    fn position(&self, pattern: &Pattern) -> Option<usize> {
        self.lines.iter().position(|l| pattern.finds(&l.body))
    }

    fn ensure(&mut self, line: &[u8], pattern: Option<&Pattern>, anchor: &Anchor) {
        if let Some(at) = pattern.and_then(|p| self.position(p)) {
            self.lines[at].body = line.to_vec();
            return;
        }
        if self.lines.iter().any(|l| l.body == line) {
            return;
        }
        let end = self.lines.len();
        let at = match anchor {
            Anchor::End => end,
            Anchor::After(pattern) => self.position(pattern).map_or(end, |at| at + 1),
            Anchor::Before(pattern) => self.position(pattern).unwrap_or(end),
        };
        self.insert(at, line);
    }

    /// Inserts `line` before the line at `at`, or at the end; a file without a final newline
    /// stays without one.
    fn insert(&mut self, at: usize, line: &[u8]) {
        let mut end = self.newline;
        if at == self.lines.len()
            && let Some(last) = self.lines.last_mut().filter(|l| l.end == End::Missing)
        {
            last.end = self.newline;
            end = End::Missing;
        }
        self.lines.insert(at, Line { body: line.to_vec(), end });
    }

    /// Removes every line `finds` finds; a file without a final newline stays without one.
    fn remove(&mut self, finds: impl Fn(&[u8]) -> bool) {
        let unterminated = self.lines.last().is_some_and(|l| l.end == End::Missing);
        self.lines.retain(|l| !finds(&l.body));
        if let (true, Some(last)) = (unterminated, self.lines.last_mut()) {
            last.end = End::Missing;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::new(text).unwrap()
    }

    fn ensure(line: &str, pattern: Option<&str>, anchor: Anchor) -> Edit {
        Edit::Ensure { line: line.into(), pattern: pattern.map(self::pattern), anchor }
    }

    fn edited(text: &str, edit: &Edit) -> String {
        let mut parsed = Text::parse(text.as_bytes());
        parsed.apply(edit);
        String::from_utf8(parsed.bytes()).unwrap()
    }

    #[test]
    fn parsing_gives_every_byte_back() {
        for text in ["", "a", "a\n", "a\r\nb\r\n", "a\nb", "\n\n", "a\r\nb\nc", "x\r", "\r\n"] {
            assert_eq!(Text::parse(text.as_bytes()).bytes(), text.as_bytes(), "{text:?}");
        }
    }

    #[test]
    fn the_first_line_found_is_replaced_and_the_rest_kept() {
        let text = "Port 22\n#PasswordAuthentication yes\nUsePAM yes\n#PasswordAuthentication no\n";
        let edit = ensure("PasswordAuthentication no", Some("^#?PasswordAuthentication\\s"), Anchor::End);
        let once = edited(text, &edit);
        assert_eq!(once, "Port 22\nPasswordAuthentication no\nUsePAM yes\n#PasswordAuthentication no\n");
        assert_eq!(edited(&once, &edit), once, "a second run changes nothing");
    }

    #[test]
    fn a_line_that_is_there_is_left_and_a_missing_one_goes_at_its_anchor() {
        let text = "a\nb\nMatch all\nc\n";
        assert_eq!(edited(text, &ensure("b", None, Anchor::End)), text);
        assert_eq!(edited(text, &ensure("x", None, Anchor::End)), "a\nb\nMatch all\nc\nx\n");
        assert_eq!(edited(text, &ensure("x", None, Anchor::Before(pattern("^Match")))), "a\nb\nx\nMatch all\nc\n");
        assert_eq!(edited(text, &ensure("x", None, Anchor::After(pattern("^a$")))), "a\nx\nb\nMatch all\nc\n");
        assert_eq!(edited(text, &ensure("x", None, Anchor::After(pattern("^nothing")))), "a\nb\nMatch all\nc\nx\n");
        assert_eq!(edited("", &ensure("x", None, Anchor::End)), "x\n");
    }

    #[test]
    fn endings_and_a_missing_final_newline_are_kept() {
        assert_eq!(edited("a\r\nb\r\n", &ensure("x", None, Anchor::End)), "a\r\nb\r\nx\r\n");
        assert_eq!(edited("a\r\nb\nc", &ensure("B", Some("^b"), Anchor::End)), "a\r\nB\nc");
        assert_eq!(edited("a\nb", &ensure("x", None, Anchor::End)), "a\nb\nx");
        assert_eq!(edited("a\nb", &ensure("x", None, Anchor::Before(pattern("^b")))), "a\nx\nb");
        assert_eq!(edited("a\nb", &Edit::Remove(Finder::Line("b".into()))), "a");
        assert_eq!(edited("a\r\nb\r\n", &Edit::Remove(Finder::Line("a".into()))), "b\r\n");
    }

    #[test]
    fn removal_takes_every_line_found() {
        let text = "a\n# x\nb\n#   x\n";
        assert_eq!(edited(text, &Edit::Remove(Finder::Pattern(pattern("^#\\s*x$")))), "a\nb\n");
        assert_eq!(edited(text, &Edit::Remove(Finder::Line("# x".into()))), "a\nb\n#   x\n");
        assert_eq!(edited(text, &Edit::Remove(Finder::Line("nothing".into()))), text);
    }

    #[test]
    fn a_pattern_reads_back_from_its_text() {
        let edit = ensure("a", Some("^a\\s"), Anchor::After(pattern("b+")));
        let json = serde_json::to_string(&edit).unwrap();
        assert_eq!(serde_json::from_str::<Edit>(&json).unwrap(), edit, "{json}");
        assert!(serde_json::from_str::<Pattern>("\"(\"").is_err());
    }
}
