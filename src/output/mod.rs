//! The printer: the only code that writes to the terminal. It is the engine's sink: each record
//! (engine/record.rs) is printed as one JSON line with `--output json` (after a first `stream`
//! record; docs/output.md), or rendered for people by `human.rs`, in Terraform's vocabulary
//! (`+ create`, `~ update`, `- remove`, a unified diff under each content change, a closing
//! "Plan: ..." line). Remote hosts' records pass the same renderer (`remote.rs`). Output is
//! deterministic: no timestamps, no PIDs, in playbook order.
//!
//! It reads the engine's records and remote/'s reports; nothing below it imports it (the
//! engine and remote/ report through `record::Sink` and `remote::session::Event`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use crate::engine::apply::Applied;
use crate::engine::plan::{Counts, Plan};
use crate::engine::record::{
    ApplySummary, Diagnostic, DiagnosticKind, LeftOut, Located, ModuleParam, ModuleRecord, ModuleResource,
    ModuleResourcesRecord, ParamValue, Record, SavedPlanRecord, Sink, SkippedTrigger, Stream, Timing, Valid,
};
use crate::engine::trigger::Trigger;
use crate::playbook::yaml_node::{Node, Value};
use textwrap::core::Word;

mod human;
pub mod progress;
// Remote runs: records that other hosts' engines sent back, prefixed by host.
mod remote;

use human::Human;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

pub struct Printer {
    format: Format,
    color: bool,
    /// -1 quiet, 0 normal, 1+ verbose.
    verbosity: i8,
    out: RefCell<Box<dyn Write>>,
    /// The stream record went out (JSON): it comes first, before any other.
    started: Cell<bool>,
    /// This run's records, rendered for people.
    human: Human,
    /// Remote hosts' records, rendered for people, by host.
    hosts: BTreeMap<String, Human>,
}

const RESET: &str = "\x1b[0m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";

/// `text` in `color` when `colors`.
fn paint(colors: bool, color: &str, text: &str) -> String {
    if colors { format!("{color}{text}{RESET}") } else { text.to_owned() }
}

impl Printer {
    pub fn new(format: Format, no_color: bool, verbosity: i8) -> Printer {
        let color =
            !no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal();
        Printer::to(Box::new(std::io::stdout()), format, color, verbosity)
    }

    /// A printer that writes to `out` (tests), with colors or not.
    pub fn to(out: Box<dyn Write>, format: Format, color: bool, verbosity: i8) -> Printer {
        Printer {
            format,
            color,
            verbosity,
            out: RefCell::new(out),
            started: Cell::new(false),
            human: Human::new(color, verbosity),
            hosts: BTreeMap::new(),
        }
    }

    fn paint(&self, color: &str, text: &str) -> String {
        paint(self.color, color, text)
    }

    /// Every human line passes here: secrets are replaced, and control characters from the
    /// host or the playbook are escaped (the printer's own colors aside).
    fn line(&self, text: impl AsRef<str>) {
        let text = crate::playbook::redact::apply(text.as_ref());
        let text = terminal_safe(&text, self.color);
        let mut out = self.out.borrow_mut();
        crate::output::progress::suspend(|| writeln!(out, "{text}")).ok();
    }

    /// Every JSON record passes here, after the stream record; serde_json escapes control
    /// characters itself. Keys are in alphabetical order (serde_json's map).
    fn json(&self, value: serde_json::Value) {
        let mut out = self.out.borrow_mut();
        if !self.started.replace(true) {
            let stream = serde_json::to_value(Record::Stream(Stream::this())).expect("records serialize");
            let _ = writeln!(out, "{stream}");
        }
        let _ = writeln!(out, "{}", crate::playbook::redact::apply(&value.to_string()));
    }

    /// One record: a JSON line, or its human lines (a warning on stderr).
    pub fn record(&mut self, record: Record) {
        if self.format == Format::Json {
            self.json(serde_json::to_value(record).expect("records serialize"));
            return;
        }
        if let Record::Warning(warning) = &record {
            let _ = std::io::stderr().write_all(format!("warning: {}\n", warning.message).as_bytes());
            return;
        }
        for line in self.human.feed(record) {
            self.line(line);
        }
    }

    /// The plan's records: its resources, triggers and closing record.
    pub fn plan(&mut self, plan: &Plan) {
        for record in crate::engine::record::plan_records(plan, self.verbosity >= 1) {
            self.record(record);
        }
    }

