//! The transitions the host's calls make (start, stop, force, scale, start_work), without
//! processes: the events, effects and answers checked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::parse_groups;
use crate::core::effects::Effect;
use crate::core::plan::Plan;
use crate::core::state::State;
use crate::core::test_support::{kills, plan_of, ready_group, spawn_keys, spawned};
use crate::core::worker::{ExitStatus, Key, Phase};
use crate::error::Error;
use crate::events::{EventKind, StopMode};
use crate::protocol::to_worker;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn events(state: &mut State) -> Vec<EventKind> {
    state.events.drain(0).into_iter().map(|e| e.kind).collect()
}

fn failed(state: &mut State, key: Key, now: Instant) {
    let status = ExitStatus {
        code: Some(1),
        signal: None,
        oom_killed: false,
    };
    state.exited(key, status, now, 0);
}

/// Configures group "h" (one worker of /bin/true) beside the state's groups, without starting it.
fn configure_h(state: &mut State) {
    let h = parse_groups(r#"[{"name": "h", "argv": ["/bin/true"]}]"#)
        .unwrap()
        .remove(0);
    state.config.insert("h".into(), h);
}

/// A group "g" of `workers` whose start has begun: its workers are being spawned.
fn starting(workers: u32) -> (State, Vec<Key>, Arc<Plan>) {
    let json = format!(
        r#"[{{"name": "g", "argv": ["/bin/true"], "workers": {workers}, "readiness": "notify"}}]"#
    );
    let spec = parse_groups(&json).unwrap().remove(0);
    let mut state = State::new(64);
    state.config.insert("g".into(), spec.clone());
    let plan = plan_of(spec);
    let start = state.begin_start(vec![Arc::clone(&plan)]);
    (state, start.iter().map(|j| j.key).collect(), plan)
}

// `start_groups` lets the core go while it spawns: a `scale` or a `restart_groups` from another
// thread may come in meanwhile. When the start then fails, its groups are left stopped, and
// nothing those began may go on running or spawning in them.

#[test]
fn a_failed_start_keeps_no_worker_a_scale_added_meanwhile() {
    let (mut state, start, _) = starting(2);
    let now = Instant::now();
    state.scale("g", 3, now).unwrap();
    let scaled = spawn_keys(&state.take_effects());
    assert_eq!(scaled.len(), 1);
    // The start: its first worker spawned, its second could not be.
    assert!(state.adopt(start[0], spawned(100, now)));
    state.remove(start[1]);
    state.finish_start(&["g".to_string()], 1, false);
    // What start_groups does then: it kills the workers it adopted.
    state.begin_force_keys(&start[..1]);
    assert!(!state.groups["g"].started);
    assert_eq!(kills(&mut state), [start[0]]);
    // The scaled worker's process arrives: not adopted, so the runtime kills it.
    assert!(!state.adopt(scaled[0], spawned(102, now)));
}

#[test]
fn a_failed_start_ends_a_rollout_begun_meanwhile() {
    let (mut state, start, plan) = starting(2);
    let now = Instant::now();
    state
        .begin_rollout("g", plan, Default::default(), now)
        .unwrap();
    // The start's workers had no process yet: the rollout forgot them for its own.
    let surge = spawn_keys(&state.take_effects());
    assert_eq!(surge.len(), 2);
    assert!(start.iter().all(|k| !state.workers.contains_key(k)));
    assert!(state.adopt(surge[0], spawned(300, now)));
    // The start fails all the same (a spawn that never answered).
    state.finish_start(&["g".to_string()], 0, false);
    state.begin_force_keys(&start);
    assert!(!state.groups["g"].started);
    assert!(state.groups["g"].running_rollout().is_none());
    assert_eq!(kills(&mut state), [surge[0]]);
    assert!(!state.adopt(surge[1], spawned(301, now)));
    // The first one says it is ready: it takes no slot and makes no room for another.
    state.line(surge[0], crate::core::Line::Ready, now, 0);
    assert_eq!(spawn_keys(&state.take_effects()), Vec::<Key>::new());
    assert_eq!(state.readiness(), crate::core::state::Readiness::NoWorkers);
}

#[test]
fn a_closed_or_handed_over_state_refuses_calls() {
    let (mut state, _, _) = ready_group(1, "");
    assert!(state.check_open().is_ok());
    state.handed_over = true;
    assert!(matches!(state.check_open(), Err(Error::InvalidHandle(_))));
    state.handed_over = false;
    state.closed = true;
    assert!(matches!(state.check_open(), Err(Error::InvalidHandle(_))));
}

#[test]
fn names_are_known_when_configured_or_still_running() {
    let (mut state, _, _) = ready_group(1, "");
    configure_h(&mut state);
    assert!(state.check_known(&["g", "h"]).is_ok());
    assert!(matches!(
        state.check_known(&["g", "nope"]),
        Err(Error::UnknownGroup(n)) if n == "nope"
    ));
    // A group dropped from the configuration whose workers still run is known.
    state.config.remove("g");
    assert!(state.check_known(&["g"]).is_ok());
    // Its configuration is gone, though.
    assert!(matches!(
        state.specs_of(&["g"]),
        Err(Error::UnknownGroup(_))
    ));
}

#[test]
fn specs_of_names_each_group_once_in_order() {
    let (mut state, _, _) = ready_group(1, "");
    configure_h(&mut state);
    let names: Vec<String> = state
        .specs_of(&["h", "g", "h"])
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["h", "g"]);
}

