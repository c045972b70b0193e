//! Lines sent to workers without the engine's lock.
//!
//! A line for a channel with nothing queued is sent by the thread that recorded it, once it has
//! let go of the lock (`Locked`), and the lock is then taken again only to see how it went.
//! Each send wakes a worker, which on a busy machine often runs at once in the sender's place: a
//! stop of 1,000 workers sent under the lock held it for some 40 ms, so the monitor could reap
//! none of the exits meanwhile and host calls waited. While a line is out, later lines for that
//! channel queue behind it, so their order holds.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::core::worker::Key;
use crate::os;

/// A line on its way to a worker's control socket, outside the lock.
#[derive(Debug)]
pub struct Unlocked {
    pub key: Key,
    /// The channel's socket; shared, so that a channel closed meanwhile is still a descriptor
    /// of that socket (sends then fail) and never a number that could name another one.
    pub fd: Arc<OwnedFd>,
    /// The line and its `\n`.
    pub bytes: Vec<u8>,
    /// For a stop request: the signal and its target (the whole process group or not) that
    /// stop the worker instead when the line cannot go.
    pub fallback: Option<(i32, bool)>,
}

/// How a send went: how many bytes the socket took, or that the peer is gone.
pub type Outcome = (Unlocked, std::io::Result<usize>);

/// Sends each line as far as its socket takes it now, without blocking.
pub fn send_all(lines: Vec<Unlocked>) -> Vec<Outcome> {
    lines
        .into_iter()
        .map(|line| {
            let result = os::send_some(&line.fd, &line.bytes);
            (line, result)
        })
        .collect()
}
