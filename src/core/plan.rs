//! What a group's workers run, worked out once on the host's calling thread (at start, scale or
//! rollout) and reused for every spawn and respawn: the library never reads the host's
//! environment from its own threads.

use std::ffi::CString;

use crate::config::GroupSpec;

#[derive(Debug)]
pub struct Plan {
    pub spec: GroupSpec,
    /// The program to execute: `argv[0]`, searched in `PATH` when it has no `/`.
    pub program: CString,
    pub argv: Vec<CString>,
    /// The environment every worker starts from; the spawner adds each worker's own variables.
    pub env: Vec<CString>,
    pub cwd: Option<CString>,
}
