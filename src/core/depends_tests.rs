//! The rules of dependencies between groups, without processes: `db` ← `migrate` ← `web`.

use std::ffi::CString;
use std::sync::Arc;
use std::time::Instant;

use crate::config::parse_groups;
use crate::core::effects::Effect;
use crate::core::plan::Plan;
use crate::core::state::{Readiness, State};
use crate::core::test_support::spawn_keys;
use crate::core::timers::Timer;
use crate::core::worker::{ExitStatus, Key};
use crate::core::Spawned;
use crate::events::{EventKind, GroupFailReason};

const GROUPS: &str = r#"[
    {"name": "db", "argv": ["x"], "warmup_ms": 0},
    {"name": "migrate", "argv": ["x"], "depends_on": {"db": "ready"}},
    {"name": "web", "argv": ["x"], "workers": 2, "depends_on": {"db": "ready", "migrate": "completed"}},
    {"name": "other", "argv": ["x"]}
]"#;

fn configured() -> State {
    configured_from(GROUPS)
}

fn configured_from(json: &str) -> State {
    let mut state = State::new(256);
    for spec in parse_groups(json).unwrap() {
        state.config.insert(spec.name.clone(), spec);
    }
    state
}

/// The groups of `json`, `names` started together, each worker spawned and past its warm-up.
fn all_ready(json: &str, names: &[&str]) -> (State, Vec<Key>, Instant) {
    let mut state = configured_from(json);
    let now = Instant::now();
    let plans = names.iter().map(|n| plan(&state, n)).collect();
    let keys: Vec<Key> = state.begin_start(plans).iter().map(|j| j.key).collect();
    for &key in &keys {
        assert!(state.adopt(key, spawned(now)));
        state.timer(key, Timer::Warmup, now);
    }
    (state, keys, now)
}

fn plan(state: &State, name: &str) -> Arc<Plan> {
    Arc::new(Plan {
        program: CString::new("x").unwrap(),
        argv: vec![],
        env: vec![],
        cwd: None,
        attrs: Default::default(),
        spec: state.config[name].clone(),
    })
}

fn spawned(at: Instant) -> Spawned {
    Spawned {
        pid: 100,
        has_channel: false,
        channel_error: None,
        at,
        at_ms: 0,
    }
}

/// The keys of the spawns among the effects recorded since the last call.
fn spawns(state: &mut State) -> Vec<Key> {
    state.advance_dependencies();
    spawn_keys(&state.take_effects())
}

/// The `group_failed` events queued: (group, reason, dependency).
fn group_failures(state: &mut State) -> Vec<(String, GroupFailReason, Option<String>)> {
    state
        .events
        .drain(0)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::GroupFailed {
                group_name,
                reason,
                dependency,
                ..
            } => Some((group_name, reason, dependency)),
            _ => None,
        })
        .collect()
}

fn exit(state: &mut State, key: Key, code: i32, now: Instant) {
    let status = ExitStatus {
        code: Some(code),
        signal: None,
        oom_killed: false,
    };
    state.exited(key, status, now, 0);
}

/// `db` started and spawned, `migrate` and `web` waiting.
fn started() -> (State, Key, Instant) {
    let mut state = configured();
    let names = state.with_dependencies(&["web"]).unwrap();
    assert_eq!(names, ["db", "migrate", "web"]);
    let db = state.begin_start(vec![plan(&state, "db")])[0].key;
    let later = vec![plan(&state, "migrate"), plan(&state, "web")];
    state.begin_waiting(later);
    let now = Instant::now();
    assert!(state.adopt(db, spawned(now)));
    (state, db, now)
}