#[test]
fn removals_are_counted() {
    let (mut state, keys, _) = ready_group(3, "");
    let before = state.removed;
    state.begin_force(None);
    let now = Instant::now();
    for &key in &keys {
        state.exited(key, ExitStatus::default(), now, 0);
    }
    assert_eq!(state.removed, before + 3);
    assert!(state.workers.is_empty());
}

#[test]
fn a_finished_start_is_announced_with_its_counts() {
    let (mut state, _, _) = ready_group(2, "");
    state.finish_start(&["g".to_string()], 2, true);
    let evs = events(&mut state);
    assert!(
        matches!(
            &evs[..],
            [EventKind::SupervisorStartGroups {
                group_count: 1,
                worker_count: 2
            }]
        ),
        "{evs:?}"
    );
    assert!(state.groups["g"].started);
}

#[test]
fn start_work_needs_every_worker_ready_and_sends_start_to_each_once() {
    let json = r#"[{"name": "g", "argv": ["/bin/true"], "workers": 2, "warmup_ms": 100,
                    "restart": "always", "restart_delay_ms": 10}]"#;
    let spec = parse_groups(json).unwrap().remove(0);
    let mut state = State::new(64);
    state.config.insert("g".into(), spec.clone());
    let keys: Vec<Key> = state
        .begin_start(vec![plan_of(spec)])
        .iter()
        .map(|j| j.key)
        .collect();
    let t0 = Instant::now();
    for (i, &k) in keys.iter().enumerate() {
        assert!(state.adopt(k, spawned(100 + i as i32, t0)));
    }
    state.take_effects();
    // Nobody is ready yet: refused, and nothing is sent.
    let err = state.start_work(&["g"]).unwrap_err();
    assert!(
        matches!(&err, Error::NotReady(m) if m.contains("g#1") && m.contains("g#2")),
        "{err:?}"
    );
    assert!(state.take_effects().is_empty());
    // One is ready, the other not yet: still refused, naming only the one not ready.
    state.mark_ready(keys[0], t0);
    let err = state.start_work(&["g"]).unwrap_err();
    assert!(
        matches!(&err, Error::NotReady(m) if !m.contains("g#1") && m.contains("g#2")),
        "{err:?}"
    );
    state.mark_ready(keys[1], t0);
    events(&mut state);
    state.start_work(&["g", "g"]).unwrap();
    let starts: Vec<Key> = state
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send { key, line } if line == to_worker::START => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(starts, keys);
    let evs = events(&mut state);
    assert!(
        matches!(
            &evs[..],
            [EventKind::SupervisorStartWork {
                group_count: 1,
                worker_count: 2
            }]
        ),
        "{evs:?}"
    );
    // A worker respawned later gets START at once.
    failed(&mut state, keys[0], t0);
    state.timer(keys[0], crate::core::timers::Timer::Respawn, t0 + ms(10));
    let new = spawn_keys(&state.take_effects());
    assert_eq!(new.len(), 1);
    assert!(state.adopt(new[0], spawned(300, t0 + ms(10))));
    assert!(state.take_effects().iter().any(
        |e| matches!(e, Effect::Send { key, line } if *key == new[0] && line == to_worker::START)
    ));
}

#[test]
fn start_work_of_a_group_without_workers_is_refused() {
    let (mut state, _, _) = ready_group(1, "");
    configure_h(&mut state);
    assert!(matches!(
        state.start_work(&["g", "h"]),
        Err(Error::NotReady(m)) if m.contains("h#*")
    ));
    assert!(state.take_effects().is_empty());
}

