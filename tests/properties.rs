//! Property tests of the groups JSON parser, which takes untrusted input (the control
//! channel's line reader has its own, in src/lines.rs). The test command runs proptest's default 256 cases per property; a
//! longer run: `PROPTEST_CASES=100000 cargo test --release --test properties`.

use mpsupervisor::config::parse_groups;
use mpsupervisor::Error;
use proptest::prelude::*;
use serde_json::{json, Value};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("warmup"),
            Just("notify"),
            Just("auto"),
            Just("off"),
            Just("SIGTERM"),
            Just("null")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const KEYS: &[&str] = &[
    "name",
    "workers",
    "argv",
    "env",
    "inherit_env",
    "cwd",
    "readiness",
    "warmup_ms",
    "control_channel",
    "stop_signal",
    "stdout",
    "stderr",
    "restart",
    "restart_delay_ms",
    "max_restarts",
    "bootstrap",
    "start_gate",
];

/// Groups made of the real keys with random values: most are rejected, some accepted.
fn groups() -> impl Strategy<Value = Value> {
    let group =
        prop::collection::vec((prop::sample::select(KEYS), any_json()), 0..8).prop_map(|pairs| {
            let mut g = json!({"name": "g", "argv": ["/bin/true"]});
            for (k, v) in pairs {
                g[k] = v;
            }
            g
        });
    prop::collection::vec(group, 0..4).prop_map(Value::from)
}

proptest! {
    #[test]
    fn any_text_is_accepted_or_rejected_as_invalid_config(text in "\\PC{0,200}") {
        match parse_groups(&text) {
            Ok(_) => {}
            Err(Error::InvalidConfig(m)) => prop_assert!(m.starts_with("groups"), "{m}"),
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn accepted_configurations_keep_every_rule(value in groups()) {
        match parse_groups(&value.to_string()) {
            Ok(groups) => {
                let mut names = std::collections::HashSet::new();
                for g in &groups {
                    prop_assert!(!g.name.is_empty() && !g.name.contains('#'));
                    prop_assert!(names.insert(g.name.clone()));
                    prop_assert!((1..=4096).contains(&g.workers));
                    prop_assert!(!g.argv.is_empty() && !g.argv[0].is_empty());
                }
            }
            Err(Error::InvalidConfig(m)) => prop_assert!(m.starts_with("groups"), "{m}"),
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }
}