    /// Triggers that were not run, and why.
    pub fn triggers_skipped(&mut self, triggers: &[Trigger], why: &str) {
        for t in triggers {
            self.record(Record::TriggerSkipped(SkippedTrigger { trigger: t.clone(), why: why.to_owned() }));
        }
    }

    /// The closing record of an apply.
    pub fn apply_done(&mut self, applied: &Applied, triggers_run: usize, triggers_skipped: usize) {
        let counts = Counts::of(&applied.resources);
        let slowest = applied
            .slowest(3)
            .into_iter()
            .map(|(id, took)| Timing { id, duration_ms: crate::engine::apply::millis(took) })
            .collect();
        self.record(Record::Apply(ApplySummary { counts, triggers: triggers_run, triggers_skipped, slowest }));
    }

    /// After a failure: what had been applied before it.
    pub fn failed_after(&mut self, applied: &Applied, plan: &Plan) {
        if self.format == Format::Human {
            let ids: Vec<String> = applied.resources.iter().map(|r| r.id.to_string()).collect();
            let done = if ids.is_empty() { "nothing".to_owned() } else { ids.join(", ") };
            self.line(format!(
                "Applied {} of {} before the failure: {done}.",
                applied.resources.len(),
                plan.resources.len()
            ));
        }
    }

    pub fn validated(&mut self, name: &str, resources: usize) {
        match self.format {
            Format::Json => self.record(Record::Valid(Valid { name: name.to_owned(), resources })),
            Format::Human => self.line(format!("The playbook is valid: {}.", plural(resources, "resource"))),
        }
    }

    /// The modules a playbook can use, with their parameters.
    pub fn modules(&mut self, modules: &[crate::playbook::module::Module]) {
        if self.format == Format::Json {
            for m in modules {
                let params = m
                    .params
                    .iter()
                    .map(|p| ModuleParam {
                        name: p.name.clone(),
                        kind: p.kind.name().to_owned(),
                        default: p.default.as_ref().map(crate::playbook::yaml_node::Node::to_json),
                        description: p.description.clone(),
                    })
                    .collect();
                let (name, origin, description) = (m.name.clone(), m.origin.clone(), m.description.clone());
                self.record(Record::Module(ModuleRecord { name, origin, description, params }));
            }
            return;
        }
        // Columns: name, type, default, description; the description wraps so that a line stays
        // within MODULES_WIDTH, and a default wider than its column gets a line of its own.
        const DEFAULT_COLUMN: usize = 24;
        for m in modules {
            self.line(format!("{} ({})", self.paint(BOLD, &m.name), m.origin));
            for line in wrap(&m.description, MODULES_WIDTH - 2) {
                self.line(format!("  {line}"));
            }
            let width = m.params.iter().map(|p| p.name.len()).max().unwrap_or(0);
            let type_width = m.params.iter().map(|p| p.kind.name().len()).max().unwrap_or(0).max(6);
            let indent = " ".repeat(2 + width + 2 + type_width + 2 + DEFAULT_COLUMN + 2);
            let description_width = MODULES_WIDTH.saturating_sub(indent.len()).max(30);
            for p in &m.params {
                let default = match &p.default {
                    // A mapping or a list as JSON: its source may span lines.
                    Some(d @ Node { value: Value::Map(_) | Value::Seq(_), .. }) => format!("default {}", d.to_json()),
                    Some(d) => format!("default {}", d.source(&m.source.text).trim()),
                    None => "required".into(),
                };
                let head = format!("  {:width$}  {:type_width$}  ", p.name, p.kind.name());
                let mut lines = wrap(&p.description, description_width).into_iter();
                if default.chars().count() > DEFAULT_COLUMN {
                    self.line(format!("{head}{default}"));
                } else {
                    let first = lines.next().unwrap_or_default();
                    self.line(format!("{head}{default:DEFAULT_COLUMN$}  {first}").trim_end());
                }
                for line in lines {
                    self.line(format!("{indent}{line}"));
                }
            }
            self.line("");
        }
    }