#[test]
fn each_group_starts_once_its_conditions_hold() {
    let (mut state, db, now) = started();
    assert_eq!(state.waiting_for("web"), ["db", "migrate"]);
    assert!(spawns(&mut state).is_empty(), "db is not ready yet");
    assert_eq!(state.readiness(), Readiness::Pending);
    state.timer(db, Timer::Warmup, now);
    let migrate = spawns(&mut state);
    assert_eq!(migrate.len(), 1, "db ready: migrate starts");
    assert_eq!(state.waiting_for("web"), ["migrate"]);
    assert!(state.adopt(migrate[0], spawned(now)));
    assert!(
        spawns(&mut state).is_empty(),
        "migrate runs: web still waits"
    );
    exit(&mut state, migrate[0], 0, now);
    assert!(state.groups["migrate"].completed);
    assert_eq!(
        spawns(&mut state).len(),
        2,
        "migrate completed: web's two workers"
    );
    assert!(state.waiting.is_empty());
    let kinds: Vec<String> = state
        .events
        .drain(0)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::GroupWaiting { group_name, .. } => Some(format!("waiting {group_name}")),
            EventKind::GroupCompleted { group_name, .. } => Some(format!("completed {group_name}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        ["waiting migrate", "waiting web", "completed migrate"]
    );
}

#[test]
fn a_dependency_that_fails_fails_its_waiting_dependents() {
    let (mut state, db, now) = started();
    state.timer(db, Timer::Warmup, now);
    let migrate = spawns(&mut state);
    assert!(state.adopt(migrate[0], spawned(now)));
    exit(&mut state, migrate[0], 3, now);
    assert!(spawns(&mut state).is_empty());
    let web = &state.groups["web"];
    assert_eq!(web.dependency_failed.as_deref(), Some("migrate"));
    assert!(web.failed && !web.started);
    assert_eq!(state.readiness(), Readiness::Failed);
    let failed = group_failures(&mut state);
    assert_eq!(
        failed,
        [(
            "web".to_string(),
            GroupFailReason::DependencyFailed,
            Some("migrate".to_string())
        )]
    );
}

#[test]
fn a_running_dependency_is_not_restarted_and_stops_go_dependents_first() {
    let (mut state, db, now) = started();
    state.timer(db, Timer::Warmup, now);
    // db runs and migrate is already waiting: a start of web brings neither again.
    state.begin_force(Some(&["web".to_string()]));
    assert_eq!(state.with_dependencies(&["web"]).unwrap(), ["web"]);
    let all: Vec<String> = ["db", "migrate", "web", "other"].map(String::from).to_vec();
    let stages = state.stop_stages(Some(&all));
    assert_eq!(stages, [vec!["other", "web"], vec!["migrate"], vec!["db"]]);
    // Every group: those started or waiting (web was stopped and waits no more).
    assert_eq!(state.stop_stages(None), [vec!["migrate"], vec!["db"]]);
}

#[test]
fn a_stop_bound_group_stops_when_a_ready_dependency_ends_not_a_completed_one() {
    let json = r#"[
        {"name": "db", "argv": ["x"], "warmup_ms": 0},
        {"name": "m", "argv": ["x"], "warmup_ms": 0},
        {"name": "w", "argv": ["x"], "warmup_ms": 0, "on_dependency_restart": "stop",
         "depends_on": {"db": "ready", "m": "completed"}}
    ]"#;
    let (mut state, keys, now) = all_ready(json, &["db", "m", "w"]);
    exit(&mut state, keys[1], 0, now);
    assert!(state.groups["w"].started, "m completing binds nothing");
    exit(&mut state, keys[0], 1, now);
    assert!(!state.groups["w"].started, "db ended: w stops");
    let stops = state
        .take_effects()
        .iter()
        .filter(|e| matches!(e, Effect::Stop { key, .. } if *key == keys[2]))
        .count();
    assert_eq!(stops, 1);
}

