//! The core's rules without processes: a fake clock, made-up pids, and the effects checked.

use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::parse_groups;
use crate::core::effects::Effect;
use crate::core::lifecycle::{Line, Spawned};
use crate::core::state::Readiness;
use crate::core::test_support::spawn_keys;
use crate::core::worker::ExitStatus;
use crate::events::EventKind;

fn plan(extra: &str) -> Arc<Plan> {
    let json = format!(
        r#"[{{"name": "web", "workers": 3, "argv": ["/bin/true"], "readiness": "notify"{extra}}}]"#
    );
    let spec = parse_groups(&json).unwrap().remove(0);
    Arc::new(Plan {
        program: CString::new("/bin/true").unwrap(),
        argv: vec![CString::new("/bin/true").unwrap()],
        env: vec![],
        cwd: None,
        attrs: Default::default(),
        spec,
    })
}

struct World {
    state: State,
    now: Instant,
    next_pid: i32,
}

impl World {
    fn started(extra: &str) -> World {
        let mut w = World {
            state: State::new(1024),
            now: Instant::now(),
            next_pid: 100,
        };
        let p = plan(extra);
        w.state.config.insert("web".into(), p.spec.clone());
        let jobs = w.state.begin_start(vec![p]);
        for job in jobs {
            w.spawned(job.key);
        }
        w.state.finish_start(&["web".into()], 3, true);
        w
    }

    fn spawned(&mut self, key: Key) -> i32 {
        self.next_pid += 1;
        let s = Spawned {
            pid: self.next_pid,
            has_channel: true,
            channel_error: None,
            at: self.now,
            at_ms: 0,
        };
        assert!(self.state.adopt(key, s));
        self.next_pid
    }

    /// Spawns whatever the effects ask for; returns the keys.
    fn run_spawns(&mut self) -> Vec<Key> {
        let mut keys = Vec::new();
        for e in self.state.take_effects() {
            if let Effect::Spawn(job) = e {
                self.spawned(job.key);
                keys.push(job.key);
            }
        }
        keys
    }

    fn ready(&mut self, key: Key) {
        self.state.line(key, Line::Ready, self.now, 0);
    }

    fn exit(&mut self, key: Key, code: i32) {
        let status = ExitStatus {
            code: Some(code),
            signal: None,
            oom_killed: false,
        };
        self.state.exited(key, status, self.now, 0);
    }

    /// Moves the fake clock on and fires whatever is due.
    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        for (key, timer) in self.state.timers.pop_due(self.now) {
            self.state.timer(key, timer, self.now);
        }
    }

    /// The keys the effects so far send SIGKILL to.
    fn kills(&mut self) -> Vec<Key> {
        crate::core::test_support::kills(&mut self.state)
    }

    fn keys(&self) -> Vec<Key> {
        self.state.keys_of("web")
    }

    fn counting(&self) -> usize {
        self.keys()
            .iter()
            .filter(|k| self.state.workers[k].counts())
            .count()
    }

    fn ready_count(&self) -> usize {
        self.keys()
            .iter()
            .filter(|k| self.state.workers[k].ready())
            .count()
    }

    fn kinds(&mut self) -> Vec<&'static str> {
        self.state
            .events
            .drain(0)
            .into_iter()
            .map(|e| match e.kind {
                EventKind::RolloutStarted { .. } => "rollout_started",
                EventKind::WorkerReplaced { .. } => "worker_replaced",
                EventKind::RolloutFinished { .. } => "rollout_finished",
                EventKind::RolloutFailed { .. } => "rollout_failed",
                EventKind::WorkerStopping { .. } => "worker_stopping",
                EventKind::WorkerStopped { .. } => "worker_stopped",
                EventKind::WorkerSpawned { .. } => "worker_spawned",
                EventKind::WorkerReady { .. } => "worker_ready",
                EventKind::WorkerFailed { .. } => "worker_failed",
                EventKind::GroupScaled { .. } => "group_scaled",
                _ => "other",
            })
            .collect()
    }
}

fn all_ready(w: &mut World) {
    for k in w.keys() {
        w.ready(k);
    }
    w.state.take_effects();
    w.kinds();
}