    /// `modules NAME`: the resources a module makes with the parameters given, as YAML that is a
    /// playbook's `resources:` (each id and each parameter in a comment), or one JSON record.
    pub fn module_resources(&mut self, expansion: &crate::playbook::module::Expansion) {
        use crate::playbook::module::Shown;
        let json = crate::playbook::template::to_json;
        if self.format == Format::Json {
            let (mut resources, mut left_out) = (Vec::new(), Vec::new());
            for shown in &expansion.resources {
                match shown {
                    Shown::Resource { id, node } => {
                        resources.push(ModuleResource { id: id.clone(), resource: node.to_json() })
                    }
                    Shown::LeftOut { kind, when } => left_out.push(LeftOut { kind: kind.clone(), when: when.clone() }),
                }
            }
            let params = expansion.params.iter().map(|(name, value, default)| ParamValue {
                name: name.clone(),
                value: json(value),
                default: *default,
            });
            let (name, origin) = (expansion.module.name.clone(), expansion.module.origin.clone());
            self.record(Record::ModuleResources(ModuleResourcesRecord {
                name,
                origin,
                params: params.collect(),
                resources,
                left_out,
            }));
            return;
        }
        let m = &expansion.module;
        self.line(format!("# {} ({}): {}", m.name, m.origin, m.description));
        self.line("# with these parameters (\"# default\": the module's own; give others with --var NAME=VALUE):");
        for (name, value, default) in &expansion.params {
            let value = serde_json::to_string(&json(value)).unwrap_or_default();
            self.line(format!("#   {name}: {value}{}", if *default { "  # default" } else { "" }));
        }
        self.line("resources:");
        let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
        for shown in &expansion.resources {
            match shown {
                Shown::Resource { id, node } => {
                    self.line(format!("  # {id}"));
                    let yaml = serde_saphyr::to_string_with_options(&[node], options.clone()).unwrap_or_default();
                    yaml.lines().for_each(|line| self.line(format!("  {line}").trim_end()));
                }
                Shown::LeftOut { kind, when } => self.line(format!("  # a {kind} left out by `when: {when}`")),
            }
        }
    }

    /// Warnings about the playbook, on stderr.
    /// A warning about the run (not the playbook), on stderr; a record in JSON.
    pub fn warning(&mut self, text: &str) {
        self.record(Record::Warning(Diagnostic::message(text)));
    }

    /// A human line of a command that formats its own output (rollback, history); none with -q.
    pub fn say(&mut self, text: impl AsRef<str>) {
        if self.format == Format::Human && self.verbosity >= 0 {
            self.line(text);
        }
    }

    /// After `plan --out FILE`: where the plan went, and how to apply it.
    pub fn saved_plan(&mut self, file: &std::path::Path) {
        if self.format == Format::Json {
            self.record(Record::SavedPlan(SavedPlanRecord::Written { file: file.to_owned() }));
        } else if self.verbosity >= 0 {
            self.line(format!(
                "Saved the plan to {0}; apply exactly it with: converge apply --plan {0}",
                file.display()
            ));
        }
    }

    /// Before `show FILE` prints a saved plan: what it was made from, when and for what.
    pub fn saved_plan_header(&mut self, saved: &crate::engine::saved::SavedPlan) {
        let root = saved.root.as_ref().map(|r| r.display().to_string());
        if self.format == Format::Json {
            self.record(Record::SavedPlan(SavedPlanRecord::Header {
                playbook: saved.playbook.path.display().to_string(),
                name: saved.playbook.name.clone(),
                created: saved.created,
                converge_version: saved.converge_version.clone(),
                root,
                files: saved.playbook.files.clone(),
            }));
            return;
        }
        if self.verbosity < 0 {
            return;
        }
        let target = root.map(|r| format!("--root {r}")).unwrap_or_else(|| "this host".into());
        self.line(format!(
            "Saved plan of {} for {target}, made by converge {} at {} (seconds since the epoch)",
            saved.playbook.path.display(),
            saved.converge_version,
            saved.created
        ));
        for file in &saved.playbook.files {
            self.line(format!("  {}  sha256 {}", file.path.display(), file.sha256));
        }
        self.line("");
    }

    pub fn warnings(&self, warnings: &[crate::error::PlaybookError]) {
        for warning in warnings {
            self.error(warning);
        }
    }

