//! The rules of probes, without processes or sockets: thresholds, readiness by probe, unready
//! and ready again, liveness kills, and `probe_failed` only at a change or a crossing.

use std::time::{Duration, Instant};

use crate::core::effects::Effect;
use crate::core::probes::ProbeJob;
use crate::core::state::{Readiness, State};
use crate::core::test_support::{plan_of, ready_group, spawned};
use crate::core::worker::{Key, Phase};
use crate::events::{EventKind, ExitReason, ProbeKind, StopMode};

const READINESS: &str = r#", "readiness_probe": {"tcp": "127.0.0.1:1", "failure_threshold": 3,
    "success_threshold": 2}"#;
const LIVENESS: &str = r#", "liveness_probe": {"tcp": "127.0.0.1:1", "failure_threshold": 2}"#;

fn kinds(state: &mut State) -> Vec<String> {
    state
        .events
        .drain(0)
        .into_iter()
        .map(|e| match e.kind {
            EventKind::ProbeFailed {
                detail, failures, ..
            } => format!("probe_failed {failures} {detail}"),
            EventKind::WorkerUnready { .. } => "worker_unready".into(),
            EventKind::WorkerReady { .. } => "worker_ready".into(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn fail(state: &mut State, key: Key, which: ProbeKind, now: Instant) -> bool {
    state.probe_result(key, which, Err("HTTP 503".into()), now)
}

#[test]
fn a_ready_worker_becomes_unready_at_the_threshold_and_ready_after_enough_successes() {
    let (mut state, keys, now) = ready_group(1, READINESS);
    let k = keys[0];
    let r = ProbeKind::Readiness;
    assert!(fail(&mut state, k, r, now));
    assert!(fail(&mut state, k, r, now));
    assert!(state.workers[&k].ready());
    assert!(fail(&mut state, k, r, now));
    assert!(!state.workers[&k].ready());
    assert_eq!(state.readiness(), Readiness::Pending);
    // Failing on: no event per period.
    for _ in 0..10 {
        assert!(fail(&mut state, k, r, now));
    }
    assert_eq!(
        kinds(&mut state),
        [
            "probe_failed 1 HTTP 503",
            "probe_failed 3 HTTP 503",
            "worker_unready"
        ]
    );
    assert!(state.probe_result(k, r, Ok(()), now));
    assert!(!state.workers[&k].ready(), "one success of the two needed");
    assert!(state.probe_result(k, r, Ok(()), now));
    assert!(state.workers[&k].ready());
    assert_eq!(state.readiness(), Readiness::AllReady);
    // A success between failures starts the count again.
    fail(&mut state, k, r, now);
    fail(&mut state, k, r, now);
    state.probe_result(k, r, Ok(()), now);
    fail(&mut state, k, r, now);
    fail(&mut state, k, r, now);
    assert!(state.workers[&k].ready());
    assert_eq!(
        kinds(&mut state),
        [
            "worker_ready",
            "probe_failed 1 HTTP 503",
            "probe_failed 1 HTTP 503"
        ]
    );
    assert!(state.snapshot_json_ready(k));
}

#[test]
fn a_probe_worker_is_ready_only_once_its_readiness_probe_passes() {
    let extra = format!(r#", "readiness": "probe"{READINESS}"#);
    let (mut state, keys, now) = ready_group(1, &extra);
    let k = keys[0];
    assert_eq!(
        state.workers[&k].phase,
        Phase::Starting,
        "warm-up does not count"
    );
    let r = ProbeKind::Readiness;
    state.probe_result(k, r, Ok(()), now);
    assert_eq!(state.workers[&k].phase, Phase::Starting);
    state.probe_result(k, r, Ok(()), now);
    assert!(state.workers[&k].ready());
    assert_eq!(kinds(&mut state), ["worker_ready"]);
}

#[test]
fn the_liveness_threshold_kills_the_worker_which_fails_with_liveness_failed() {
    let (mut state, keys, now) = ready_group(1, &format!("{LIVENESS}, \"restart\": \"always\""));
    let k = keys[0];
    let l = ProbeKind::Liveness;
    fail(&mut state, k, l, now);
    assert!(state.take_effects().is_empty());
    assert!(fail(&mut state, k, l, now));
    let kills = state
        .take_effects()
        .into_iter()
        .filter(|e| matches!(e, Effect::Signal { signal, .. } if *signal == libc::SIGKILL))
        .count();
    assert_eq!(kills, 1);
    assert_eq!(
        state.workers[&k].phase,
        Phase::Killed(ExitReason::LivenessFailed)
    );
    // A killed worker is probed no more.
    assert!(!fail(&mut state, k, l, now));
    state.exited(k, Default::default(), now, 0);
    let failed: Vec<_> = state
        .events
        .drain(0)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::WorkerFailed { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [ExitReason::LivenessFailed]);
    assert_eq!(state.workers[&k].phase, Phase::Restarting);
}

#[test]
fn adopting_a_process_hands_its_probes_over_and_starts_their_counts_afresh() {
    let extra = format!("{READINESS}{LIVENESS}");
    let (mut state, keys, now) = ready_group(1, &extra);
    let k = keys[0];
    fail(&mut state, k, ProbeKind::Readiness, now);
    state.exited(k, Default::default(), now, 0);
    state.take_effects();
    // Respawned at once (restart delay aside): the new key's adopt sends a probe job.
    let w = state.workers.get_mut(&k).unwrap();
    w.phase = Phase::Restarting;
    state.timer(k, crate::core::timers::Timer::Respawn, now);
    let key = crate::core::test_support::spawn_of(&state.take_effects());
    assert!(state.adopt(key, spawned(200, now)));
    let jobs: Vec<_> = state
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Probe(job) => Some(job),
            _ => None,
        })
        .collect();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].key, key);
    assert_eq!(jobs[0].probes.len(), 2);
    assert_eq!(state.workers[&key].probes, Default::default());
}

/// A process that arrives while a handover is prepared (a spawn in flight, landed by the
/// prepare) gets no probe job: no probe runs between the images, and `resume_probes` probes it
/// with every other worker once the supervisor resumes.
#[test]
fn a_process_adopted_during_a_handover_is_probed_only_once_the_supervisor_resumes() {
    let (mut state, keys, now) = ready_group(1, READINESS);
    let k = keys[0];
    state.exited(k, Default::default(), now, 0);
    state.take_effects();
    state.workers.get_mut(&k).unwrap().phase = Phase::Restarting;
    state.timer(k, crate::core::timers::Timer::Respawn, now);
    let key = crate::core::test_support::spawn_of(&state.take_effects());
    state.handed_over = true;
    assert!(state.adopt(key, spawned(200, now)));
    let probes = |effects: Vec<Effect>| {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Probe(job) => Some(job.key),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(probes(state.take_effects()), Vec::<Key>::new());
    state.handed_over = false;
    state.resume_probes(now);
    assert_eq!(probes(state.take_effects()), [key]);
}

#[test]
fn passing_readiness_probes_of_a_ready_worker_say_nothing() {
    let (mut state, keys, now) = ready_group(1, READINESS);
    for _ in 0..3 {
        assert!(state.probe_result(keys[0], ProbeKind::Readiness, Ok(()), now));
    }
    assert!(kinds(&mut state).is_empty());
}

#[test]
fn a_readiness_probe_makes_ready_only_a_worker_whose_readiness_is_probe() {
    let extra = format!(r#", "readiness": "sd_notify"{READINESS}"#);
    let (mut state, keys, now) = ready_group(1, &extra);
    for _ in 0..3 {
        state.probe_result(keys[0], ProbeKind::Readiness, Ok(()), now);
    }
    assert_eq!(state.workers[&keys[0]].phase, Phase::Starting);
    assert!(kinds(&mut state).is_empty());
}

#[test]
fn a_probe_first_runs_its_initial_delay_after_the_process_is_adopted() {
    let json = r#"[{"name": "g", "argv": ["/bin/true"],
        "readiness_probe": {"tcp": "127.0.0.1:1", "initial_delay_ms": 500}}]"#;
    let spec = crate::config::parse_groups(json).unwrap().remove(0);
    let mut state = State::new(64);
    let key = state.begin_start(vec![plan_of(spec)])[0].key;
    let now = Instant::now();
    assert!(state.adopt(key, spawned(100, now)));
    let firsts: Vec<Instant> = probe_jobs(state.take_effects())
        .iter()
        .flat_map(|j| j.probes.iter().map(|p| p.first_at))
        .collect();
    assert_eq!(firsts, [now + Duration::from_millis(500)]);
}

#[test]
fn after_a_handover_only_the_running_workers_are_probed_again() {
    let (mut state, keys, now) = ready_group(3, READINESS);
    state.scale("g", 2, now).unwrap();
    assert_eq!(
        state.workers[&keys[2]].phase,
        Phase::Stopping(StopMode::Graceful)
    );
    state.begin_force_keys(&[keys[1]]);
    state.take_effects();
    state.resume_probes(now);
    let probed: Vec<Key> = probe_jobs(state.take_effects())
        .iter()
        .map(|j| j.key)
        .collect();
    assert_eq!(probed, [keys[0]], "neither the stopping nor the killed one");
}

fn probe_jobs(effects: Vec<Effect>) -> Vec<ProbeJob> {
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Probe(job) => Some(job),
            _ => None,
        })
        .collect()
}

impl State {
    /// The snapshot's `ready` of worker `key`.
    fn snapshot_json_ready(&self, key: Key) -> bool {
        self.workers[&key].snapshot(Instant::now()).ready
    }
}
