//! The transitions the kernel drives (spawned, exited, a line, a deadline), without processes:
//! a fake clock, made-up pids, and the events, effects and deadlines checked.

use std::time::{Duration, Instant};

use crate::config::Readiness as Mode;
use crate::core::group::RolloutOptions;
use crate::core::state::{Readiness, State};
use crate::core::test_support::{
    kills, restarts, run_until, spawn_keys, spawn_of, spawned, started_group,
};
use crate::core::worker::{ExitStatus, Key, Phase, Role};
use crate::core::Line;
use crate::events::{EventKind, ExitReason, StopMode};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A started group "g" (`test_support::started_group`).
fn started(workers: u32, extra: &str, channel: bool) -> (State, Vec<Key>, Instant) {
    started_group(workers, extra, channel)
}

fn exit_code(code: i32) -> ExitStatus {
    ExitStatus {
        code: Some(code),
        signal: None,
        oom_killed: false,
    }
}

fn killed(oom_killed: bool) -> ExitStatus {
    ExitStatus {
        code: None,
        signal: Some(libc::SIGKILL),
        oom_killed,
    }
}

fn events(state: &mut State) -> Vec<EventKind> {
    state.events.drain(0).into_iter().map(|e| e.kind).collect()
}

/// The reasons of the `worker_failed` events queued.
fn failures(state: &mut State) -> Vec<ExitReason> {
    events(state)
        .into_iter()
        .filter_map(|k| match k {
            EventKind::WorkerFailed { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

#[test]
fn lines_are_parsed_with_or_without_a_carriage_return() {
    assert_eq!(Line::parse(b"READY"), Line::Ready);
    assert_eq!(Line::parse(b"READY\r"), Line::Ready);
    assert_eq!(Line::parse(b"HEARTBEAT"), Line::Heartbeat);
    assert_eq!(Line::parse(b"HEARTBEAT\r"), Line::Heartbeat);
    assert_eq!(Line::parse(b"READY NOW"), Line::Other);
    assert_eq!(Line::parse(b""), Line::Other);
}

#[test]
fn a_process_is_adopted_only_by_a_worker_waiting_for_one() {
    let (mut state, keys, t0) = started(1, "", false);
    // Already has its process.
    assert!(!state.adopt(keys[0], spawned(200, t0)));
    assert_eq!(state.workers[&keys[0]].pid, 100);
    // No such worker.
    assert!(!state.adopt(999, spawned(201, t0)));
    // A worker waiting for its process, but the supervisor is closed.
    state.scale("g", 2, t0).unwrap();
    let new = spawn_of(&state.take_effects());
    state.closed = true;
    assert!(!state.adopt(new, spawned(202, t0)));
    assert_eq!(state.workers[&new].phase, Phase::Spawning);
}

#[test]
fn notify_without_a_channel_falls_back_to_warmup_but_sd_notify_needs_none() {
    let (state, keys, _) = started(1, r#", "readiness": "notify""#, false);
    assert_eq!(state.workers[&keys[0]].readiness, Mode::Warmup);
    let (state, keys, _) = started(1, r#", "readiness": "notify""#, true);
    assert_eq!(state.workers[&keys[0]].readiness, Mode::Notify);
    let (state, keys, _) = started(1, r#", "readiness": "sd_notify""#, false);
    assert_eq!(state.workers[&keys[0]].readiness, Mode::SdNotify);
}

#[test]
fn a_warmup_worker_is_ready_exactly_at_the_end_of_its_warmup() {
    let (mut state, keys, t0) = started(1, r#", "warmup_ms": 500"#, true);
    assert_eq!(state.next_deadline(), Some(t0 + ms(500)));
    // A READY line does not make a warm-up worker ready.
    state.line(keys[0], Line::Ready, t0, 0);
    run_until(&mut state, t0 + ms(499));
    assert_eq!(state.workers[&keys[0]].phase, Phase::Starting);
    run_until(&mut state, t0 + ms(500));
    assert!(state.workers[&keys[0]].ready());
}

#[test]
fn a_worker_not_ready_within_ready_timeout_is_killed_and_fails_for_it() {
    let extra = r#", "readiness": "notify", "ready_timeout_ms": 1000"#;
    let (mut state, keys, t0) = started(1, extra, true);
    assert_eq!(state.next_deadline(), Some(t0 + ms(1000)));
    run_until(&mut state, t0 + ms(999));
    assert!(kills(&mut state).is_empty());
    run_until(&mut state, t0 + ms(1000));
    assert_eq!(kills(&mut state), keys);
    // What it says once killed does not make it ready.
    state.line(keys[0], Line::Ready, t0 + ms(1001), 0);
    assert!(!state.workers[&keys[0]].ready());
    state.exited(keys[0], killed(false), t0 + ms(1002), 0);
    assert_eq!(failures(&mut state), [ExitReason::ReadyTimeout]);
}

#[test]
fn a_ready_timeout_of_zero_arms_no_deadline() {
    let (mut state, keys, t0) = started(1, r#", "readiness": "notify""#, true);
    assert_eq!(state.next_deadline(), None);
    run_until(&mut state, t0 + ms(3_600_000));
    assert!(kills(&mut state).is_empty());
    assert_eq!(state.workers[&keys[0]].phase, Phase::Starting);
}

#[test]
fn an_oom_kill_is_told_from_an_ordinary_exit() {
    let (mut state, keys, t0) = started(2, "", false);
    state.exited(keys[0], killed(true), t0, 0);
    state.exited(keys[1], killed(false), t0, 0);
    assert_eq!(
        failures(&mut state),
        [ExitReason::OomKilled, ExitReason::Exited]
    );
}

#[test]
fn the_last_exit_and_stderr_tail_of_a_failed_worker_are_kept() {
    let (mut state, keys, t0) = started(1, "", false);
    state.output_ended(keys[0], Some(vec!["boom".into()]));
    state.exited(keys[0], exit_code(3), t0, 1234);
    let evs = events(&mut state);
    assert!(
        matches!(&evs[..], [EventKind::WorkerFailed { stderr_tail, exit_code: Some(3), .. }]
            if stderr_tail == &["boom"]),
        "{evs:?}"
    );
    let snap = state.workers[&keys[0]].snapshot(t0);
    let last = snap.last_exit.expect("a last exit");
    assert_eq!(
        (last.exit_code, last.signal, last.reason, last.at_ms),
        (Some(3), None, ExitReason::Exited, 1234)
    );
    assert_eq!(snap.stderr_tail, Some(vec!["boom".to_string()]));
}

#[test]
fn a_protocol_error_is_reported_for_its_worker() {
    let (mut state, keys, _) = started(1, "", true);
    state.protocol_error(keys[0], "line too long".into());
    let evs = events(&mut state);
    assert!(
        matches!(&evs[..], [EventKind::WorkerProtocolError { error, pid: 100, .. }]
            if error == "line too long"),
        "{evs:?}"
    );
}

/// `restart: "on-failure"` with a 100 ms delay.
const ON_FAILURE: &str = r#", "restart": "on-failure", "restart_delay_ms": 100"#;

#[test]
fn on_failure_respawns_after_its_delay_a_failure_but_not_a_clean_exit() {
    let (mut state, keys, t0) = started(2, ON_FAILURE, false);
    state.exited(keys[0], exit_code(0), t0, 0);
    state.exited(keys[1], exit_code(1), t0, 0);
    let restarting = restarts(events(&mut state));
    assert_eq!(restarting, [("g#2".to_string(), 1, 100)]);
    assert_eq!(state.workers[&keys[0]].phase, Phase::Failed);
    assert_eq!(state.workers[&keys[1]].phase, Phase::Restarting);
    // The respawn is due at the delay, not before.
    run_until(&mut state, t0 + ms(99));
    assert!(state.take_effects().is_empty());
    assert_eq!(state.next_deadline(), Some(t0 + ms(100)));
    run_until(&mut state, t0 + ms(100));
    let new = spawn_of(&state.take_effects());
    assert!(!state.workers.contains_key(&keys[1]));
    let w = &state.workers[&new];
    assert_eq!((w.index, w.restarts, w.phase), (2, 1, Phase::Spawning));
}

#[test]
fn a_timeout_kill_is_a_failure_whatever_the_status() {
    // Killed for its ready timeout, it exits 0 before the SIGKILL lands: still a failure.
    let extra = format!(r#"{ON_FAILURE}, "readiness": "notify", "ready_timeout_ms": 10"#);
    let (mut state, keys, t0) = started(1, &extra, true);
    run_until(&mut state, t0 + ms(10));
    state.exited(keys[0], exit_code(0), t0 + ms(10), 0);
    assert_eq!(state.workers[&keys[0]].phase, Phase::Restarting);
}

#[test]
fn a_group_left_stopped_by_its_start_respawns_nothing() {
    let extra = r#", "restart": "always", "restart_delay_ms": 100"#;
    let (mut state, keys, t0) = started(2, extra, false);
    // One fails while the start is still going on: its respawn is due in 100 ms.
    state.exited(keys[0], exit_code(1), t0, 0);
    assert_eq!(state.workers[&keys[0]].phase, Phase::Restarting);
    events(&mut state);
    // The start fails: the group is left stopped, and its respawn does not happen.
    state.finish_start(&["g".to_string()], 2, false);
    assert_eq!(
        kills(&mut state),
        [keys[1]],
        "the one still running is killed"
    );
    run_until(&mut state, t0 + ms(100));
    assert!(spawn_keys(&state.take_effects()).is_empty());
    // Its exit is not respawned either.
    state.exited(keys[1], exit_code(1), t0 + ms(200), 0);
    assert!(!state.workers.contains_key(&keys[1]));
    assert!(!events(&mut state)
        .iter()
        .any(|k| matches!(k, EventKind::WorkerRestarting { .. })));
}

#[test]
fn too_many_respawns_fail_the_group_and_kill_the_others() {
    let extra = r#", "restart": "always", "max_restarts": 0"#;
    let (mut state, keys, t0) = started(2, extra, false);
    state.exited(keys[0], exit_code(1), t0, 0);
    let evs = events(&mut state);
    assert!(
        evs.iter()
            .any(|k| matches!(k, EventKind::GroupFailed { restarts: 0, .. })),
        "{evs:?}"
    );
    assert!(evs.iter().any(|k| matches!(
        k,
        EventKind::WorkerStopping { worker_id, mode: StopMode::Forced, .. } if worker_id == "g#2"
    )));
    assert_eq!(kills(&mut state), [keys[1]]);
    assert!(state.groups["g"].failed);
    assert_eq!(state.readiness(), Readiness::Failed);
}

#[test]
fn heartbeats_keep_a_ready_worker_and_silence_kills_it() {
    let extra = r#", "readiness": "notify", "heartbeat_timeout_ms": 1000"#;
    let (mut state, keys, t0) = started(1, extra, true);
    let key = keys[0];
    state.line(key, Line::Ready, t0, 0);
    assert!(state.workers[&key].ready());
    // The first deadline is a timeout after ready, not earlier.
    assert_eq!(state.next_deadline(), Some(t0 + ms(1000)));
    state.line(key, Line::Heartbeat, t0 + ms(600), 600);
    assert_eq!(state.workers[&key].last_heartbeat_ms, Some(600));
    run_until(&mut state, t0 + ms(1000));
    assert!(kills(&mut state).is_empty());
    // Looked at again a timeout after the last heartbeat, not earlier.
    assert_eq!(state.next_deadline(), Some(t0 + ms(1600)));
    run_until(&mut state, t0 + ms(1599));
    assert!(kills(&mut state).is_empty());
    run_until(&mut state, t0 + ms(1600));
    assert_eq!(kills(&mut state), [key]);
    state.exited(key, killed(false), t0 + ms(1601), 0);
    assert_eq!(failures(&mut state), [ExitReason::HeartbeatTimeout]);
}

#[test]
fn a_heartbeat_timeout_of_zero_arms_no_deadline() {
    let (mut state, keys, t0) = started(1, r#", "readiness": "notify""#, true);
    state.line(keys[0], Line::Ready, t0, 0);
    assert_eq!(state.next_deadline(), None);
}

#[test]
fn a_stopped_worker_is_forgotten_once_reaped() {
    let (mut state, keys, t0) = started(1, "", false);
    assert_eq!(state.begin_stop(None, true), keys);
    state.exited(keys[0], exit_code(0), t0, 0);
    let evs = events(&mut state);
    assert!(
        matches!(
            &evs[..],
            [
                EventKind::WorkerStopping { .. },
                EventKind::WorkerStopped {
                    mode: StopMode::Graceful,
                    exit_code: Some(0),
                    ..
                }
            ]
        ),
        "{evs:?}"
    );
    assert!(state.workers.is_empty());
    assert!(state.keys_of("g").is_empty());
}

#[test]
fn a_new_worker_of_a_rollout_that_cannot_be_spawned_halts_it() {
    let (mut state, keys, t0) = started(2, "", false);
    run_until(&mut state, t0 + ms(10_000));
    let plan = state.groups["g"].plan.clone();
    state
        .begin_rollout("g", plan, RolloutOptions::default(), t0)
        .unwrap();
    let surge = spawn_of(&state.take_effects());
    assert_eq!(state.workers[&surge].role, Role::Surge);
    events(&mut state);
    state.spawn_failed(surge, "EAGAIN".into(), t0);
    let evs = events(&mut state);
    assert!(
        matches!(&evs[..], [EventKind::WorkerSpawnFailed { .. }, EventKind::RolloutFailed { reason, .. }]
            if reason == "spawn_failed: EAGAIN"),
        "{evs:?}"
    );
    assert!(!state.workers.contains_key(&surge));
    assert_eq!(state.keys_of("g"), keys);
}

#[test]
fn a_replacement_that_cannot_be_spawned_goes_and_the_old_worker_stays() {
    let (mut state, keys, t0) = started(1, r#", "restart": "always""#, false);
    run_until(&mut state, t0 + ms(10_000));
    state.replace_worker("g#1", t0).unwrap();
    let new = spawn_of(&state.take_effects());
    events(&mut state);
    state.spawn_failed(new, "EAGAIN".into(), t0);
    assert!(!state.workers.contains_key(&new));
    assert_eq!(state.keys_of("g"), keys);
    assert!(state.workers[&keys[0]].ready());
    assert!(state.take_effects().is_empty());
}
