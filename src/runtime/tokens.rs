//! The one table of the monitor's epoll set: each token names the source of its descriptor.
//! Every descriptor the monitor watches registers here (and only here), and the monitor hands
//! what is ready to a plain function of its source (`monitor.rs`), so a new kind of descriptor
//! is a new `Source` and a new arm there.
//!
//! The table has a lock of its own, a leaf: it is taken, briefly, under the engine's lock or the
//! captured output's, never the other way round, so the monitor can look up a batch of ready
//! tokens before it takes either. Tokens are never reused, and a source's key names one process
//! for ever (a respawn gets a new key), so a lookup that comes before the source goes away only
//! reaches a handler that finds nothing left to do.

use std::collections::HashMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::worker::Key;
use crate::os::Poller;
use crate::sync::lock;

/// What a token's descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The eventfd that wakes the monitor (`ToMonitor::wake`).
    Wake,
    /// The socket on which spawn outcomes arrive from the spawner's own descriptor table
    /// (`spawner/table.rs`).
    Spawned,
    /// The supervisor's sd_notify socket (`notify.rs`).
    Notify,
    /// A worker's pidfd: readable once the worker exited.
    Pidfd(Key),
    /// The supervisor's end of a worker's control socket.
    Control(Key),
    /// A pipe of a worker's captured output: the worker, and which of its pipes.
    Output(Key, usize),
}

/// A ready descriptor, by its source.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    pub source: Source,
    pub readable: bool,
    pub writable: bool,
}

struct Table {
    next: u64,
    sources: HashMap<u64, Source>,
}

/// The epoll set and its token table.
pub struct Tokens {
    poller: Poller,
    table: Mutex<Table>,
}

impl Tokens {
    pub fn new() -> io::Result<Arc<Tokens>> {
        Ok(Arc::new(Tokens {
            poller: Poller::new()?,
            table: Mutex::new(Table {
                next: 0,
                sources: HashMap::new(),
            }),
        }))
    }

    fn insert(&self, source: Source) -> u64 {
        let mut table = lock(&self.table);
        let token = table.next;
        table.next += 1;
        table.sources.insert(token, source);
        token
    }

    /// Gives `source` a token and adds its descriptor to the set with `add`.
    fn register(&self, source: Source, add: impl FnOnce(u64) -> io::Result<()>) -> io::Result<u64> {
        let token = self.insert(source);
        add(token).inspect_err(|_| self.forget(token))?;
        Ok(token)
    }

    /// Watches `fd` for input as `source`; returns its token.
    pub fn watch(&self, fd: BorrowedFd<'_>, source: Source) -> io::Result<u64> {
        self.register(source, |token| self.poller.add(fd, token))
    }

    /// Watches `fd` for input as `source`, reporting once (`Poller::add_once`): closing it then
    /// needs only `forget`.
    pub fn watch_once(&self, fd: BorrowedFd<'_>, source: Source) -> io::Result<u64> {
        self.register(source, |token| self.poller.add_once(fd, token))
    }

    /// Watches `fd` (of `token`) for room to write too, while `write` is true.
    pub fn want_room(&self, fd: BorrowedFd<'_>, token: u64, write: bool) -> io::Result<()> {
        self.poller.modify(fd, token, write)
    }

    /// Stops watching `fd` and forgets its token.
    pub fn unwatch(&self, fd: BorrowedFd<'_>, token: u64) {
        self.poller.remove(fd);
        self.forget(token);
    }

    /// Forgets a token whose descriptor is out of the set already (reported once, or refused).
    pub fn forget(&self, token: u64) {
        lock(&self.table).sources.remove(&token);
    }

    /// Waits up to `timeout` (None: forever) for at most `capacity` ready descriptors, and fills
    /// `ready` with the sources of those still registered. Returns how many the kernel reported
    /// (`capacity` of them: more may be ready).
    pub fn wait(
        &self,
        ready: &mut Vec<Ready>,
        capacity: usize,
        timeout: Option<Duration>,
    ) -> usize {
        let mut events = Vec::with_capacity(capacity);
        self.poller.wait(&mut events, capacity, timeout);
        ready.clear();
        let table = lock(&self.table);
        ready.extend(events.iter().filter_map(|&(token, readable, writable)| {
            let source = *table.sources.get(&token)?;
            Some(Ready {
                source,
                readable,
                writable,
            })
        }));
        events.len()
    }
}
