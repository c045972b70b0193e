//! What a worker record tells of itself: its snapshot, its state and its events.

use std::time::{Duration, Instant};

use crate::core::test_support::{ready_group, spawned};
use crate::core::worker::{ExitStatus, Phase};
use crate::core::Spawned;
use crate::events::{ControlChannel, EventKind, StopStrategy};
use crate::snapshot::WorkerState;

#[test]
fn a_status_is_lost_only_without_both_code_and_signal() {
    let status = |code, signal| ExitStatus {
        code,
        signal,
        oom_killed: false,
    };
    assert!(status(None, None).lost());
    assert!(!status(Some(0), None).lost());
    assert!(!status(None, Some(9)).lost());
}

#[test]
fn a_lost_status_is_told_in_the_events() {
    let (mut state, keys, now) = ready_group(2, "");
    state.begin_stop(None, true);
    state.events.drain(0);
    state.exited(keys[0], ExitStatus::default(), now, 0);
    let killed = ExitStatus {
        code: None,
        signal: Some(libc::SIGTERM),
        oom_killed: false,
    };
    state.exited(keys[1], killed, now, 0);
    let unavailable: Vec<bool> = state
        .events
        .drain(0)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::WorkerStopped {
                status_unavailable, ..
            } => Some(status_unavailable),
            _ => None,
        })
        .collect();
    assert_eq!(unavailable, [true, false]);
}

#[test]
fn the_snapshot_follows_the_phase() {
    let (mut state, keys, now) = ready_group(1, r#", "restart": "always""#);
    let key = keys[0];
    let later = now + Duration::from_millis(1500);
    let snap = state.workers[&key].snapshot(later);
    assert!(snap.alive && snap.ready);
    assert_eq!(snap.state, WorkerState::Ready);
    assert_eq!((snap.pid, snap.os_pid, snap.pgid), (100, 100, 100));
    assert_eq!(snap.uptime_ms, Some(1500));
    assert_eq!((snap.exit_code, snap.signal), (None, None));
    let w = state.workers.get_mut(&key).unwrap();
    w.phase = Phase::Starting;
    let snap = w.snapshot(later);
    assert!(snap.alive && !snap.ready);
    assert_eq!(snap.state, WorkerState::Starting);
    w.phase = Phase::Ready {
        last_heartbeat: now,
    };
    // Ended unasked: its status shows, and no uptime.
    let status = ExitStatus {
        code: Some(4),
        signal: None,
        oom_killed: false,
    };
    state.exited(key, status, later, 0);
    let snap = state.workers[&key].snapshot(later);
    assert!(!snap.alive && !snap.ready);
    assert_eq!(snap.state, WorkerState::Restarting);
    assert_eq!((snap.exit_code, snap.uptime_ms), (Some(4), None));
}

#[test]
fn the_state_of_each_phase() {
    let (mut state, keys, now) = ready_group(1, "");
    let w = state.workers.get_mut(&keys[0]).unwrap();
    let cases = [
        (Phase::Spawning, WorkerState::Starting),
        (Phase::Starting, WorkerState::Starting),
        (
            Phase::Ready {
                last_heartbeat: now,
            },
            WorkerState::Ready,
        ),
        (
            Phase::Stopping(crate::events::StopMode::Graceful),
            WorkerState::Stopping,
        ),
        (
            Phase::Killed(crate::events::ExitReason::ReadyTimeout),
            WorkerState::Stopping,
        ),
        (Phase::Restarting, WorkerState::Restarting),
        (Phase::Failed, WorkerState::Failed),
    ];
    for (phase, expected) in cases {
        w.phase = phase;
        assert_eq!(w.state(), expected, "{phase:?}");
    }
}

#[test]
fn a_worker_with_a_channel_is_stopped_by_an_event() {
    let (mut state, _, now) = ready_group(1, "");
    state.scale("g", 2, now).unwrap();
    let new = crate::core::test_support::spawn_of(&state.take_effects());
    let s = Spawned {
        has_channel: true,
        ..spawned(7, Instant::now())
    };
    assert!(state.adopt(new, s));
    let events = state.events.drain(0);
    assert!(
        matches!(
            &events.last().unwrap().kind,
            EventKind::WorkerSpawned {
                group_name,
                worker_id,
                pid: 7,
                stop_strategy: StopStrategy::Event,
                control_channel: ControlChannel::Socketpair,
                ..
            } if group_name == "g" && worker_id == "g#2"
        ),
        "{events:?}"
    );
    let snap = state.workers[&new].snapshot(now);
    assert!(snap.has_stop_event);
    assert_eq!(snap.stop_strategy, StopStrategy::Event);
    assert_eq!(snap.control_channel, ControlChannel::Socketpair);
}
