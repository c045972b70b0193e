//! The JSON Schemas in `schema/` are what the Rust types generate now, `mpsup_schema_json` returns
//! them, the library accepts exactly what the groups schema accepts, and what it writes (snapshot,
//! status, events) is valid against its schema.

mod common;

use std::ffi::{CStr, CString};
use std::path::PathBuf;

use mpsupervisor::ffi::{mpsup_result, mpsup_schema_json, mpsup_string_free};
use mpsupervisor::schema::{schema_json, NAMES};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_schemas_are_current() {
    let mut stale = Vec::new();
    for name in NAMES {
        let path = root().join(format!("schema/{name}.schema.json"));
        let fresh = schema_json(name).unwrap();
        if std::env::var_os("MPSUP_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &fresh).expect("write schema");
        }
        if std::fs::read_to_string(&path).unwrap_or_default() != fresh {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "schema/ is stale for {stale:?}: run `MPSUP_UPDATE_SCHEMA=1 cargo test --test schema` and commit it"
    );
    let files: Vec<String> = std::fs::read_dir(root().join("schema"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for file in &files {
        let stem = file.trim_end_matches(".schema.json");
        assert!(
            NAMES.contains(&stem),
            "schema/{file} is no schema the library makes"
        );
    }
}

fn c_schema(which: &str) -> Result<String, mpsup_result> {
    let which = CString::new(which).unwrap();
    let mut out = std::ptr::null_mut();
    match mpsup_schema_json(which.as_ptr(), &mut out) {
        mpsup_result::MPSUP_OK => {
            let text = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_owned();
            mpsup_string_free(out);
            Ok(text)
        }
        err => {
            assert!(out.is_null(), "out_json written on failure");
            Err(err)
        }
    }
}

#[test]
fn the_c_api_returns_each_schema() {
    for name in NAMES {
        let text = c_schema(name).unwrap();
        assert_eq!(text, schema_json(name).unwrap());
        let schema: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        jsonschema::validator_for(&schema).expect("a valid schema");
    }
    assert_eq!(
        c_schema("group"),
        Err(mpsup_result::MPSUP_ERR_INVALID_ARGUMENT)
    );
    let message = unsafe { CStr::from_ptr(mpsupervisor::ffi::mpsup_last_error_message()) };
    assert!(
        message
            .to_str()
            .unwrap()
            .contains("groups, restart-options"),
        "{message:?}"
    );
}

fn validator(which: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&schema_json(which).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("a valid schema")
}

/// A group with `extra` merged into a minimal valid one.
fn group(extra: Value) -> Value {
    let mut g = json!({"name": "g", "argv": ["/bin/true"]});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() && k != "bootstrap" && k != "cwd" {
            g.as_object_mut().unwrap().remove(k);
        } else {
            g[k] = v.clone();
        }
    }
    json!([g])
}

#[test]
fn the_library_accepts_exactly_what_the_groups_schema_accepts() {
    let schema = validator("groups");
    let max_ms = 365u64 * 86_400_000;
    let examples = [
        // Accepted.
        group(json!({})),
        group(json!({"workers": 4096, "warmup_ms": max_ms, "restart": "on-failure"})),
        group(json!({"argv": ["/bin/sh", "", "-c"], "env": {"A": "1"}, "cwd": "/tmp"})),
        group(json!({"cwd": null, "bootstrap": null})),
        group(json!({"bootstrap": {"deep": [1, 2, {"x": null}]}, "start_gate": true})),
        group(json!({"stdout": "capture", "stderr": {"file": "/tmp/x", "append": false}})),
        group(json!({"stdout": {"file": "/tmp/x", "max_bytes": 1, "keep": 100}})),
        group(json!({"stdout": {"file": "/tmp/x", "max_bytes": 10}, "stderr": "null"})),
        group(
            json!({"listen": [{"name": "http", "tcp": "127.0.0.1:0", "backlog": 4096},
                                {"name": "u", "unix": "@sock"}]}),
        ),
        group(json!({"readiness": "sd_notify", "notify_access": "all", "kill_mode": "mixed"})),
        group(
            json!({"stop_signal": "SIGINT", "control_channel": "off", "output_tail_lines": 10000}),
        ),
        group(json!({"memory_max": "512M", "memory_high": 1048576, "pids_max": 64})),
        group(json!({"memory_max": "max", "pids_max": "max", "cpu_max": "20%"})),
        group(json!({"memory_max": 999_999_999_999_999u64, "memory_high": "999T"})),
        group(json!({"cpu_max": "50000 100000", "memory_max": "1K", "pids_max": 4194304})),
        group(json!({"cpu_max": "max", "memory_max": "3G"})),
        group(json!({"cpu_max": "1000 1000000", "memory_max": null})),
        group(
            json!({"readiness": "probe", "port_base": 9000, "env": {"PORT": "{port}"},
                     "readiness_probe": {"http": "http://127.0.0.1:{port}/ready",
                                         "period_ms": 10, "success_threshold": 1000},
                     "liveness_probe": {"exec": ["/bin/true", "{index}", "{pid}"],
                                        "timeout_ms": 1, "initial_delay_ms": 0}}),
        ),
        group(json!({"readiness": "notify", "readiness_probe": {"tcp": "localhost:80"}})),
        json!([]),
        // Rejected.
        group(json!({"memory_max": 0})),
        group(json!({"memory_max": "0"})),
        group(json!({"memory_max": "512m"})),
        group(json!({"memory_max": "1.5G"})),
        group(json!({"memory_max": "1000T"})),
        group(json!({"memory_max": 1_000_000_000_000_000u64})),
        group(json!({"memory_max": -1})),
        group(json!({"memory_high": "512 M"})),
        group(json!({"pids_max": 0})),
        group(json!({"pids_max": 4194305})),
        group(json!({"pids_max": "64"})),
        group(json!({"cpu_max": 50})),
        group(json!({"cpu_max": "0%"})),
        group(json!({"cpu_max": "20.5%"})),
        group(json!({"cpu_max": "999 100000"})),
        group(json!({"cpu_max": "50000 999"})),
        group(json!({"cpu_max": "50000 1000001"})),
        group(json!({"name": ""})),
        group(json!({"name": "a#b"})),
        group(json!({"argv": []})),
        group(json!({"argv": [""]})),
        group(json!({"argv": null})),
        group(json!({"workers": 0})),
        group(json!({"workers": 4097})),
        group(json!({"workers": -1})),
        group(json!({"warmup_ms": max_ms + 1})),
        group(json!({"heartbeat_timeout_ms": max_ms + 1})),
        group(json!({"stop_timeout_ms": 1.5})),
        group(json!({"readiness": "probe"})),
        group(json!({"readiness": "probe", "readiness_probe": null})),
        group(json!({"readiness_probe": {"tcp": "127.0.0.1:1", "exec": ["/bin/true"]}})),
        group(json!({"readiness_probe": {"period_ms": 1000}})),
        group(json!({"liveness_probe": {"tcp": "127.0.0.1:1", "period_ms": 9}})),
        group(json!({"liveness_probe": {"tcp": "127.0.0.1:1", "failure_threshold": 0}})),
        group(json!({"liveness_probe": {"tcp": "127.0.0.1:1", "success_threshold": 1001}})),
        group(json!({"liveness_probe": {"exec": ["/bin/true"], "timeout_ms": 0}})),
        group(json!({"port_base": 65536})),
        group(json!({"restart": "on_failure"})),
        group(json!({"stop_signal": "SIGSTOP"})),
        group(json!({"kill_mode": "control-group"})),
        group(json!({"user": "nobody"})),
        group(json!({"cwd": ""})),
        group(json!({"stdout": "pipe"})),
        group(json!({"stdout": {"file": ""}})),
        group(json!({"stdout": {"file": "/tmp/x", "keep": 3}})),
        group(json!({"stdout": {"file": "/tmp/x", "max_bytes": 0}})),
        group(json!({"stdout": {"file": "/tmp/x", "max_bytes": 9, "keep": 101}})),
        group(json!({"stdout": {"file": "/tmp/x", "max_bytes": 9, "append": true}})),
        group(json!({"output_tail_lines": 10001})),
        group(json!({"listen": [{"name": "a b", "tcp": "127.0.0.1:0"}]})),
        group(json!({"listen": [{"name": "a:b", "tcp": "127.0.0.1:0"}]})),
        group(json!({"listen": [{"name": "h", "tcp": "127.0.0.1:0", "unix": "/x"}]})),
        group(json!({"listen": [{"name": "h"}]})),
        group(json!({"listen": [{"name": "h", "tcp": "127.0.0.1:0", "backlog": 0}]})),
        group(json!({"listen": [{"name": "h", "unix": "x".repeat(108)}]})),
        json!({"name": "g", "argv": ["/bin/true"]}),
        json!([7]),
    ];
    for example in examples {
        let by_schema = schema.is_valid(&example);
        let by_library = mpsupervisor::config::parse_groups(&example.to_string());
        assert_eq!(
            by_schema,
            by_library.is_ok(),
            "schema and library disagree on {example}: library says {by_library:?}"
        );
    }
}

#[test]
fn the_restart_options_and_logging_schemas_match_what_the_library_accepts() {
    let options = validator("restart-options");
    for (example, ok) in [
        (json!({}), true),
        (
            json!({"max_surge": 2, "max_unavailable": 1, "ready_timeout_ms": 1}),
            true,
        ),
        (json!({"surge": 1}), false),
        (json!({"ready_timeout_ms": 365u64 * 86_400_000 + 1}), false),
        (json!({"max_surge": -1}), false),
    ] {
        assert_eq!(options.is_valid(&example), ok, "{example}");
    }
    let logging = validator("logging");
    let sup = mpsupervisor::Supervisor::new().unwrap();
    for example in [
        json!({}),
        json!({"lifecycle_events": {"enabled": false, "level": "warn"}}),
        json!({"exporters": [{"kind": "stderr"}, {"kind": "console"},
                             {"kind": "console", "settings": {"stream": "stderr"}}]}),
        json!({"exporters": [{"kind": "stdout", "settings": {}}]}),
        json!({"exporters": [{"kind": "jsonl"}]}),
        json!({"exporters": [{"kind": "jsonl", "settings": {"path": ""}}]}),
        json!({"exporters": [{"kind": "console", "settings": {"stream": "tty"}}]}),
        json!({"exporters": [{"kind": "syslog"}]}),
        json!({"lifecycle_events": {"level": "trace"}}),
        json!({"lifecycle": {}}),
    ] {
        let by_library = sup.configure_logging_json(&example.to_string());
        assert_eq!(
            logging.is_valid(&example),
            by_library.is_ok(),
            "schema and library disagree on {example}: {by_library:?}"
        );
    }
}

fn assert_valid(which: &str, value: &Value) {
    let schema = validator(which);
    let errors: Vec<String> = schema.iter_errors(value).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{which} does not fit its schema: {errors:?}\n{value:#}"
    );
}

#[test]
fn what_a_real_supervisor_writes_fits_the_output_schemas() {
    use common::{count, sh_group, supervisor, wait_events, with, Views, POLITE};
    let sup = supervisor(&[
        with(
            sh_group("ok", 2, POLITE),
            json!({"readiness": "notify",
                   "listen": [{"name": "http", "tcp": "127.0.0.1:0"}]}),
        ),
        with(
            sh_group("bad", 1, "echo boom >&2; exit 3"),
            json!({"stderr": "capture", "restart": "never"}),
        ),
        with(
            sh_group("sd", 1, "exec sleep 600"),
            json!({"readiness": "warmup", "control_channel": "off"}),
        ),
    ]);
    sup.start_groups(&["ok", "bad", "sd"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        count(l, "worker_ready") == 3 && count(l, "worker_failed") == 1
    });
    sup.restart_groups(&["ok"], &Default::default()).unwrap();
    wait_events(&sup, &mut log, |l| count(l, "rollout_finished") == 1);
    let snapshot = sup.snapshot_value();
    assert_eq!(snapshot["bad"][0]["state"], "failed");
    assert_valid("snapshot", &snapshot);
    assert_eq!(
        serde_json::to_value(sup.snapshot().unwrap()).unwrap()["ok"][0]["worker_id"],
        "ok#1"
    );
    let status = sup.status_value();
    assert_eq!(status["groups"]["ok"]["listen"][0]["name"], "http");
    assert_valid("status", &status);
    sup.stop_groups(common::secs(30.0), true).unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_stopped") >= 3);
    let kinds: std::collections::BTreeSet<&str> =
        log.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in [
        "worker_spawned",
        "worker_failed",
        "rollout_started",
        "worker_replaced",
        "worker_stopping",
        "worker_stopped",
        "supervisor_start_groups",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    assert_valid("events", &Value::Array(log));
}
