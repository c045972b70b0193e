//! The library's error type. Each variant maps to one `mpsup_result` code at the C boundary.

use std::io;

/// Everything that can go wrong in a supervisor call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A handle that is zero, freed, stale or made up.
    #[error("{0}")]
    InvalidHandle(String),
    /// NULL where a value is required, non-UTF-8 text, a bad number.
    #[error("{0}")]
    InvalidArgument(String),
    /// The groups JSON was rejected; the message names the JSON path.
    #[error("{0}")]
    InvalidConfig(String),
    /// A group name that was never configured.
    #[error("unknown group '{0}'")]
    UnknownGroup(String),
    /// `posix_spawn` (or preparing for it) failed.
    #[error("{context}: {source}")]
    Spawn {
        /// What was being spawned or prepared.
        context: String,
        /// The system's error.
        source: io::Error,
    },
    /// A graceful stop did not finish in time.
    #[error("{0}")]
    Timeout(String),
    /// Another system call failed.
    #[error("{context}: {source}")]
    Os {
        /// The call that failed.
        context: String,
        /// The system's error.
        source: io::Error,
    },
    /// `start_work` before every named worker was ready.
    #[error("{0}")]
    NotReady(String),
    /// What a group asks cannot be had on this host or with this process's privileges (switching
    /// user without `CAP_SETUID`, a limit without a writable cgroup controller); the message names
    /// the key and the reason. Nothing was started for it.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// An `Os` error from the current `errno`.
    pub fn last_os(context: impl Into<String>) -> Self {
        Error::Os {
            context: context.into(),
            source: io::Error::last_os_error(),
        }
    }

    /// An `Os` error from an `io::Error`.
    pub fn os(context: impl Into<String>, source: io::Error) -> Self {
        Error::Os {
            context: context.into(),
            source,
        }
    }
}

/// The result of every fallible call of the library.
pub type Result<T> = std::result::Result<T, Error>;
