//! Threads the library creates. Each starts with every signal blocked, so that a
//! process-directed signal (SIGTERM, SIGINT, SIGCHLD, ...) is always delivered to one of the
//! host's own threads, which may be waiting for it with `sigwaitinfo` or a signalfd.

use std::io;
use std::thread::JoinHandle;

use nix::sys::signal::{SigSet, SigmaskHow};

/// Spawns a named thread with every signal blocked. The mask is set on the calling thread just
/// around the spawn (a new thread inherits its creator's mask) and put back at once.
pub(crate) fn spawn_named<F, T>(name: &str, stack: Option<usize>, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let mut builder = std::thread::Builder::new().name(name.to_string());
    if let Some(size) = stack {
        builder = builder.stack_size(size);
    }
    // glibc keeps its internal signals (cancellation, setxid) unblocked whatever we ask.
    let old = SigSet::all()
        .thread_swap_mask(SigmaskHow::SIG_SETMASK)
        .map_err(io::Error::from)?;
    let spawned = builder.spawn(f);
    let _ = old.thread_set_mask();
    spawned
}
