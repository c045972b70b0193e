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
    /// What the exec shim sets before the exec (identity, umask, limits).
    pub attrs: Attributes,
}

/// What the exec shim sets in a worker between its spawn and its program's exec (API.md part
/// 7), resolved once when the group is started: only what differs from the host's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `(name in rlimits, soft, hard)`; all ones is `RLIM_INFINITY`.
    pub rlimits: Vec<(&'static str, u64, u64)>,
    pub umask: Option<u32>,
    /// The supplementary groups (`setgroups`), when they change.
    pub groups: Option<Vec<u32>>,
    pub gid: Option<u32>,
    pub uid: Option<u32>,
    pub no_new_privileges: bool,
}

impl Attributes {
    /// The first key these come from, in the order the shim applies them; None when nothing
    /// is to be set (no shim needed for them).
    pub fn first_key(&self) -> Option<&'static str> {
        [
            (!self.rlimits.is_empty(), "rlimits"),
            (self.umask.is_some(), "umask"),
            (self.groups.is_some(), "supplementary_groups"),
            (self.gid.is_some(), "group"),
            (self.uid.is_some(), "user"),
            (self.no_new_privileges, "no_new_privileges"),
        ]
        .into_iter()
        .find_map(|(set, key)| set.then_some(key))
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
