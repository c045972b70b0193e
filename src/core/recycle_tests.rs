//! The rules of recycling, without processes.

use std::time::{Duration, Instant};

use super::lifetime;
use crate::core::effects::Effect;
use crate::core::state::State;
use crate::core::test_support::{
    ready_group, run_until, spawn_keys, spawn_of, spawned, started_group,
};
use crate::core::timers::Timer;
use crate::core::worker::{Key, Role};
use crate::error::Error;
use crate::events::RecycleReason;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A started group "g" of `workers` workers without control channels, none ready yet.
fn starting_group(workers: u32, extra: &str) -> (State, Vec<Key>, Instant) {
    started_group(workers, extra, false)
}

/// What the one replacement spawned among the effects so far replaces.
fn replaced(state: &mut State) -> super::Replaces {
    let new = spawn_of(&state.take_effects());
    assert_eq!(state.workers[&new].role, Role::Replacement);
    state.workers[&new].replaces.expect("a replacement")
}

#[test]
fn lifetimes_are_spread_over_the_jitter_and_stay_within_it() {
    let lives: Vec<Duration> = (1..=50).map(|k| lifetime(k, 1000, 500)).collect();
    assert!(lives
        .iter()
        .all(|d| (1000..=1500).contains(&(d.as_millis() as u64))));
    let distinct: std::collections::BTreeSet<_> = lives.iter().collect();
    assert!(distinct.len() > 25, "{lives:?}");
    assert_eq!(lifetime(7, 1000, 0), Duration::from_millis(1000));
}

#[test]
fn every_share_of_the_jitter_is_drawn_its_ends_included() {
    for jitter in [1, 2] {
        let lives: std::collections::BTreeSet<u128> = (1..=64)
            .map(|k| lifetime(k, 1000, jitter).as_millis())
            .collect();
        let all: std::collections::BTreeSet<u128> = (1000..=1000 + jitter as u128).collect();
        assert_eq!(lives, all, "jitter {jitter}");
    }
}

#[test]
fn the_share_of_the_jitter_is_splitmix64_of_the_worker_key() {
    // The published first outputs of splitmix64 seeded with 0 (Vigna's splitmix64.c): the
    // n-th is drawn from the state n times the golden gamma. A jitter of u64::MAX - 1 keeps
    // the whole output (modulo u64::MAX).
    let gamma: u64 = 0x9E37_79B9_7F4A_7C15;
    let outputs: [u64; 4] = [
        0xE220_A839_7B1D_CDAF,
        0x6E78_9E6A_A1B9_65F4,
        0x06C4_5D18_8009_454F,
        0xF88B_B8A8_724C_81EC,
    ];
    for (n, want) in outputs.into_iter().enumerate() {
        let key = gamma.wrapping_mul(n as u64);
        let share = lifetime(key, 0, u64::MAX - 1).as_millis();
        assert_eq!(share, want as u128, "output {n}");
    }
}

