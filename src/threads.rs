//! Every thread the library creates starts with all signals blocked, so that a signal sent to
//! the host process is never delivered to a library thread (whose default action would kill the
//! host, or whose handler would run where the host does not expect it). A host that blocks a
//! signal in its own threads and reads it with `sigwaitinfo` or a `signalfd` then always gets it.
//!
//! glibc keeps its two internal signals (SIGCANCEL and SIGSETXID, 32 and 33) out of every mask it
//! sets: `sigfillset` leaves them out and `pthread_sigmask` ignores them, which is what `setuid`
//! across threads needs. SIGKILL and SIGSTOP cannot be blocked at all.

use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{SigSet, SigmaskHow};

use crate::sync::PerProcess;

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

/// A library thread that drains a queue and ends once its senders are gone, joined at most for a
/// while: one stuck on an exporter that never drains (a full pipe nobody reads) is left detached
/// after that, so that freeing or reconfiguring a supervisor never hangs.
pub(crate) struct Drainer {
    thread: Option<JoinHandle<()>>,
    /// Set by the thread when `f` has returned.
    finished: Arc<(Mutex<bool>, Condvar)>,
}

impl Drainer {
    /// Spawns `f` as `spawn_named` does.
    pub(crate) fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<Drainer> {
        let finished = Arc::new((Mutex::new(false), Condvar::new()));
        let done = Arc::clone(&finished);
        let thread = spawn_named(name, None, move || {
            f();
            let (flag, cv) = &*done;
            *crate::sync::lock(flag) = true;
            cv.notify_all();
        })?;
        Ok(Drainer {
            thread: Some(thread),
            finished,
        })
    }

    /// Waits up to `bound` for the thread to finish and joins it; else leaves it detached.
    pub(crate) fn join_within(&mut self, bound: Duration) {
        let (flag, cv) = &*self.finished;
        let guard = crate::sync::lock(flag);
        let (guard, _) = cv
            .wait_timeout_while(guard, bound, |done| !*done)
            .unwrap_or_else(|p| p.into_inner());
        let done = *guard;
        drop(guard);
        if let Some(thread) = self.thread.take() {
            if done {
                let _ = thread.join();
            }
        }
    }
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

type Job = Box<dyn FnOnce() + Send>;

/// The process's one large-stack thread (`PerProcess`: a child the host forked has none of its
/// parent's threads, and must not touch the parent's sender or wait for it).
struct LargeStack {
    jobs: mpsc::Sender<Job>,
}

static LARGE_STACK_THREAD: PerProcess<LargeStack> = PerProcess::new();

/// The large-stack thread of this process, started on first use. One long-lived thread rather
/// than one per call: std takes a process-wide lock whenever a thread starts or ends, and a child
/// forked while another thread held it could never start a thread of its own.
fn large_stack_thread() -> Option<&'static LargeStack> {
    LARGE_STACK_THREAD.get_or_make(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        let builder = std::thread::Builder::new()
            .name("mpsup-parse".into())
            .stack_size(LARGE_STACK);
        // A thread started by another caller at the same time ends once its sender is dropped.
        with_all_signals_blocked(|| {
            builder.spawn(move || {
                for job in queue {
                    job();
                }
            })
        })
        .ok()?
        .ok()?;
        Some(LargeStack { jobs })
    })
}

/// Runs `f` on the library's large-stack thread (all signals blocked) and returns its result; a
/// panic there continues on the caller. Where no such thread can be had (RLIMIT_NPROC), `f` runs
/// on the caller's thread instead.
pub(crate) fn on_large_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    let job = match large_stack_thread() {
        Some(t) => match t.jobs.send(job) {
            Ok(()) => None,
            Err(mpsc::SendError(job)) => Some(job),
        },
        None => Some(job),
    };
    if let Some(job) = job {
        job();
    }
    match result.recv() {
        Ok(Ok(value)) => value,
        Ok(Err(payload)) => std::panic::resume_unwind(payload),
        Err(_) => unreachable!("the job always answers"),
    }
}
