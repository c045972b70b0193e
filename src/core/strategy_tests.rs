//! The rules of `restart_strategy`, without processes.

use std::time::Duration;

use crate::core::effects::Effect;
use crate::core::state::State;
use crate::core::test_support::{ready_group, restarts, run_until, spawn_keys, spawn_of, spawned};
use crate::core::timers::Timer;
use crate::core::worker::{ExitStatus, Key, Phase};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const ONE_FOR_ALL: &str =
    r#", "restart": "always", "restart_delay_ms": 0, "restart_strategy": "one_for_all""#;

fn exit(code: i32) -> ExitStatus {
    ExitStatus {
        code: Some(code),
        signal: None,
        oom_killed: false,
    }
}

/// The keys a graceful stop was asked of, in order.
fn stops(state: &mut State) -> Vec<Key> {
    state
        .take_effects()
        .iter()
        .filter_map(|e| match e {
            Effect::Stop { key, .. } => Some(*key),
            _ => None,
        })
        .collect()
}

#[test]
fn one_for_one_stops_no_other_worker() {
    let (mut state, keys, now) = ready_group(3, r#", "restart": "always""#);
    state.exited(keys[1], exit(1), now, 0);
    assert_eq!(stops(&mut state), Vec::<Key>::new());
    assert_eq!(state.workers[&keys[0]].phase, state.workers[&keys[2]].phase);
    assert!(matches!(state.workers[&keys[0]].phase, Phase::Ready { .. }));
}

#[test]
fn one_for_all_stops_the_others_then_respawns_each_once_gone() {
    let (mut state, keys, now) = ready_group(3, ONE_FOR_ALL);
    state.exited(keys[1], exit(1), now, 0);
    assert_eq!(stops(&mut state), vec![keys[0], keys[2]]);
    for &k in &[keys[0], keys[2]] {
        let id = state.workers[&k].id.clone();
        state.exited(k, exit(0), now, 0);
        assert_eq!(state.workers[&k].phase, Phase::Restarting);
        state.timer(k, Timer::Respawn, now);
        let respawned = spawn_of(&state.take_effects());
        assert_eq!(state.workers[&respawned].id, id);
    }
}

#[test]
fn a_worker_stopped_for_one_for_all_is_not_respawned_once_its_group_stops_or_shrinks() {
    let (mut state, keys, now) = ready_group(3, ONE_FOR_ALL);
    state.exited(keys[1], exit(1), now, 0);
    state.scale("g", 2, now).unwrap();
    state.exited(keys[2], exit(0), now, 0);
    assert!(
        !state.workers.contains_key(&keys[2]),
        "index 3 is past the target"
    );
    state.begin_stop(None, true);
    state.exited(keys[0], exit(0), now, 0);
    assert!(!state.workers.contains_key(&keys[0]), "the group stopped");
}

#[test]
fn a_worker_stopped_for_one_for_all_leaves_its_slot_to_a_replacement_that_became_ready() {
    let (mut state, keys, now) = ready_group(2, ONE_FOR_ALL);
    state.replace_worker("g#1", now).unwrap();
    let new = spawn_of(&state.take_effects());
    assert!(state.adopt(new, spawned(200, now)));
    state.exited(keys[1], exit(1), now, 0);
    assert_eq!(stops(&mut state), vec![keys[0]]);
    // The replacement becomes ready while the old g#1 is still stopping, then the old one ends.
    state.timer(new, Timer::Warmup, now);
    state.exited(keys[0], exit(0), now, 0);
    assert!(!state.workers.contains_key(&keys[0]));
    let slot: Vec<Key> = state
        .keys_of("g")
        .into_iter()
        .filter(|k| state.workers[k].index == 1)
        .collect();
    assert_eq!(slot, vec![new]);
}

#[test]
fn a_worker_stopped_for_one_for_all_respawns_after_the_restart_delay_as_a_first_attempt() {
    let extra =
        r#", "restart": "always", "restart_delay_ms": 500, "restart_strategy": "one_for_all""#;
    let (mut state, keys, now) = ready_group(2, extra);
    state.exited(keys[1], exit(1), now, 0);
    assert_eq!(stops(&mut state), vec![keys[0]]);
    state.events.drain(0);
    // g#1 ends 100 ms later: its respawn is due 500 ms after that, at 600 ms.
    state.exited(keys[0], exit(0), now + ms(100), 0);
    let restarting = restarts(state.events.drain(0).into_iter().map(|e| e.kind));
    assert_eq!(restarting, vec![("g#1".to_string(), 1, 500)]);
    run_until(&mut state, now + ms(599));
    let ids = |state: &mut State| -> Vec<String> {
        let keys = spawn_keys(&state.take_effects());
        keys.iter().map(|k| state.workers[k].id.clone()).collect()
    };
    assert_eq!(ids(&mut state), vec!["g#2".to_string()]);
    run_until(&mut state, now + ms(600));
    assert_eq!(ids(&mut state), vec!["g#1".to_string()]);
}