#[test]
fn a_rollout_never_drops_below_the_target_nor_exceeds_the_surge() {
    let mut w = World::started("");
    all_ready(&mut w);
    let old: Vec<Key> = w.keys();
    w.state
        .begin_rollout("web", plan(""), RolloutOptions::default(), w.now)
        .unwrap();
    let mut new = w.run_spawns();
    for _ in 0..3 {
        assert_eq!(new.len(), 1, "max_surge 1: one new worker at a time");
        assert!(w.counting() <= 4);
        assert!(w.ready_count() >= 3, "max_unavailable 0");
        w.ready(new[0]);
        new.clear();
        // The old worker of the slot is asked to stop only now.
        let stops: Vec<Key> = w
            .state
            .take_effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Stop { key, .. } => Some(key),
                Effect::Spawn(job) => {
                    new.push(job.key);
                    None
                }
                _ => None,
            })
            .collect();
        for &key in &new {
            w.spawned(key);
        }
        assert_eq!(stops.len(), 1);
        assert!(old.contains(&stops[0]));
        w.exit(stops[0], 0);
        assert!(w.ready_count() >= 3);
    }
    assert_eq!(w.state.readiness(), Readiness::AllReady);
    let kinds = w.kinds();
    assert_eq!(kinds.iter().filter(|k| **k == "worker_replaced").count(), 3);
    assert!(kinds.contains(&"rollout_finished"));
    assert_eq!(w.state.groups["web"].generation, 2);
    assert!(w.keys().iter().all(|k| w.state.workers[k].generation == 2));
}

#[test]
fn with_no_surge_an_old_worker_goes_first_within_max_unavailable() {
    let mut w = World::started("");
    all_ready(&mut w);
    let opts = RolloutOptions {
        max_surge: 0,
        max_unavailable: 1,
        ready_timeout: Duration::from_secs(30),
    };
    w.state.begin_rollout("web", plan(""), opts, w.now).unwrap();
    let effects = w.state.take_effects();
    let stops = effects
        .iter()
        .filter(|e| matches!(e, Effect::Stop { .. }))
        .count();
    let spawns = spawn_keys(&effects);
    assert_eq!((stops, spawns.len()), (1, 1));
    w.spawned(spawns[0]);
    assert!(w.counting() <= 3);
    assert!(w.ready_count() >= 2);
}

#[test]
fn a_new_worker_that_exits_halts_the_rollout_and_the_old_ones_stay() {
    let mut w = World::started("");
    all_ready(&mut w);
    let old = w.keys();
    w.state
        .begin_rollout("web", plan(""), RolloutOptions::default(), w.now)
        .unwrap();
    let new = w.run_spawns();
    w.kinds();
    w.exit(new[0], 1);
    let kinds = w.kinds();
    assert!(kinds.contains(&"worker_failed"));
    assert!(kinds.contains(&"rollout_failed"));
    assert!(w.state.take_effects().is_empty(), "nothing else started");
    assert_eq!(w.keys(), old);
    assert!(old.iter().all(|k| w.state.workers[k].ready()));
    assert_eq!(w.state.readiness(), Readiness::Failed);
}

#[test]
fn a_new_worker_not_ready_in_time_is_killed_and_halts_the_rollout() {
    let mut w = World::started("");
    all_ready(&mut w);
    let opts = RolloutOptions {
        ready_timeout: Duration::from_millis(500),
        ..RolloutOptions::default()
    };
    w.state.begin_rollout("web", plan(""), opts, w.now).unwrap();
    let new = w.run_spawns();
    w.advance(600);
    assert_eq!(w.kills(), new);
    assert!(w.kinds().contains(&"rollout_failed"));
}

#[test]
fn a_ready_timeout_of_zero_is_off_not_an_instant_failure() {
    let mut w = World::started("");
    all_ready(&mut w);
    let opts = RolloutOptions {
        ready_timeout: Duration::ZERO,
        ..RolloutOptions::default()
    };
    w.state.begin_rollout("web", plan(""), opts, w.now).unwrap();
    let new = w.run_spawns();
    w.advance(3_600_000);
    assert!(w.kills().is_empty(), "a new worker was killed");
    assert!(!w.kinds().contains(&"rollout_failed"));
    w.ready(new[0]);
    assert!(w.kinds().contains(&"worker_replaced"));
}

#[test]
fn scaling_down_stops_the_highest_indices_and_up_takes_the_next_ones() {
    let mut w = World::started(r#", "stop_timeout_ms": 1000"#);
    all_ready(&mut w);
    w.state.scale("web", 1, w.now).unwrap();
    let stopped: Vec<u32> = w
        .state
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Stop { key, .. } => Some(w.state.workers[&key].index),
            _ => None,
        })
        .collect();
    assert_eq!(stopped, vec![2, 3]);
    // Still alive after stop_timeout_ms: killed.
    w.advance(1001);
    assert_eq!(w.kills().len(), 2);
    for k in w.keys() {
        if w.state.workers[&k].index > 1 {
            w.exit(k, 0);
        }
    }
    w.state.scale("web", 3, w.now).unwrap();
    let new = w.run_spawns();
    let indices: Vec<u32> = new.iter().map(|k| w.state.workers[k].index).collect();
    assert_eq!(indices, vec![2, 3]);
    let kinds = w.kinds();
    assert_eq!(kinds.iter().filter(|k| **k == "group_scaled").count(), 2);
}

