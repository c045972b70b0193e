//! Every thread the library creates starts with all signals blocked, so that a signal sent to
//! the host process is never delivered to a library thread (whose default action would kill the
//! host, or whose handler would run where the host does not expect it). A host that blocks a
//! signal in its own threads and reads it with `sigwaitinfo` or a `signalfd` then always gets it.
//!
//! glibc keeps its two internal signals (SIGCANCEL and SIGSETXID, 32 and 33) out of every mask it
//! sets: `sigfillset` leaves them out and `pthread_sigmask` ignores them, which is what `setuid`
//! across threads needs. SIGKILL and SIGSTOP cannot be blocked at all.

use std::io;
use std::thread::JoinHandle;

use nix::sys::signal::{SigSet, SigmaskHow};

/// Spawns a thread named `name` (with `stack` bytes of stack, or std's default) whose signal
/// mask blocks every signal. The caller's own mask is the same after the call as before.
pub(crate) fn spawn_named<F, T>(name: &str, stack: Option<usize>, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let mut builder = std::thread::Builder::new().name(name.to_string());
    if let Some(bytes) = stack {
        builder = builder.stack_size(bytes);
    }
    with_all_signals_blocked(|| builder.spawn(f))?
}

/// Runs `f` (a thread spawn: the new thread inherits the mask) with every signal blocked in the
/// calling thread, then restores the caller's mask.
fn with_all_signals_blocked<T>(f: impl FnOnce() -> T) -> io::Result<T> {
    let old = SigSet::all()
        .thread_swap_mask(SigmaskHow::SIG_SETMASK)
        .map_err(io::Error::from)?;
    let result = f();
    let _ = old.thread_set_mask();
    Ok(result)
}

/// How much stack `on_large_stack` gives: far more than parsing the deepest accepted value needs.
const LARGE_STACK: usize = 4 << 20;

/// Runs `f` on a short-lived library thread with a large stack (all signals blocked) and returns
/// its result; a panic there continues on the caller. Where no thread can be made (RLIMIT_NPROC),
/// `f` runs on the caller's thread instead.
pub(crate) fn on_large_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let job = std::sync::Mutex::new(Some(f));
    let take = || job.lock().unwrap_or_else(|p| p.into_inner()).take();
    let ran = std::thread::scope(|scope| {
        let builder = std::thread::Builder::new()
            .name("mpsup-parse".into())
            .stack_size(LARGE_STACK);
        let spawned =
            with_all_signals_blocked(|| builder.spawn_scoped(scope, || take().map(|f| f())));
        match spawned {
            Ok(Ok(handle)) => Some(
                handle
                    .join()
                    .unwrap_or_else(|payload| std::panic::resume_unwind(payload)),
            ),
            _ => None,
        }
    });
    match ran.flatten() {
        Some(result) => result,
        None => take().expect("the job did not run")(),
    }
}
