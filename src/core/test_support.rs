//! What the core's unit tests share: a started group without processes.

use std::ffi::CString;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{parse_groups, GroupSpec};
use crate::core::effects::Effect;
use crate::core::plan::Plan;
use crate::core::state::State;
use crate::core::timers::Timer;
use crate::core::worker::Key;
use crate::core::Spawned;
use crate::events::EventKind;

/// A started group "g" of `workers` workers, ready (warm-up 0), pids 100, 101, …
pub(crate) fn ready_group(workers: u32, extra: &str) -> (State, Vec<Key>, Instant) {
    let (mut state, keys, now) =
        started_group(workers, &format!(r#", "warmup_ms": 0{extra}"#), false);
    for &key in &keys {
        state.timer(key, Timer::Warmup, now);
    }
    state.events.drain(0);
    state.take_effects();
    (state, keys, now)
}

/// A started group "g" of `workers` workers (pids 100, 101, …) spawned at the returned instant,
/// with or without a control channel, none of them ready yet (no deadline fired); events and
/// effects so far taken.
pub(crate) fn started_group(
    workers: u32,
    extra: &str,
    channel: bool,
) -> (State, Vec<Key>, Instant) {
    let json = format!(r#"[{{"name": "g", "argv": ["/bin/true"], "workers": {workers}{extra}}}]"#);
    let spec = parse_groups(&json).unwrap().remove(0);
    let mut state = State::new(256);
    state.config.insert(spec.name.clone(), spec.clone());
    let t0 = Instant::now();
    let keys: Vec<Key> = state
        .begin_start(vec![plan_of(spec)])
        .iter()
        .map(|j| j.key)
        .collect();
    for (i, &key) in keys.iter().enumerate() {
        let s = Spawned {
            has_channel: channel,
            ..spawned(100 + i as i32, t0)
        };
        assert!(state.adopt(key, s));
    }
    state.events.drain(0);
    state.take_effects();
    (state, keys, t0)
}

/// The `(worker_id, attempt, delay_ms)` of each `worker_restarting` among `kinds`, in order.
pub(crate) fn restarts(kinds: impl IntoIterator<Item = EventKind>) -> Vec<(String, u32, u64)> {
    kinds
        .into_iter()
        .filter_map(|k| match k {
            EventKind::WorkerRestarting {
                worker_id,
                attempt,
                delay_ms,
                ..
            } => Some((worker_id, attempt, delay_ms)),
            _ => None,
        })
        .collect()
}

/// What a group's workers run, for a core that never runs it.
pub(crate) fn plan_of(spec: GroupSpec) -> Arc<Plan> {
    Arc::new(Plan {
        program: CString::new("/bin/true").unwrap(),
        argv: vec![],
        env: vec![],
        cwd: None,
        attrs: Default::default(),
        spec,
    })
}

/// A worker process `pid` spawned at `at`, without a control channel.
pub(crate) fn spawned(pid: i32, at: Instant) -> Spawned {
    Spawned {
        pid,
        has_channel: false,
        channel_error: None,
        at,
        at_ms: 0,
    }
}

/// The keys of the spawns among `effects`, in order.
pub(crate) fn spawn_keys(effects: &[Effect]) -> Vec<Key> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Spawn(job) => Some(job.key),
            _ => None,
        })
        .collect()
}

/// The key of the one spawn among `effects`.
pub(crate) fn spawn_of(effects: &[Effect]) -> Key {
    let spawns = spawn_keys(effects);
    assert_eq!(spawns.len(), 1, "{effects:?}");
    spawns[0]
}

/// The keys the effects so far send SIGKILL to.
pub(crate) fn kills(state: &mut State) -> Vec<Key> {
    state
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Signal { key, signal } if signal == libc::SIGKILL => Some(key),
            _ => None,
        })
        .collect()
}

/// Fires every deadline due at `now` (those re-armed at or before `now` too, a bounded number
/// of rounds) as the runtime's monitor does.
pub(crate) fn run_until(state: &mut State, now: Instant) {
    for _ in 0..16 {
        let due = state.timers.pop_due(now);
        if due.is_empty() {
            return;
        }
        for (key, timer) in due {
            state.timer(key, timer, now);
        }
    }
}
