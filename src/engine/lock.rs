//! The run lock: two applies on one host must not interleave. The live host is locked through
//! `/run/converge.lock`; an offline root through its own directory, so nothing is added to it.

use std::fs::File;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::host::Host;

/// Held for as long as it lives; the kernel releases it when the process ends, even killed.
pub struct RunLock {
    _lock: Flock<File>,
}

/// Takes the lock, waiting up to `wait` for another run to finish (`--lock-wait`).
pub fn lock(host: &Host, wait: Duration) -> Result<RunLock> {
    let (path, file) = host.lock_file();
    let mut file = file.map_err(|source| Error::Lock { path: path.clone(), source })?;
    let deadline = Instant::now() + wait;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(RunLock { _lock: lock }),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = back;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Err(Error::Locked { path }),
            Err((_, errno)) => return Err(Error::Lock { path, source: errno.into() }),
        }
    }
}
