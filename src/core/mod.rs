//! The core: what the supervisor knows and decides. It makes no system call: a transition takes
//! what happened (a host call, an exit, a line, a deadline) and records events and effects,
//! which the runtime carries out. So the rules are unit-tested without processes or sleeps.

mod depends;
pub(crate) mod effects;
pub(crate) mod group;
mod lifecycle;
pub(crate) mod notify;
pub(crate) mod one_group;
pub(crate) mod plan;
pub mod policy;
pub(crate) mod probes;
pub(crate) mod recycle;
mod rollout;
pub(crate) mod state;
#[cfg(test)]
mod state_tests;
mod strategy;
#[cfg(test)]
mod test_support;
pub(crate) mod timers;
pub(crate) mod worker;
#[cfg(test)]
mod worker_tests;

pub(crate) use lifecycle::{Line, Spawned};
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod probes_tests;