    /// An error, rendered by miette with its source snippet, on stderr; with `--output json`,
    /// also one record per mistake on stdout, so that a program never has to parse text.
    pub fn error(&self, error: &(dyn miette::Diagnostic + 'static)) {
        if self.format == Format::Json {
            for record in error_records(error) {
                self.json(serde_json::to_value(record).expect("records serialize"));
            }
        }
        let theme =
            if self.color { miette::GraphicalTheme::unicode() } else { miette::GraphicalTheme::unicode_nocolor() };
        let mut text = String::new();
        // Wrapping could cut a secret in two, where the search for it would miss it.
        let width = if crate::playbook::redact::any() { usize::MAX / 4 } else { 100 };
        let handler = miette::GraphicalReportHandler::new_themed(theme)
            .with_width(width)
            .with_break_words(false)
            .with_word_separator(textwrap::WordSeparator::Custom(paths_whole))
            .with_word_splitter(textwrap::WordSplitter::Custom(split_unless_path));
        let _ = handler.render_report(&mut text, error);
        let text = crate::playbook::redact::apply(&text);
        // Not eprint!, which panics when stderr is gone (a remote run whose connection dropped).
        let _ = std::io::Write::write_all(&mut std::io::stderr(), terminal_safe(&text, self.color).as_bytes());
    }
}

impl Sink for Printer {
    fn record(&mut self, record: Record) {
        Printer::record(self, record);
    }

    fn busy(&mut self, what: String) -> Box<dyn std::any::Any> {
        Box::new(progress::spinner(what))
    }
}

/// The words of a line as miette wraps it (Unicode line breaking), except that a path or URL (a
/// token with `/`) stays one word: it overflows the line rather than being cut.
fn paths_whole(line: &str) -> Box<dyn Iterator<Item = Word<'_>> + '_> {
    let mut words = Vec::new();
    let mut token = Vec::new();
    for word in textwrap::WordSeparator::UnicodeBreakProperties.find_words(line) {
        let ends_token = !word.whitespace.is_empty();
        token.push(word);
        if ends_token {
            whole_if_path(line, &mut token, &mut words);
        }
    }
    whole_if_path(line, &mut token, &mut words);
    Box::new(words.into_iter())
}

/// Moves the words of `token` (words of `line` with no space between them) to `words`: as one
/// word when it is a path or URL.
fn whole_if_path<'a>(line: &'a str, token: &mut Vec<Word<'a>>, words: &mut Vec<Word<'a>>) {
    let (Some(first), Some(last)) = (token.first(), token.last()) else { return };
    let offset = |s: &str| s.as_ptr() as usize - line.as_ptr() as usize;
    let whole = &line[offset(first.word)..offset(last.whitespace) + last.whitespace.len()];
    if token.len() > 1 && whole.contains('/') {
        // Unicode keeps a space before `/` inside a word ("dir /run"): split there only.
        let mut rest = whole;
        while !rest.is_empty() {
            let word = rest.find(' ').unwrap_or(rest.len());
            let end = rest.len() - rest[word..].trim_start_matches(' ').len();
            words.push(Word::from(&rest[..end]));
            rest = &rest[end..];
        }
        token.clear();
    } else {
        words.append(token);
    }
}

/// Where a word may be hyphenated: nowhere in a path or URL.
fn split_unless_path(word: &str) -> Vec<usize> {
    if word.contains('/') { Vec::new() } else { textwrap::WordSplitter::HyphenSplitter.split_points(word) }
}

/// What a `finished` record says.
pub fn finished_text(f: &crate::kinds::nginx_site::Finished) -> String {
    let head = format!("{}: a run was stopped before nginx -t answered;", f.id);
    if f.accepted {
        format!("{head} nginx -t accepts it now: kept")
    } else {
        format!("{head} nginx -t rejects it: the previous site was put back\n  {}", f.message.replace('\n', "\n  "))
    }
}

