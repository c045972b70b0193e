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
    // A new thread inherits its creator's mask: block everything here for the spawn only.
    // SAFETY: valid signal sets; only the calling thread's mask changes, and is restored below.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    let spawned = builder.spawn(f);
    // SAFETY: `old` is the mask read above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    spawned
}
