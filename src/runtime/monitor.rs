//! The monitor thread: sees worker exits, control-channel lines, spawned children and deadlines
//! as they happen. The exits it sees go to the reaper thread (`reaper.rs`), which reaps them.
//!
//! Exits are seen through pidfds in one epoll set. Where `pidfd_open` is denied or missing, a
//! worker's exit is noticed when its control channel closes, and otherwise by polling
//! `waitid(WNOHANG)` on a short tick; no signal handler is ever installed. Deadlines fire only
//! after every ready descriptor has been read, so a worker's heartbeat that has arrived is always
//! seen before its heartbeat deadline.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock;
use crate::core::timers::Timer;
use crate::core::Line;
use crate::runtime::child;
use crate::runtime::engine::{Engine, Shared};
use crate::runtime::tokens::{Ready, Source};
use crate::sync::lock;

/// Descriptors read per epoll call; a full batch means more are ready.
const BATCH: usize = 256;
/// Ready descriptors handled per hold of the lock, so host calls get the lock in between.
const PER_LOCK: usize = 64;

pub fn run(shared: Arc<Shared>) {
    let mut ready = Vec::with_capacity(BATCH);
    let mut timeout = sleep_until(&mut shared.lock());
    loop {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let reported = shared.tokens.wait(&mut ready, BATCH, timeout);
        // A bug in one round must not stop the monitor: workers would never be reaped.
        timeout = catch_unwind(AssertUnwindSafe(|| round(&shared, &mut ready, reported)))
            .unwrap_or_else(|_| sleep_until(&mut shared.lock()));
    }
}

/// How long the monitor may sleep, noted in the engine so that an earlier deadline wakes it.
fn sleep_until(engine: &mut Engine) -> Option<Duration> {
    let at = engine.wake_at();
    engine.monitor_sleeps_until = at;
    at.map(|at| at.saturating_duration_since(Instant::now()))
}

/// Handles everything that is ready, then the deadlines that are due; returns how long the
/// monitor may sleep then. Captured output is read under its own lock, never the engine's, so a
/// worker that floods it delays no host call. The last hold of the engine's lock goes on to the
/// rest of the round: each hold ends in a notification that wakes every waiting host call.
/// `reported`: how many descriptors the epoll set reported (`ready` holds those still
/// registered); a full batch means more may be ready.
fn round(shared: &Shared, ready: &mut Vec<Ready>, mut reported: usize) -> Option<Duration> {
    let is_output = |r: &&Ready| matches!(r.source, Source::Output(..));
    let mut held = None;
    loop {
        if ready.iter().any(|r| r.source == Source::Spawned) {
            // Outside the lock: receiving descriptors is not free. Into `to_monitor.outcomes`,
            // adopted below.
            drop(held.take());
            shared.spawner.collect(false);
        }
        let mut output = ready.iter().filter(is_output).peekable();
        while output.peek().is_some() {
            let mut captures = lock(&shared.captures);
            for r in output.by_ref().take(PER_LOCK) {
                if let Source::Output(key, pipe) = r.source {
                    captures.read(key, pipe);
                }
            }
        }
        let mut others = ready.iter().filter(|r| !is_output(r)).peekable();
        while others.peek().is_some() {
            // Let go between chunks, so host calls get the lock in between.
            drop(held.take());
            let mut engine = shared.lock();
            for r in others.by_ref().take(PER_LOCK) {
                handle(shared, &mut engine, r);
            }
            held = Some(engine);
        }
        if reported < BATCH {
            break;
        }
        drop(held.take());
        reported = shared.tokens.wait(ready, BATCH, Some(Duration::ZERO));
    }
    let mut engine = held.unwrap_or_else(|| shared.lock());
    let outcomes = std::mem::take(&mut *lock(&shared.to_monitor.outcomes));
    let now = Instant::now();
    for outcome in outcomes {
        engine.take_outcome(outcome, now);
    }
    for key in engine.io.polled() {
        engine.check_exit(key);
    }
    child::reap_orphans();
    let now = Instant::now();
    for (key, timer) in engine.core.timers.pop_due(now) {
        // A warm-up ends in readiness only for a worker that is still alive, even where its
        // exit has not been seen yet (polling).
        if timer == Timer::Warmup && engine.check_exit(key) {
            continue;
        }
        engine.core.timer(key, timer, now);
    }
    sleep_until(&mut engine)
}

/// Hands a ready descriptor to the function of its source (captured output is read by `round`,
/// under its own lock).
fn handle(shared: &Shared, engine: &mut Engine, ready: &Ready) {
    match ready.source {
        Source::Wake => shared.to_monitor.wake.clear(),
        // Collected by `round`.
        Source::Spawned | Source::Output(..) => {}
        // Readable only once the worker exited: the reaper looks at it (`reaper.rs`).
        Source::Pidfd(key) => engine.io.exited_by_pidfd(key),
        Source::Control(key) => {
            if ready.writable {
                engine.io.flush(key);
            }
            if ready.readable {
                read_channel(engine, key);
            }
        }
        Source::Notify => read_notify(engine),
    }
}

/// The sd_notify socket is readable: what known workers said goes to the core.
fn read_notify(engine: &mut Engine) {
    let messages = engine.io.notify.read();
    let now = Instant::now();
    let now_ms = clock::now_ms();
    for (key, m) in messages {
        engine.core.notify(key, m, now, now_ms);
    }
}

fn read_channel(engine: &mut Engine, key: u64) {
    let read = engine.io.read_channel(key);
    let now = Instant::now();
    let now_ms = clock::now_ms();
    for line in &read.lines {
        engine.core.line(key, Line::parse(line), now, now_ms);
    }
    if let Some(error) = read.error {
        engine.io.close_channel(key);
        engine.core.protocol_error(key, error);
    } else if read.closed {
        engine.io.close_channel(key);
        // Often the channel closes because the worker exited: without a pidfd to say so, look
        // now rather than at the next poll.
        if !engine.io.has_pidfd(key) {
            engine.check_exit(key);
        }
    }
}