/// The records of an error (one per mistake of a playbook) or a warning: `type` (error or
/// warning), `kind` (playbook, resource, read, write, lock, drift, locked, systemd, usage), `message`, and
/// where it points (`file`, `line`, `column`, 1-based) and `help` when it has them.
pub fn error_records(error: &(dyn miette::Diagnostic + 'static)) -> Vec<Record> {
    records(error, (error as &dyn std::error::Error).downcast_ref::<crate::error::Error>())
}

fn records(error: &dyn miette::Diagnostic, typed: Option<&crate::error::Error>) -> Vec<Record> {
    if let Some(related) = error.related() {
        let records: Vec<Record> = related.flat_map(|e| records(e, None)).collect();
        if !records.is_empty() {
            return records;
        }
    }
    let warning = error.severity() == Some(miette::Severity::Warning);
    let kind = match typed {
        Some(crate::error::Error::Playbook(_)) | None => DiagnosticKind::Playbook,
        Some(crate::error::Error::Read { .. }) => DiagnosticKind::Read,
        Some(crate::error::Error::Write { .. }) => DiagnosticKind::Write,
        Some(crate::error::Error::Lock { .. }) => DiagnosticKind::Lock,
        Some(crate::error::Error::Resource { .. }) => DiagnosticKind::Resource,
        Some(crate::error::Error::Drift { .. }) => DiagnosticKind::Drift,
        Some(crate::error::Error::Locked { .. }) => DiagnosticKind::Locked,
        Some(crate::error::Error::Systemd { .. } | crate::error::Error::NoBus) => DiagnosticKind::Systemd,
        Some(crate::error::Error::Usage { .. }) => DiagnosticKind::Usage,
        Some(crate::error::Error::PlanFile { .. }) => DiagnosticKind::PlanFile,
        Some(crate::error::Error::Stopped { .. }) => DiagnosticKind::Stopped,
    };
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        message = format!("{message}: {c}");
        cause = c.source();
    }
    let mut at = Located { kind, file: None, line: None, column: None, help: error.help().map(|h| h.to_string()) };
    let mut id = None;
    match typed {
        Some(crate::error::Error::Resource { id: of, .. } | crate::error::Error::Drift { id: of }) => {
            id = Some(of.to_string())
        }
        Some(
            crate::error::Error::Read { path, .. }
            | crate::error::Error::Write { path, .. }
            | crate::error::Error::Lock { path, .. }
            | crate::error::Error::Locked { path },
        ) => at.file = Some(path.display().to_string()),
        _ => {}
    }
    let mut label = None;
    if let (Some(first), Some(source)) = (error.labels().and_then(|mut labels| labels.next()), error.source_code()) {
        if let Ok(contents) = source.read_span(first.inner(), 0, 0) {
            at.file = contents.name().map(str::to_owned);
            at.line = Some(contents.line() + 1);
            at.column = Some(contents.column() + 1);
        }
        label = first.label().map(str::to_owned);
    }
    let diagnostic = Diagnostic { message, at: Some(at), id, label };
    vec![if warning { Record::Warning(diagnostic) } else { Record::Error(diagnostic) }]
}

/// `text` with control characters escaped (`\x1b`) except newline and tab; with `colors`, the
/// SGR sequences (`ESC [ ... m`) the printer paints with are kept, which can only color text:
/// never move the cursor, retitle the window or clear the screen.
pub fn terminal_safe(text: &str, colors: bool) -> std::borrow::Cow<'_, str> {
    if !colors {
        return crate::error::escape(text);
    }
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\x1b') {
        out.push_str(&crate::error::escape(&rest[..at]));
        let after = &rest[at + 1..];
        let sgr = after.strip_prefix('[').and_then(|p| {
            let end = p.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
            (p.as_bytes()[end] == b'm').then_some(end + 2)
        });
        match sgr {
            Some(len) => {
                out.push_str(&rest[at..at + 1 + len]);
                rest = &after[len..];
            }
            None => {
                out.push_str("\\x1b");
                rest = after;
            }
        }
    }
    out.push_str(&crate::error::escape(rest));
    std::borrow::Cow::Owned(out)
}

/// The width `converge modules` keeps its lines within.
const MODULES_WIDTH: usize = 100;

