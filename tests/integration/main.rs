//! Integration tests: the real `converge` binary against a temporary `--root`, one module per
//! topic (ripgrep's layout: one test binary).
//!
//! The binary is its own harness (`harness = false`, libtest-mimic) so that a test that cannot run
//! here is reported as ignored, with the reason, instead of passing: each test is a plain function
//! that its module registers with [`tests!`], and that states what it needs of the machine with
//! [`require!`] (root, a container, a VM, nginx, ...). Where a need is missing, the test is
//! ignored; under `CI=true` it fails instead, since CI must run every test. The command line is
//! libtest's (filters, `--exact`, `--skip`, `--nocapture`, `--test-threads`, `--ignored`,
//! `--include-ignored`, `--list`) and so is the closing `test result:` line.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// One test of the suite: a plain function of a module, named `module::function` as libtest
/// names it.
pub struct Case {
    /// The module's path (`integration::cli`).
    pub module: &'static str,
    pub name: &'static str,
    pub run: fn(),
}

/// Registers the tests of a module: `tests![a_test, another_test];` lists its test functions.
/// A test function that is not listed is dead code, which `cargo clippy -D warnings` refuses.
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        /// The tests of this module, for the harness (main.rs).
        pub const TESTS: &[crate::Case] =
            &[$(crate::Case { module: module_path!(), name: stringify!($name), run: $name }),*];
    };
}

/// What a test needs of the machine: `require!(Root, Tool("script"))` (see `support::Need`).
/// Where something is missing the test stops there, ignored with the reason, or failed under
/// `CI=true`.
macro_rules! require {
    ($($need:ident $(($($arg:expr),*))?),+ $(,)?) => {
        crate::support::require(&[$(crate::support::Need::$need $(($($arg),*))?),+])
    };
}

/// Declares the test modules and collects their tests.
macro_rules! suite {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*
        const SUITE: &[&[Case]] = &[$($module::TESTS),*];
    };
}

mod support;

suite![
    accounts,
    app_e2e,
    apt_repositories,
    apt_repository_e2e,
    atomicity,
    cli,
    commands,
    convergence,
    downloads,
    errors,
    files,
    git,
    lines,
    lines_e2e,
    modules,
    nginx,
    nginx_e2e,
    paths,
    plan_output,
    records,
    remote,
    rollback,
    safety,
    saved_plans,
    scenario_e2e,
    schema,
    sysctl,
    systemd_e2e,
    trees,
    units_offline,
    virtualenv,
    vm_e2e,
];

thread_local! {
    /// The panic message of the test running on this thread: the failure that the summary shows.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Whether a test runs on this thread (other threads' panics go to the default hook).
    static IN_TEST: RefCell<bool> = const { RefCell::new(false) };
}

