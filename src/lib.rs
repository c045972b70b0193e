//! mpsupervisor: run and supervise groups of worker processes, from Rust or through a C ABI.
//!
//! The core (`Supervisor` and friends) is plain Rust; `ffi` is the C boundary described in
//! `include/mpsupervisor.h`; `worker_side` holds the helpers a worker process uses to speak the
//! control protocol.

pub mod config;
pub mod error;
pub mod events;
pub mod ffi;
pub mod lines;
pub mod logging;
mod monitor;
pub mod policy;
mod spawn;
pub mod supervisor;
mod sys;
mod threads;
pub mod worker;
pub mod worker_side;

pub use error::{Error, Result};
pub use events::{Event, EventKind, StopMode};
pub use supervisor::{Options, Supervisor};
