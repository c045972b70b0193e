//! The rules of `signal_group` and `reload_groups`, without processes.

use std::time::{Duration, Instant};

use crate::config::parse_groups;
use crate::core::effects::Effect;
use crate::core::notify::NotifyMessage;
use crate::core::state::{Readiness, State};
use crate::core::test_support::{kills, plan_of, ready_group, spawned};
use crate::core::timers::Timer;
use crate::core::worker::Key;
use crate::error::Error;
use crate::events::EventKind;
use crate::snapshot::WorkerState;

/// A started group "d" of one ready sd_notify worker (pid 42).
fn ready_worker(extra: &str) -> (State, Key, Instant) {
    let json = format!(
        r#"[{{"name": "d", "argv": ["/bin/true"], "readiness": "sd_notify"{extra}}},
            {{"name": "idle", "argv": ["/bin/true"]}}]"#
    );
    let mut groups = parse_groups(&json).unwrap();
    let mut state = State::new(64);
    for g in &groups {
        state.config.insert(g.name.clone(), g.clone());
    }
    let spec = groups.remove(0);
    let plan = plan_of(spec);
    let key = state.begin_start(vec![plan])[0].key;
    let now = Instant::now();
    assert!(state.adopt(key, spawned(42, now)));
    state.notify(key, message("READY=1"), now, 0);
    state.events.drain(0);
    state.take_effects();
    (state, key, now)
}

fn message(text: &str) -> NotifyMessage {
    NotifyMessage::parse(text.as_bytes()).unwrap()
}

fn kinds(state: &mut State) -> Vec<&'static str> {
    state
        .events
        .drain(0)
        .into_iter()
        .map(|e| match e.kind {
            EventKind::WorkerSignaled { .. } => "worker_signaled",
            EventKind::WorkerReloading { .. } => "worker_reloading",
            EventKind::WorkerReloaded { .. } => "worker_reloaded",
            _ => "other",
        })
        .collect()
}

#[test]
fn signal_group_follows_kill_mode_and_checks_the_group() {
    let (mut state, key, _) = ready_worker(r#", "kill_mode": "mixed""#);
    state.signal_group("d", libc::SIGUSR1).unwrap();
    assert_eq!(kinds(&mut state), ["worker_signaled"]);
    assert!(matches!(
        state.take_effects()[..],
        [Effect::SignalAs { key: k, signal: libc::SIGUSR1, group: false }] if k == key
    ));
    assert!(matches!(
        state.signal_group("nope", 10),
        Err(Error::UnknownGroup(_))
    ));
    assert!(matches!(
        state.signal_group("idle", 10),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_reload_holds_wait_ready_until_ready_follows_reloading() {
    let (mut state, key, now) = ready_worker("");
    assert_eq!(state.readiness(), Readiness::AllReady);
    state.reload_groups(&["d"], now).unwrap();
    assert!(matches!(
        state.take_effects()[..],
        [Effect::SignalAs {
            signal: libc::SIGHUP,
            group: true,
            ..
        }]
    ));
    assert_eq!(state.readiness(), Readiness::Pending);
    assert_eq!(state.workers[&key].state(), WorkerState::Reloading);
    // A READY=1 before RELOADING=1 is an old one: the reload goes on.
    state.notify(key, message("READY=1"), now, 0);
    assert_eq!(state.readiness(), Readiness::Pending);
    state.notify(key, message("RELOADING=1\nMONOTONIC_USEC=1"), now, 0);
    assert_eq!(state.readiness(), Readiness::Pending);
    let later = now + Duration::from_millis(400);
    state.notify(key, message("READY=1"), later, 0);
    assert_eq!(state.readiness(), Readiness::AllReady);
    assert_eq!(state.workers[&key].state(), WorkerState::Ready);
    let events = state.events.drain(0);
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::WorkerReloaded {
            duration_ms: 400,
            pid: 42,
            ..
        })
    ));
}

#[test]
fn a_reload_not_done_within_ready_timeout_fails_the_worker() {
    let (mut state, key, now) = ready_worker(r#", "ready_timeout_ms": 1000"#);
    state.reload_groups(&["d"], now).unwrap();
    assert_eq!(kinds(&mut state), ["worker_reloading"]);
    state.take_effects();
    state.timer(key, Timer::ReloadTimeout, now + Duration::from_millis(999));
    assert!(state.take_effects().is_empty());
    state.timer(key, Timer::ReloadTimeout, now + Duration::from_millis(1000));
    assert!(matches!(
        state.take_effects()[..],
        [Effect::Signal {
            signal: libc::SIGKILL,
            ..
        }]
    ));
}

#[test]
fn reload_groups_is_all_or_nothing() {
    let (mut state, _, now) = ready_worker("");
    assert!(matches!(
        state.reload_groups(&["d", "idle"], now),
        Err(Error::InvalidArgument(_))
    ));
    assert!(state.take_effects().is_empty());
    assert_eq!(state.readiness(), Readiness::AllReady);
}

#[test]
fn a_stopped_group_is_neither_signaled_nor_reloaded() {
    let (mut state, _, now) = ready_worker("");
    state.begin_stop(Some(&["d".to_string()]), false);
    state.take_effects();
    state.events.drain(0);
    assert!(matches!(
        state.signal_group("d", libc::SIGUSR1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        state.reload_groups(&["d"], now),
        Err(Error::InvalidArgument(_))
    ));
    assert!(state.take_effects().is_empty());
    assert!(kinds(&mut state).is_empty());
}

#[test]
fn only_a_ready_sd_notify_worker_is_waited_for_through_a_reload() {
    // A warm-up worker cannot say it reloaded: it gets the signal, and wait_ready need not wait.
    let (mut state, _, now) = ready_group(1, "");
    state.reload_groups(&["g"], now).unwrap();
    assert_eq!(kinds(&mut state), ["worker_signaled"]);
    assert_eq!(state.readiness(), Readiness::AllReady);
    // An sd_notify worker not ready yet is waited for as a start, not as a reload.
    let (mut state, keys, now) = ready_group(1, r#", "readiness": "sd_notify""#);
    state.reload_groups(&["g"], now).unwrap();
    assert_eq!(kinds(&mut state), ["worker_signaled"]);
    state.notify(keys[0], message("READY=1"), now, 0);
    assert_eq!(state.readiness(), Readiness::AllReady);
    assert_eq!(state.workers[&keys[0]].state(), WorkerState::Ready);
}

#[test]
fn a_reload_without_a_ready_timeout_never_times_out() {
    let (mut state, key, now) = ready_worker(r#", "ready_timeout_ms": 0"#);
    state.reload_groups(&["d"], now).unwrap();
    state.take_effects();
    let later = now + Duration::from_secs(86_400);
    for (k, timer) in state.timers.pop_due(later) {
        state.timer(k, timer, later);
    }
    assert_eq!(kills(&mut state), Vec::<Key>::new());
    assert_eq!(state.workers[&key].state(), WorkerState::Reloading);
}