#[test]
fn a_restart_bound_group_rolls_out_once_its_restarted_dependency_is_ready_again() {
    let json = r#"[
        {"name": "db", "argv": ["x"], "warmup_ms": 0, "restart": "on-failure",
         "restart_delay_ms": 10},
        {"name": "web", "argv": ["x"], "workers": 2, "warmup_ms": 0,
         "on_dependency_restart": "restart", "depends_on": {"db": "ready"}},
        {"name": "api", "argv": ["x"], "warmup_ms": 0,
         "on_dependency_restart": "restart", "depends_on": {"web": "ready"}}
    ]"#;
    let (mut state, keys, now) = all_ready(json, &["db", "web", "api"]);
    state.take_effects();
    exit(&mut state, keys[0], 1, now);
    assert!(state.groups["web"].restart_pending && state.groups["api"].restart_pending);
    state.advance_dependency_restarts(now);
    assert!(spawns(&mut state).is_empty(), "db is not ready again yet");
    let later = now + std::time::Duration::from_millis(10);
    state.timer(keys[0], Timer::Respawn, later);
    let db = spawns(&mut state);
    assert_eq!(db.len(), 1, "db respawned");
    assert!(state.adopt(db[0], spawned(later)));
    state.timer(db[0], Timer::Warmup, later);
    state.advance_dependency_restarts(later);
    let web = spawns(&mut state);
    assert_eq!(web.len(), 1, "web rolls out, one surge worker at a time");
    assert_eq!(state.workers[&web[0]].group, "web");
    assert!(
        state.groups["api"].restart_pending,
        "api waits for web's rollout"
    );
    // web's two new workers become ready one by one (a surge of one); then api rolls out.
    let mut next = web;
    for _ in 0..2 {
        assert_eq!(next.len(), 1);
        assert_eq!(state.workers[&next[0]].group, "web");
        assert!(state.adopt(next[0], spawned(later)));
        state.timer(next[0], Timer::Warmup, later);
        state.advance_dependency_restarts(later);
        next = spawns(&mut state);
    }
    assert_eq!(next.len(), 1);
    assert_eq!(state.workers[&next[0]].group, "api", "then api");
    assert!(!state.groups["web"].restart_pending && !state.groups["api"].restart_pending);
    let rollouts: Vec<String> = state
        .events
        .drain(0)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::RolloutStarted { group_name, .. } => Some(group_name),
            _ => None,
        })
        .collect();
    assert_eq!(rollouts, ["web", "api"]);
}

#[test]
fn a_group_stopped_while_it_waits_for_a_dependencys_restart_waits_no_more() {
    let json = r#"[
        {"name": "db", "argv": ["x"], "warmup_ms": 0, "restart": "on-failure",
         "restart_delay_ms": 10},
        {"name": "web", "argv": ["x"], "warmup_ms": 0,
         "on_dependency_restart": "restart", "depends_on": {"db": "ready"}}
    ]"#;
    let (mut state, keys, now) = all_ready(json, &["db", "web"]);
    state.take_effects();
    assert!(!state.dependency_restarts_pending(), "nothing restarted");
    exit(&mut state, keys[0], 1, now);
    assert!(state.dependency_restarts_pending(), "db ended: web waits");
    state.advance_dependency_restarts(now);
    assert!(state.dependency_restarts_pending(), "db is not ready again");
    state.begin_stop(Some(&["web".to_string()]), false);
    state.take_effects();
    // db is still down: web is let go at once, not when db is ready again.
    state.advance_dependency_restarts(now);
    assert!(!state.dependency_restarts_pending(), "web stopped");
    let later = now + std::time::Duration::from_millis(10);
    state.timer(keys[0], Timer::Respawn, later);
    let db = spawns(&mut state);
    assert!(state.adopt(db[0], spawned(later)));
    state.timer(db[0], Timer::Warmup, later);
    state.advance_dependency_restarts(later);
    assert!(
        spawns(&mut state).is_empty(),
        "no rollout of a stopped group"
    );
}

#[test]
fn a_start_pulls_in_a_dependency_that_is_stopped_or_failed_not_one_that_runs() {
    use crate::core::group::Group;
    let mut state = configured();
    let pulled = |state: &State| state.with_dependencies(&["migrate"]).unwrap();
    assert_eq!(pulled(&state), ["db", "migrate"], "never started");
    state
        .groups
        .insert("db".into(), Group::new(plan(&state, "db"), 1));
    assert_eq!(pulled(&state), ["migrate"], "running: used as it is");
    state.groups.get_mut("db").unwrap().failed = true;
    assert_eq!(pulled(&state), ["db", "migrate"], "failed: started again");
    let db = state.groups.get_mut("db").unwrap();
    db.failed = false;
    db.started = false;
    assert_eq!(pulled(&state), ["db", "migrate"], "stopped: started again");
    let db = state.groups.get_mut("db").unwrap();
    db.started = true;
    db.dependency_failed = Some("x".into());
    assert_eq!(
        pulled(&state),
        ["db", "migrate"],
        "failed for its own dependency"
    );
}