fn main() -> ExitCode {
    let (filters, rest) = split_filters(std::env::args());
    let mut args = Arguments::from_iter(rest);
    // libtest reads RUST_TEST_THREADS when --test-threads is not given; so does this harness.
    if args.test_threads.is_none() {
        args.test_threads = std::env::var("RUST_TEST_THREADS").ok().and_then(|n| n.parse().ok());
    }
    install_panic_hook(args.nocapture);
    // Each test once; those of the end-to-end modules of support::MULTI_SUITE once per Debian
    // release of their containers, the default release's under the test's plain name.
    let suites = support::suites();
    let mut runs: Vec<(String, &'static Case, &'static str)> = Vec::new();
    for case in SUITE.iter().flat_map(|cases| cases.iter()) {
        let name = name_of(case);
        if !support::MULTI_SUITE.iter().any(|module| name.starts_with(&format!("{module}::"))) {
            runs.push((name, case, support::SUITES[0]));
            continue;
        }
        for &suite in &suites {
            let named = if suite == support::SUITES[0] { name.clone() } else { format!("{suite}::{name}") };
            runs.push((named, case, suite));
        }
    }
    // libtest runs the tests in the order of their names.
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    // libtest takes several filters (a test runs when it matches one); libtest-mimic takes one.
    // Several become a `--skip --exact` of every test that matches none of them (or a --skip).
    match filters.as_slice() {
        [] => {}
        [filter] => args.filter = Some(filter.clone()),
        filters => {
            let exact = args.exact;
            let matches = |pattern: &String, name: &str| if exact { name == pattern } else { name.contains(pattern) };
            let skip = runs.iter().map(|(name, ..)| name.clone()).filter(|name| {
                !filters.iter().any(|filter| matches(filter, name)) || args.skip.iter().any(|skip| matches(skip, name))
            });
            args.skip = skip.collect();
            args.exact = true;
        }
    }
    let trials = runs
        .into_iter()
        .map(|(name, case, suite)| Trial::ignorable_test(name, move || support::with_suite(suite, || run(case))))
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// The positional arguments (the filters) apart from the rest of the command line, which keeps the
/// program's name.
fn split_filters(args: impl Iterator<Item = String>) -> (Vec<String>, Vec<String>) {
    const WITH_VALUE: [&str; 6] = ["--test-threads", "--skip", "--logfile", "--color", "--format", "-Z"];
    let (mut filters, mut rest) = (Vec::new(), Vec::new());
    let mut args = args.enumerate();
    while let Some((i, arg)) = args.next() {
        if i > 0 && !arg.starts_with('-') {
            filters.push(arg);
            continue;
        }
        let value = WITH_VALUE.contains(&arg.as_str()).then(|| args.next()).flatten();
        rest.push(arg);
        rest.extend(value.map(|(_, value)| value));
    }
    (filters, rest)
}

/// `cli::quiet_prints_only_the_summary`: the name libtest gave the test (its path in the crate),
/// which filters and insta's snapshot names follow.
fn name_of(case: &Case) -> String {
    let module = case.module.split_once("::").map_or(case.module, |(_, module)| module);
    format!("{module}::{}", case.name)
}

/// Runs a test: a panic is a failure with the panic's message; an unmet `require!` ignores it.
fn run(case: &Case) -> Result<Completion, Failed> {
    IN_TEST.with(|flag| *flag.borrow_mut() = true);
    PANIC.with(|message| message.borrow_mut().take());
    let outcome = catch_unwind(AssertUnwindSafe(case.run));
    IN_TEST.with(|flag| *flag.borrow_mut() = false);
    match outcome {
        Ok(()) => Ok(Completion::Completed),
        Err(payload) => match payload.downcast::<support::Unmet>() {
            Ok(unmet) => Ok(Completion::ignored_with(unmet.0)),
            Err(_) => {
                Err(PANIC.with(|message| message.borrow_mut().take()).unwrap_or_else(|| "test panicked".into()).into())
            }
        },
    }
}

/// The frames of a backtrace between the panic machinery and the harness, as libtest shows them
/// (all of them under RUST_BACKTRACE=full).
fn short(backtrace: &str) -> String {
    if std::env::var("RUST_BACKTRACE").as_deref() == Ok("full") {
        return backtrace.to_owned();
    }
    let lines: Vec<&str> = backtrace.lines().collect();
    let frame = |marker: &str| lines.iter().position(|line| line.contains(marker));
    let start = frame("__rust_end_short_backtrace").map_or(0, |i| i + 1);
    let start = start + lines[start..].iter().take_while(|line| line.trim_start().starts_with("at ")).count();
    let end = frame("std::panicking::catch_unwind").unwrap_or(lines.len()).max(start);
    lines[start..end].join("\n")
}

/// Keeps a test's panic message (and its backtrace under RUST_BACKTRACE) for the summary of
/// failures, as libtest does; with `--nocapture` it is printed at once too.
fn install_panic_hook(nocapture: bool) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_TEST.with(|flag| *flag.borrow()) {
            return default(info);
        }
        let backtrace = std::backtrace::Backtrace::capture();
        let mut message = info.to_string();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            message = format!("{message}\nstack backtrace:\n{}", short(&backtrace.to_string()));
        }
        if nocapture {
            eprintln!("{message}");
        }
        PANIC.with(|slot| *slot.borrow_mut() = Some(message));
    }));
}