#[test]
fn a_graceful_stop_follows_stop_signal_and_kill_mode() {
    let (mut state, keys, _) = ready_group(1, r#", "stop_signal": "SIGINT", "kill_mode": "mixed""#);
    assert_eq!(state.begin_stop(None, false), keys);
    assert!(matches!(
        state.take_effects()[..],
        [Effect::Stop { key, drain: false, signal: libc::SIGINT, group: false }] if key == keys[0]
    ));
    let (mut state, keys, _) = ready_group(1, "");
    assert_eq!(state.begin_stop(Some(&["g".to_string()]), true), keys);
    assert!(matches!(
        state.take_effects()[..],
        [Effect::Stop { key, drain: true, signal: libc::SIGTERM, group: true }] if key == keys[0]
    ));
    let evs = events(&mut state);
    assert!(matches!(
        &evs[..],
        [EventKind::WorkerStopping {
            mode: StopMode::Graceful,
            pid: 100,
            ..
        }]
    ));
    // Asked once: a second stop sends nothing more.
    state.begin_stop(None, true);
    assert!(state.take_effects().is_empty());
    assert!(events(&mut state).is_empty());
}

#[test]
fn a_worker_is_killed_once_and_only_while_it_runs() {
    let (mut state, keys, _) = ready_group(2, "");
    assert_eq!(state.begin_force(None), keys);
    assert_eq!(kills(&mut state), keys);
    let evs = events(&mut state);
    assert_eq!(evs.len(), 2);
    assert!(evs.iter().all(|e| matches!(
        e,
        EventKind::WorkerStopping {
            mode: StopMode::Forced,
            ..
        }
    )));
    // Forced already: nothing again.
    assert_eq!(state.begin_force_keys(&keys), keys);
    assert!(kills(&mut state).is_empty());
    assert!(events(&mut state).is_empty());
}

#[test]
fn a_graceful_stop_can_be_forced_later() {
    let (mut state, keys, _) = ready_group(1, "");
    state.begin_stop(None, true);
    state.take_effects();
    events(&mut state);
    assert_eq!(state.begin_force_keys(&keys), keys);
    assert_eq!(kills(&mut state), keys);
    assert_eq!(
        state.workers[&keys[0]].phase,
        Phase::Stopping(StopMode::Forced)
    );
}

#[test]
fn a_stop_forgets_workers_without_a_process() {
    let extra = r#", "restart": "always", "restart_delay_ms": 1000"#;
    let (mut state, keys, now) = ready_group(2, extra);
    failed(&mut state, keys[0], now);
    assert_eq!(state.workers[&keys[0]].phase, Phase::Restarting);
    // Only the running one is waited for; the one waiting for its respawn is gone.
    assert_eq!(state.begin_stop(None, true), [keys[1]]);
    assert!(!state.workers.contains_key(&keys[0]));
    let (mut state, keys, now) = ready_group(2, extra);
    failed(&mut state, keys[1], now);
    assert_eq!(state.begin_force(None), [keys[0]]);
    assert!(!state.workers.contains_key(&keys[1]));
}

#[test]
fn the_first_worker_left_is_found() {
    let (mut state, keys, now) = ready_group(2, "");
    assert_eq!(state.first_left(&keys).map(|w| w.pid), Some(100));
    state.begin_force(None);
    state.exited(keys[0], ExitStatus::default(), now, 0);
    assert_eq!(state.first_left(&keys).map(|w| w.pid), Some(101));
    state.exited(keys[1], ExitStatus::default(), now, 0);
    assert!(state.first_left(&keys).is_none());
}

#[test]
fn an_unkillable_worker_is_reported() {
    let (mut state, keys, _) = ready_group(1, "");
    state.unkillable(keys[0], "EPERM".into());
    let evs = events(&mut state);
    assert!(
        matches!(&evs[..], [EventKind::WorkerUnkillable { error, pid: 100, .. }] if error == "EPERM"),
        "{evs:?}"
    );
}

#[test]
fn scaling_a_configured_group_never_started_is_an_invalid_argument() {
    let (mut state, _, now) = ready_group(1, "");
    configure_h(&mut state);
    assert!(matches!(
        state.scale("h", 2, now),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        state.scale("nope", 2, now),
        Err(Error::UnknownGroup(_))
    ));
}

#[test]
fn a_scale_down_forgets_workers_without_a_process_and_stops_the_others_in_time() {
    let extra = r#", "restart": "always", "restart_delay_ms": 1000, "stop_timeout_ms": 500"#;
    let (mut state, keys, now) = ready_group(3, extra);
    failed(&mut state, keys[2], now);
    state.take_effects();
    state.scale("g", 1, now).unwrap();
    let stops: Vec<Key> = state
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Stop { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(stops, [keys[1]]);
    assert!(!state.workers.contains_key(&keys[2]));
    assert!(state.workers[&keys[0]].ready());
    // Killed once its stop_timeout_ms is over, not before.
    for (key, timer) in state.timers.pop_due(now + ms(499)) {
        state.timer(key, timer, now + ms(499));
    }
    assert!(kills(&mut state).is_empty());
    assert_eq!(state.next_deadline(), Some(now + ms(500)));
    for (key, timer) in state.timers.pop_due(now + ms(500)) {
        state.timer(key, timer, now + ms(500));
    }
    assert_eq!(kills(&mut state), [keys[1]]);
}