#[test]
fn started_holds_once_every_worker_is_spawned() {
    let mut state = configured_from(
        r#"[
        {"name": "db", "argv": ["x"], "workers": 2},
        {"name": "web", "argv": ["x"], "depends_on": {"db": "started"}}
    ]"#,
    );
    let db: Vec<Key> = state
        .begin_start(vec![plan(&state, "db")])
        .iter()
        .map(|j| j.key)
        .collect();
    state.begin_waiting(vec![plan(&state, "web")]);
    state.take_effects();
    let now = Instant::now();
    assert!(spawns(&mut state).is_empty(), "none spawned yet");
    assert!(state.adopt(db[0], spawned(now)));
    assert!(spawns(&mut state).is_empty(), "one of two spawned");
    assert_eq!(state.waiting_for("web"), ["db"]);
    assert!(state.adopt(db[1], spawned(now)));
    assert_eq!(
        spawns(&mut state).len(),
        1,
        "both spawned, not ready: web starts"
    );
}

#[test]
fn a_dependency_failed_for_too_many_restarts_fails_its_waiting_dependents() {
    let (mut state, _db, _now) = started();
    // The group gave up: its workers are gone, none is left failed to look at.
    let db = state.groups.get_mut("db").unwrap();
    db.failed = true;
    db.keys.clear();
    assert!(spawns(&mut state).is_empty());
    let failed = group_failures(&mut state);
    let dependency_failed = |name: &str| {
        (
            name.to_string(),
            GroupFailReason::DependencyFailed,
            Some("db".to_string()),
        )
    };
    assert_eq!(
        failed,
        [dependency_failed("migrate"), dependency_failed("web")]
    );
}

/// `m` (two workers) is awaited as "completed" by `w`; `other` is awaited by nobody.
fn completing() -> (State, Vec<Key>, Key, Instant) {
    let json = r#"[
        {"name": "m", "argv": ["x"], "workers": 2, "warmup_ms": 0},
        {"name": "w", "argv": ["x"], "depends_on": {"m": "completed"}},
        {"name": "other", "argv": ["x"], "warmup_ms": 0}
    ]"#;
    let (mut state, keys, now) = all_ready(json, &["m", "other"]);
    state.begin_waiting(vec![plan(&state, "w")]);
    state.take_effects();
    (state, keys[..2].to_vec(), keys[2], now)
}

fn completed_events(state: &mut State) -> Vec<String> {
    state
        .events
        .drain(0)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::GroupCompleted { group_name, .. } => Some(group_name),
            _ => None,
        })
        .collect()
}

#[test]
fn a_group_awaited_as_completed_completes_once_when_every_worker_exited_0() {
    let (mut state, m, other, now) = completing();
    assert_eq!(
        state.readiness(),
        Readiness::Pending,
        "every worker ready, w waits"
    );
    exit(&mut state, m[0], 0, now);
    assert!(!state.groups["m"].completed, "one of two exited");
    assert!(spawns(&mut state).is_empty());
    exit(&mut state, m[1], 0, now);
    assert!(state.groups["m"].completed);
    let w = spawns(&mut state);
    assert_eq!(w.len(), 1, "w starts");
    assert!(state.adopt(w[0], spawned(now)));
    state.timer(w[0], Timer::Warmup, now);
    assert_eq!(
        state.readiness(),
        Readiness::AllReady,
        "m's ended workers count as ready"
    );
    state.check_completed("m");
    assert_eq!(completed_events(&mut state), ["m"], "once");
    // Awaited by nobody: a worker that ended, with 0 too, is a failure for wait_ready.
    exit(&mut state, other, 0, now);
    assert!(!state.groups["other"].completed);
    assert_eq!(state.readiness(), Readiness::Failed);
}

#[test]
fn a_stopped_or_failed_group_does_not_complete() {
    for flag in ["stopped", "failed"] {
        let (mut state, m, _, now) = completing();
        let g = state.groups.get_mut("m").unwrap();
        match flag {
            "stopped" => g.started = false,
            _ => g.failed = true,
        }
        exit(&mut state, m[0], 0, now);
        exit(&mut state, m[1], 0, now);
        state.check_completed("m");
        assert!(!state.groups["m"].completed, "{flag}");
        assert!(completed_events(&mut state).is_empty(), "{flag}");
    }
}

#[test]
fn a_dependency_scaled_to_no_worker_is_not_ready() {
    let (mut state, db, now) = started();
    state.timer(db, Timer::Warmup, now);
    state.groups.get_mut("db").unwrap().target = 0;
    assert!(spawns(&mut state).is_empty());
    assert_eq!(state.waiting_for("migrate"), ["db"]);
}
