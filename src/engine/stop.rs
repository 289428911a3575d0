//! SIGTERM (and SIGINT, SIGHUP) during `apply` (docs/triggers.md, rule 9): the run finishes the
//! atomic step it is in (the resource being applied, with its `nginx -t` and rollback; the phase
//! of triggers being run), starts nothing after it, keeps its journals, and exits with 128 + the
//! signal's number. This is how the engine on a remote target stops when its connection goes (the
//! run script sends it SIGTERM), and how `systemctl stop` or `timeout` stop a local run.
//!
//! The handler only records the signal in an atomic (async-signal-safe); the engine looks at it
//! between steps. It is installed with SA_RESETHAND, so the same signal a second time has its
//! default action and ends the run at once (a SIGHUP that comes with the SIGTERM, as when a
//! connection goes, does not). Handlers do not survive `exec`, so a program converge starts (a
//! `command`, apt, `nginx -t`) gets the default actions, and the signal mask is left alone. A
//! signal that was ignored when converge started (SIGINT for a background job of `sh`) stays
//! ignored.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: nix::libc::c_int) {
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// Starts catching SIGTERM, SIGINT and SIGHUP.
pub fn catch() {
    let action =
        SigAction::new(SigHandler::Handler(record), SaFlags::SA_RESTART | SaFlags::SA_RESETHAND, SigSet::empty());
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: `record` only stores to an atomic, which is async-signal-safe, and touches
        // nothing else of the process.
        let previous = unsafe { sigaction(signal, &action) };
        if let Ok(previous) = previous
            && matches!(previous.handler(), SigHandler::SigIgn)
        {
            // SAFETY: restoring SIG_IGN installs no code.
            let _ = unsafe { sigaction(signal, &previous) };
        }
    }
}

/// The signal that asked the run to stop, if one came.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}
