//! Progress on long steps (apt-get, venv creation and pip, `nginx -t`, systemd jobs, uploads): one
//! live line on stderr with a spinner, what runs and the time so far, cleared when the step ends
//! so that the result line takes its place. Only for human output on a terminal (stdout and
//! stderr): never in a pipe, a log or with `--output json`, and not with `-q`. With `-v` the
//! tools' own output streams instead (pip's), so there is no spinner to garble it.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

static SPINNERS: AtomicBool = AtomicBool::new(false);
static STREAM: AtomicBool = AtomicBool::new(false);

/// Decides, once per run, whether spinners are shown and whether tools' output streams.
pub fn configure(human: bool, verbosity: i8) {
    let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    SPINNERS.store(human && terminal && verbosity == 0, Ordering::Relaxed);
    STREAM.store(human && std::io::stderr().is_terminal() && verbosity > 0, Ordering::Relaxed);
}

/// Whether a tool's own output (pip's) should stream to the terminal: with `-v` on a terminal.
pub fn stream_tool_output() -> bool {
    STREAM.load(Ordering::Relaxed)
}

/// All spinners of a run: several hosts upload at once.
fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(MultiProgress::new)
}

/// Runs `print` with the spinners taken off the screen, so that a line printed meanwhile is
/// not mixed into one.
pub fn suspend<R>(print: impl FnOnce() -> R) -> R {
    if SPINNERS.load(Ordering::Relaxed) { multi().suspend(print) } else { print() }
}

/// A live line while it lives; nothing when spinners are off.
pub struct Spinner(Option<ProgressBar>);

pub fn spinner(message: impl Into<String>) -> Spinner {
    if !SPINNERS.load(Ordering::Relaxed) {
        return Spinner(None);
    }
    let bar = multi().add(ProgressBar::new_spinner());
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template");
    bar.set_style(style);
    bar.set_message(message.into());
    bar.tick();
    bar.enable_steady_tick(Duration::from_millis(100));
    Spinner(Some(bar))
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
            multi().remove(&bar);
        }
    }
}
