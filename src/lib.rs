//! mpsupervisor: run and supervise groups of worker processes, from Rust or through a C ABI.
//!
//! ```no_run
//! use std::time::Duration;
//! use mpsupervisor::config::{GroupSpec, Readiness};
//! use mpsupervisor::Supervisor;
//!
//! # fn main() -> mpsupervisor::Result<()> {
//! let sup = Supervisor::new()?;
//! sup.configure(&[GroupSpec {
//!     name: "ingest".into(),
//!     argv: vec!["/usr/bin/ingest".into()],
//!     workers: 2,
//!     readiness: Readiness::Notify,
//!     ..Default::default()
//! }])?;
//! sup.start_groups(&["ingest"])?;
//! if !sup.wait_ready(Duration::from_secs(5))? {
//!     sup.force_terminate_groups(&["ingest"])?;
//! }
//! for worker in &sup.snapshot()?.groups["ingest"] {
//!     println!("{} is pid {}", worker.worker_id, worker.pid);
//! }
//! sup.stop_groups(Duration::from_secs(5), true)?;
//! # Ok(()) }
//! ```
//!
//! Three layers, each importing only those below it:
//! - the faces: `Supervisor` (the Rust API), `ffi` (the C API of `include/mpsupervisor.h`) and
//!   `worker_side` (the helpers a worker uses to speak the control protocol);
//! - the runtime (`runtime`, `logging`, `os`, `threads`): the threads and descriptors of a
//!   supervisor, and the writer of its log records;
//! - the core (`core`, `config`, `events`, `lines`): what a supervisor knows and decides, with no
//!   system calls.

#![warn(missing_docs)]

mod clock;
pub mod config;
mod core;
mod env_file;
pub mod error;
pub mod events;
pub mod ffi;
mod lines;
pub mod logging;
mod options;
mod os;
mod protocol;
mod report;
mod runtime;
pub mod schema;
pub mod snapshot;
pub mod status;
mod supervisor;
mod sync;
mod threads;
pub mod worker_side;

pub use config::GroupSpec;
pub use error::{Error, Result};
pub use events::{Event, EventKind, StopMode};
pub use options::Options;
pub use snapshot::{Snapshot, WorkerSnapshot, WorkerState};
pub use status::Status;
pub use supervisor::{Supervisor, KILL_BOUND};