#[test]
fn a_worker_is_replaced_once_its_lifetime_is_over_and_not_before() {
    let (mut state, _, now) = ready_group(1, r#", "max_lifetime_ms": 1000"#);
    run_until(&mut state, now + ms(999));
    assert!(state.take_effects().is_empty());
    run_until(&mut state, now + ms(1000));
    let r = replaced(&mut state);
    assert_eq!(r.reason, RecycleReason::MaxLifetime);
    assert_eq!((r.old_pid, r.age_ms), (100, 1000));
}

#[test]
fn a_worker_not_ready_when_its_lifetime_ends_is_looked_at_again_a_second_later() {
    let (mut state, _, t0) = starting_group(1, r#", "warmup_ms": 1500, "max_lifetime_ms": 1000"#);
    // Due at 1 s, not ready (ready at 1.5 s): nothing until the next look, at 2 s.
    run_until(&mut state, t0 + ms(1000));
    run_until(&mut state, t0 + ms(1999));
    assert!(spawn_keys(&state.take_effects()).is_empty());
    run_until(&mut state, t0 + ms(2000));
    let r = replaced(&mut state);
    assert_eq!((r.reason, r.age_ms), (RecycleReason::MaxLifetime, 2000));
}

#[test]
fn a_group_left_stopped_by_its_start_recycles_nothing() {
    let (mut state, keys, t0) = starting_group(1, r#", "warmup_ms": 0, "max_lifetime_ms": 1000"#);
    run_until(&mut state, t0);
    assert!(state.workers[&keys[0]].ready());
    // The start fails: the group is left stopped, its ready worker is not replaced.
    state.finish_start(&["g".to_string()], 1, false);
    run_until(&mut state, t0 + ms(5000));
    assert!(spawn_keys(&state.take_effects()).is_empty());
}

#[test]
fn a_replaced_worker_stops_only_once_its_replacement_is_ready() {
    let (mut state, keys, now) = ready_group(2, "");
    state.replace_worker("g#1", now).unwrap();
    let new = spawn_of(&state.take_effects());
    assert_eq!(state.workers[&new].role, Role::Replacement);
    assert!(state.adopt(new, spawned(200, now)));
    // Not ready yet: the old one runs on, untouched.
    assert!(state.workers[&keys[0]].ready());
    assert!(matches!(
        state.replace_worker("g#1", now),
        Err(Error::InvalidArgument(_))
    ));
    state.take_effects();
    state.timer(new, Timer::Warmup, now + Duration::from_millis(5));
    let kinds: Vec<String> = state
        .events
        .drain(0)
        .into_iter()
        .map(|e| format!("{:?}", e.kind))
        .collect();
    assert!(kinds[0].starts_with("WorkerSpawned"), "{kinds:?}");
    assert!(kinds[1].starts_with("WorkerReady"), "{kinds:?}");
    assert!(kinds[2].contains("WorkerStopping") && kinds[2].contains("pid: 100"));
    assert!(kinds[3].contains("WorkerRecycled") && kinds[3].contains("Requested"));
    assert!(kinds[3].contains("old_pid: 100, new_pid: 200"), "{kinds:?}");
    assert!(!state.workers[&keys[0]].counts());
    assert_eq!(state.workers[&new].role, Role::Member);
    assert!(matches!(
        state.replace_worker("g#9", now),
        Err(Error::UnknownGroup(_))
    ));
    assert!(matches!(
        state.replace_worker("nope#1", now),
        Err(Error::UnknownGroup(_))
    ));
}

#[test]
fn a_replacement_that_fails_leaves_the_old_worker() {
    let (mut state, keys, now) = ready_group(1, "");
    state.replace_worker("g#1", now).unwrap();
    let new = spawn_of(&state.take_effects());
    assert!(state.adopt(new, spawned(200, now)));
    state.exited(new, Default::default(), now, 0);
    assert!(!state.workers.contains_key(&new));
    assert!(state.workers[&keys[0]].ready());
    assert!(state.take_effects().is_empty());
    // Asked for once, it is not tried again.
    run_until(&mut state, now + ms(60_000));
    assert!(state.take_effects().is_empty());
}

#[test]
fn a_lifetime_replacement_that_fails_is_tried_again_for_its_slot_after_the_restart_delay() {
    let extra = r#", "max_lifetime_ms": 1000, "restart_delay_ms": 500"#;
    let (mut state, _, now) = ready_group(2, extra);
    run_until(&mut state, now + ms(1000));
    let news = spawn_keys(&state.take_effects());
    assert_eq!(news.len(), 2);
    // g#2's replacement takes its slot; g#1's cannot be spawned.
    assert!(state.adopt(news[1], spawned(201, now + ms(1000))));
    state.timer(news[1], Timer::Warmup, now + ms(1000));
    state.spawn_failed(news[0], "EAGAIN".into(), now + ms(1000));
    state.take_effects();
    run_until(&mut state, now + ms(1499));
    assert!(spawn_keys(&state.take_effects()).is_empty());
    // Only g#1's old worker, none of g#2's, is looked at again.
    run_until(&mut state, now + ms(1500));
    let r = replaced(&mut state);
    assert_eq!((r.reason, r.old_pid), (RecycleReason::MaxLifetime, 100));
}

#[test]
fn two_samples_in_a_row_above_max_rss_replace_the_worker() {
    let (mut state, keys, now) = ready_group(1, r#", "max_rss_bytes": 1000"#);
    let key = keys[0];
    state.timer(key, Timer::RssSample, now + Duration::from_secs(5));
    assert!(matches!(state.take_effects()[..], [Effect::SampleRss { key: k }] if k == key));
    state.rss_sampled(key, Some(2000), now);
    state.rss_sampled(key, Some(500), now);
    state.rss_sampled(key, Some(2000), now);
    assert!(state.take_effects().is_empty());
    state.rss_sampled(key, Some(3000), now);
    let new = spawn_of(&state.take_effects());
    let r = state.workers[&new].replaces.unwrap();
    assert_eq!((r.reason, r.rss_bytes), (RecycleReason::MaxRss, Some(3000)));
}

#[test]
fn a_resident_set_of_exactly_max_rss_bytes_is_allowed() {
    let (mut state, keys, now) = ready_group(1, r#", "max_rss_bytes": 1000"#);
    for _ in 0..3 {
        state.rss_sampled(keys[0], Some(1000), now);
    }
    assert!(state.take_effects().is_empty());
    state.rss_sampled(keys[0], Some(1001), now);
    state.rss_sampled(keys[0], Some(1001), now);
    assert_eq!(replaced(&mut state).rss_bytes, Some(1001));
}

#[test]
fn without_max_rss_bytes_no_resident_set_replaces_a_worker() {
    let (mut state, keys, now) = ready_group(1, "");
    for _ in 0..3 {
        state.rss_sampled(keys[0], Some(u64::MAX), now);
    }
    assert!(state.take_effects().is_empty());
}

#[test]
fn a_worker_being_stopped_has_its_resident_set_read_no_more() {
    let extra = r#", "max_rss_bytes": 1000, "rss_sample_ms": 1000"#;
    let (mut state, keys, now) = ready_group(2, extra);
    state.scale("g", 1, now).unwrap();
    state.take_effects();
    for s in 1..=3 {
        run_until(&mut state, now + ms(1000 * s));
    }
    let sampled: Vec<Key> = state
        .take_effects()
        .iter()
        .filter_map(|e| match e {
            Effect::SampleRss { key } => Some(*key),
            _ => None,
        })
        .collect();
    assert_eq!(sampled, vec![keys[0], keys[0], keys[0]]);
}

#[test]
fn a_lifetime_that_ends_during_a_replacement_is_looked_at_again() {
    let (mut state, keys, now) = ready_group(1, r#", "max_lifetime_ms": 1000"#);
    state.replace_worker("g#1", now).unwrap();
    let requested = spawn_of(&state.take_effects());
    let later = now + Duration::from_secs(1);
    // Busy: nothing now, another look in a second.
    state.timer(keys[0], Timer::Lifetime, later);
    assert!(state.take_effects().is_empty());
    state.spawn_failed(requested, "EAGAIN".into(), later);
    state.timer(keys[0], Timer::Lifetime, later + Duration::from_secs(1));
    let new = spawn_of(&state.take_effects());
    let r = state.workers[&new].replaces.unwrap();
    assert_eq!(r.reason, RecycleReason::MaxLifetime);
    assert_eq!((r.old_pid, r.age_ms), (100, 2000));
}

#[test]
fn a_rollout_cancels_replacements_that_are_not_ready() {
    let (mut state, keys, now) = ready_group(1, "");
    state.replace_worker("g#1", now).unwrap();
    let new = spawn_of(&state.take_effects());
    assert!(state.adopt(new, spawned(200, now)));
    let plan = state.workers[&keys[0]].plan.clone();
    state
        .begin_rollout("g", plan, Default::default(), now)
        .unwrap();
    let effects = state.take_effects();
    assert!(
        effects.iter().any(|e| matches!(e,
            Effect::Signal { key, signal: libc::SIGKILL } if *key == new)),
        "{effects:?}"
    );
}

#[test]
fn a_replacement_takes_the_slot_of_an_old_worker_that_crashed_meanwhile() {
    let (mut state, keys, now) = ready_group(1, "");
    state.replace_worker("g#1", now).unwrap();
    let new = spawn_of(&state.take_effects());
    assert!(state.adopt(new, spawned(200, now)));
    let crashed = crate::core::worker::ExitStatus {
        code: Some(1),
        signal: None,
        oom_killed: false,
    };
    state.exited(keys[0], crashed, now, 0);
    state.timer(new, Timer::Warmup, now);
    assert!(!state.workers.contains_key(&keys[0]));
    assert_eq!(state.keys_of("g"), vec![new]);
    assert_eq!(state.readiness(), crate::core::state::Readiness::AllReady);
}

#[test]
fn the_resident_sets_of_a_group_are_read_in_one_wake_up() {
    use crate::core::test_support::plan_of;
    let json = r#"[{"name": "g", "argv": ["/bin/true"], "workers": 3, "warmup_ms": 0,
                    "max_rss_bytes": 1000000, "rss_sample_ms": 1000}]"#;
    let spec = crate::config::parse_groups(json).unwrap().remove(0);
    let mut state = crate::core::state::State::new(64);
    state.config.insert(spec.name.clone(), spec.clone());
    let keys: Vec<_> = state
        .begin_start(vec![plan_of(spec)])
        .iter()
        .map(|j| j.key)
        .collect();
    let t0 = std::time::Instant::now();
    let ms = Duration::from_millis;
    // Spawned 300 ms apart, as a big start spreads them.
    for (i, &key) in keys.iter().enumerate() {
        let at = t0 + ms(300 * i as u64);
        assert!(state.adopt(key, spawned(100 + i as i32, at)));
        state.timer(key, Timer::Warmup, at);
    }
    let mut samples_until = |until| {
        let due = state.timers.pop_due(until);
        for &(key, timer) in &due {
            state.timer(key, timer, until);
        }
        due.iter().filter(|(_, t)| *t == Timer::RssSample).count()
    };
    // The first at the grid's origin (a step after the first spawn); none before the next step;
    // then all three at once, and again a step later.
    assert_eq!(samples_until(t0 + ms(1000)), 1);
    assert_eq!(samples_until(t0 + ms(1999)), 0);
    assert_eq!(samples_until(t0 + ms(2000)), 3);
    assert_eq!(samples_until(t0 + ms(2999)), 0);
    assert_eq!(samples_until(t0 + ms(3000)), 3);
}