/// Splits `text` into lines of at most `width` characters, at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::engine::plan::ResourcePlan;
    use crate::engine::record::{AppliedRecord, ResourceRecord, plan_records};
    use crate::engine::trigger::Step;
    use crate::kinds::resource::{Change, ResourceId};

    /// What a printer wrote.
    #[derive(Clone, Default)]
    struct Captured(Rc<RefCell<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().write(buf)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.borrow().clone()).unwrap()
        }
    }

    /// Records of every type a run's engine sends, with every kind of change.
    fn records() -> Vec<Record> {
        let id = |kind: &str, name: &str| ResourceId::new(kind.parse().expect("a kind"), name);
        let set = |attr: crate::kinds::resource::Attr, from: Option<&str>, to: &str| Change::set(attr, from, to);
        let resources = vec![
            ResourcePlan {
                index: 0,
                id: id("file", "/etc/app.conf"),
                changes: vec![
                    Change::Content { file: None, from: Some("port = 80\n".into()), to: "port = 81\n".into() },
                    set(crate::kinds::resource::Attr::Owner, Some("root"), "app"),
                    set(crate::kinds::resource::Attr::Mode, Some("0644"), "0640"),
                ],
                sensitive: false,
                created_above: vec![id("user", "app")],
            },
            ResourcePlan {
                index: 1,
                id: id("file", "/etc/blob"),
                changes: vec![
                    Change::Create,
                    Change::Content { file: None, from: None, to: b"\0binary".to_vec().into() },
                ],
                sensitive: false,
                created_above: Vec::new(),
            },
            ResourcePlan {
                index: 2,
                id: id("unit", "app.service"),
                changes: vec![Change::Content {
                    file: Some("/etc/systemd/system/app.service.d/override.conf".into()),
                    from: Some(b"\0old".to_vec().into()),
                    to: b"\0new".to_vec().into(),
                }],
                sensitive: false,
                created_above: Vec::new(),
            },
            ResourcePlan {
                index: 3,
                id: id("user", "app"),
                changes: vec![set(crate::kinds::resource::Attr::Groups, Some("adm,www-data"), "www-data,docker")],
                sensitive: false,
                created_above: Vec::new(),
            },
            ResourcePlan {
                index: 4,
                id: id("file", "/etc/secret"),
                changes: vec![
                    Change::Content { file: None, from: Some("a\n".into()), to: "b\n".into() },
                    set(crate::kinds::resource::Attr::Mode, Some("0644"), "0600"),
                ],
                sensitive: true,
                created_above: Vec::new(),
            },
            ResourcePlan {
                index: 5,
                id: id("command", "migrate"),
                changes: vec![Change::Run { reason: "/srv/done does not exist".into() }],
                sensitive: false,
                created_above: Vec::new(),
            },
            ResourcePlan {
                index: 6,
                id: id("file", "/etc/old"),
                changes: vec![Change::Remove],
                sensitive: false,
                created_above: Vec::new(),
            },
        ];
        let reload = Trigger { step: Step::DaemonReload, unit: None, reason: "app.service changed".into() };
        let restart = Trigger { step: Step::Restart, unit: Some("app.service".into()), reason: "its file".into() };
        let plan = Plan {
            resources: resources.clone(),
            triggers: vec![reload.clone(), restart.clone()],
            unchanged: vec![id("directory", "/srv")],
            skipped: vec![("file:/etc/when".into(), "false".into())],
            ..Plan::default()
        };
        let mut records = plan_records(&plan, true);
        let finished = crate::kinds::nginx_site::Finished {
            id: id("nginx_site", "app"),
            accepted: false,
            message: "nginx: [emerg] unknown directive\nnginx: configuration file test failed".into(),
        };
        records.push(Record::Finished(finished));
        for (i, r) in resources.iter().enumerate() {
            records.push(Record::Applied(AppliedRecord {
                resource: ResourceRecord::of(r),
                as_planned: i % 2 == 0,
                started_ms: 0,
                duration_ms: 1500,
            }));
        }
        records.push(Record::TriggerRan(reload));
        records.push(Record::TriggerSkipped(SkippedTrigger { trigger: restart, why: "offline root".into() }));
        records.push(Record::Apply(ApplySummary {
            counts: Counts { create: 1, update: 4, remove: 1, run: 1 },
            triggers: 1,
            triggers_skipped: 1,
            slowest: vec![Timing { id: "apt:nginx".parse().unwrap(), duration_ms: 2100 }],
        }));
        records
    }

    /// A remote host's records, sent as JSON and read back, print what the same records print
    /// in a local run, with the host's name before each line.
    #[test]
    fn remote_and_local_runs_render_records_alike() {
        for (color, verbosity) in [(false, 0), (true, 0), (false, 1), (false, -1)] {
            let (local, remote) = (Captured::default(), Captured::default());
            let mut here = Printer::to(Box::new(local.clone()), Format::Human, color, verbosity);
            let mut there = Printer::to(Box::new(remote.clone()), Format::Human, color, verbosity);
            for record in records() {
                let wire = serde_json::to_string(&record).unwrap();
                there.host_record("web1 | ", "web1", serde_json::from_str(&wire).unwrap());
                here.record(record);
            }
            let expected: Vec<String> =
                local.text().lines().map(|l| format!("web1 | {l}").trim_end().to_owned()).collect();
            assert!(local.text().contains("Apply complete"), "{}", local.text());
            assert_eq!(remote.text().lines().collect::<Vec<_>>(), expected, "color {color}, verbosity {verbosity}");
        }
    }
}