#[test]
fn scaling_a_group_that_is_not_started_is_refused() {
    let mut w = World::started("");
    w.state.begin_stop(None, true);
    assert!(matches!(
        w.state.scale("web", 2, w.now),
        Err(crate::error::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        w.state.scale("nope", 2, w.now),
        Err(crate::error::Error::UnknownGroup(_))
    ));
}

#[test]
fn a_respawn_that_cannot_be_spawned_reports_itself_without_a_stale_pid() {
    let mut w = World::started(r#", "restart": "always", "restart_delay_ms": 10"#);
    all_ready(&mut w);
    let first = w.keys()[0];
    w.exit(first, 1);
    w.advance(20);
    let job = w
        .state
        .take_effects()
        .into_iter()
        .find_map(|e| match e {
            Effect::Spawn(job) => Some(job),
            _ => None,
        })
        .expect("a respawn");
    w.kinds();
    w.state.spawn_failed(job.key, "no such file".into(), w.now);
    let events = w.state.events.drain(0);
    assert!(matches!(
        &events[0].kind,
        EventKind::WorkerSpawnFailed { error, .. } if error == "no such file"
    ));
    assert!(!events
        .iter()
        .any(|e| matches!(e.kind, EventKind::WorkerFailed { .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e.kind, EventKind::WorkerRestarting { attempt: 2, .. })));
}

#[test]
fn a_new_worker_not_ready_in_time_fails_for_it_and_the_other_new_ones_are_stopped() {
    let mut w = World::started("");
    all_ready(&mut w);
    let opts = RolloutOptions {
        max_surge: 2,
        ready_timeout: Duration::from_millis(500),
        ..RolloutOptions::default()
    };
    w.state.begin_rollout("web", plan(""), opts, w.now).unwrap();
    let new = w.run_spawns();
    assert_eq!(new.len(), 2);
    w.kinds();
    // Both are late, at their deadline and not before; the first one's halts the rollout.
    w.advance(499);
    assert!(w.kills().is_empty());
    w.advance(1);
    assert_eq!(w.kills(), new);
    let killed = ExitStatus {
        code: None,
        signal: Some(libc::SIGKILL),
        oom_killed: false,
    };
    for &key in &new {
        w.state.exited(key, killed, w.now, 0);
    }
    let ends: Vec<String> = w
        .state
        .events
        .drain(0)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::WorkerFailed {
                worker_id, reason, ..
            } => Some(format!("{worker_id} failed: {reason}")),
            EventKind::WorkerStopped { worker_id, .. } => Some(format!("{worker_id} stopped")),
            _ => None,
        })
        .collect();
    assert_eq!(ends, ["web#1 failed: ready_timeout", "web#2 stopped"]);
}

#[test]
fn a_rollout_counts_the_slots_it_has_replaced() {
    let mut w = World::started("");
    all_ready(&mut w);
    w.state
        .begin_rollout("web", plan(""), RolloutOptions::default(), w.now)
        .unwrap();
    let new = w.run_spawns();
    w.ready(new[0]);
    let r = w.state.groups["web"].rollout.as_ref().unwrap();
    assert_eq!((r.replaced, r.pending.len(), r.replacing.len()), (1, 1, 1));
}

#[test]
fn restart_groups_options_set_the_rollouts_surge_unavailability_and_ready_timeout() {
    let mut w = World::started("");
    all_ready(&mut w);
    let json = r#"{"max_surge": 2, "max_unavailable": 1, "ready_timeout_ms": 500}"#;
    let options = crate::config::RestartOptions::parse(json).unwrap();
    w.state
        .begin_rollout("web", plan(""), options.into(), w.now)
        .unwrap();
    assert_eq!(
        w.state.rollout_ready_timeout("web"),
        Some(Duration::from_millis(500))
    );
    let effects = w.state.take_effects();
    // Two above the target, then one old worker stopped early makes room for the third.
    assert_eq!(spawn_keys(&effects).len(), 3);
    let stops = effects
        .iter()
        .filter(|e| matches!(e, Effect::Stop { .. }))
        .count();
    assert_eq!(stops, 1);
}
