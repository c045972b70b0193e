//! A started group: what it runs, how many workers it should have, and a rolling restart in
//! progress.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::RestartOptions;
use crate::core::plan::Plan;
use crate::core::policy::Intensity;
use crate::core::worker::Key;

#[derive(Debug)]
pub struct Group {
    /// What new workers of the group run (the last finished generation).
    pub plan: Arc<Plan>,
    /// The newest generation started (a rollout in progress runs it already).
    pub generation: u32,
    /// The worker count the library keeps.
    pub target: u32,
    /// The group's worker processes by (index, key): a slot's newer process sorts after its
    /// older one during a rollout.
    pub keys: BTreeSet<(u32, Key)>,
    pub intensity: Intensity,
    /// `start_work` has been called: respawned workers get `START` too.
    pub work_started: bool,
    /// Started and not stopped since: workers are respawned, scaled and rolled out.
    pub started: bool,
    /// Failed for too many respawns; nothing respawns until it is started again.
    pub failed: bool,
    pub rollout: Option<Rollout>,
    /// Every worker exited 0 and none is respawned (`group_completed`): it counts as ready.
    pub completed: bool,
    /// Failed because this dependency failed before the group could start.
    pub dependency_failed: Option<String>,
    /// A dependency restarted (`on_dependency_restart: "restart"`): the group is rolled out
    /// once its dependencies hold again (`depends.rs`).
    pub restart_pending: bool,
}

impl Group {
    pub fn new(plan: Arc<Plan>, generation: u32) -> Group {
        Group {
            target: plan.spec.workers,
            plan,
            generation,
            keys: BTreeSet::new(),
            intensity: Intensity::default(),
            work_started: false,
            started: true,
            failed: false,
            rollout: None,
            completed: false,
            dependency_failed: None,
            restart_pending: false,
        }
    }

    /// The rolling restart in progress, if one is (not one that ended, failed or done).
    pub fn running_rollout(&self) -> Option<&Rollout> {
        self.rollout
            .as_ref()
            .filter(|r| r.state == RolloutState::Running)
    }
}

/// The options of `restart_groups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutOptions {
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub ready_timeout: Duration,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            max_surge: 1,
            max_unavailable: 0,
            ready_timeout: Duration::from_secs(30),
        }
    }
}

impl From<RestartOptions> for RolloutOptions {
    fn from(o: RestartOptions) -> Self {
        RolloutOptions {
            max_surge: o.max_surge,
            max_unavailable: o.max_unavailable,
            ready_timeout: Duration::from_millis(o.ready_timeout_ms),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    Running,
    Failed { worker_id: String, reason: String },
}

/// A rolling restart: slot by slot, a new worker is started, and the old one of its slot is
/// stopped once the new one is ready.
#[derive(Debug)]
pub struct Rollout {
    pub generation: u32,
    pub plan: Arc<Plan>,
    pub options: RolloutOptions,
    /// Slots whose replacement has not been started yet, lowest first.
    pub pending: VecDeque<u32>,
    /// Slots whose replacement runs but is not ready yet: slot → the new worker's key.
    pub replacing: BTreeMap<u32, Key>,
    pub replaced: u32,
    pub started_at: Instant,
    pub state: RolloutState,
}
