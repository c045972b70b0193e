//! The C examples, built with strict warnings and run for real: the demo host supervising the
//! example C worker and the shell worker.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the demo host and returns its exit code and every JSON value it printed.
fn run_demo(args: &[&str]) -> (i32, Vec<Value>, String) {
    let host = build_c("demo_host", &["c_examples/demo_host.c"], true, &[]);
    let worker = build_c(
        "example_worker",
        &["c_examples/example_worker.c"],
        true,
        &[],
    );
    let out = Command::new(&host)
        .arg("--worker")
        .arg(&worker)
        .arg("--shell-worker")
        .arg(root().join("c_examples/shell_worker.sh"))
        .args(args)
        .output()
        .expect("demo host runs");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let values = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout is not JSON: {l}: {e}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        values,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The event lines (objects with a "kind"); the snapshot line is the object without one.
fn events(values: &[Value]) -> Vec<Value> {
    values
        .iter()
        .filter(|v| v.get("kind").is_some())
        .cloned()
        .collect()
}

#[test]
fn the_demo_supervises_the_example_workers_and_stops_them_gracefully() {
    let (code, values, stderr) = run_demo(&["--seconds", "0.2"]);
    assert_eq!(code, 0, "{stderr}");
    let log = events(&values);
    assert_eq!(count(&log, "worker_spawned"), 4, "{log:#?}");
    assert_eq!(count(&log, "supervisor_start_groups"), 1);
    assert_eq!(count(&log, "worker_ready"), 4);
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 4);
    assert!(
        stopped
            .iter()
            .all(|e| e["mode"] == "graceful" && e["exit_code"] == 0),
        "{stopped:#?}"
    );
    // The snapshot printed after ready lists both groups with two ready workers each.
    let snapshot = values
        .iter()
        .find(|v| v.get("kind").is_none())
        .expect("a snapshot line");
    for group in ["ingest", "cpu"] {
        let workers = snapshot[group].as_array().unwrap();
        assert_eq!(workers.len(), 2);
        assert!(workers.iter().all(|w| w["ready"] == true));
    }
    assert!(
        stderr.contains("stopping (drain)"),
        "the C worker was told STOP DRAIN: {stderr}"
    );
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

#[test]
fn the_demo_reports_a_bad_config_with_the_librarys_message() {
    let dir = scratch_dir("demo-config");
    let config = dir.join("groups.json");
    std::fs::write(&config, r#"[{"name": "g", "argv": []}]"#).unwrap();
    let (code, _, stderr) = run_demo(&[config.to_str().unwrap(), "g"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("MPSUP_ERR_INVALID_CONFIG"), "{stderr}");
    assert!(
        stderr.contains("groups[0].argv: must not be empty"),
        "{stderr}"
    );
}

#[test]
fn a_config_file_runs_the_c_worker_through_a_crash_and_its_recovery() {
    let dir = scratch_dir("demo-crash");
    let worker = build_c(
        "example_worker",
        &["c_examples/example_worker.c"],
        true,
        &[],
    );
    let config = dir.join("groups.json");
    let groups = serde_json::json!([{
        "name": "crashy", "argv": [worker, "--exit-after-ms", "50", "--exit-code", "3"],
        "readiness": "notify", "restart": "on-failure", "restart_delay_ms": 10, "max_restarts": 100
    }]);
    std::fs::write(&config, groups.to_string()).unwrap();
    let (code, values, stderr) =
        run_demo(&[config.to_str().unwrap(), "crashy", "--seconds", "0.5"]);
    assert_eq!(code, 0, "{stderr}");
    let log = events(&values);
    assert!(count(&log, "worker_restarting") >= 1, "{log:#?}");
    let failed = of_kind(&log, "worker_failed");
    assert!(failed
        .iter()
        .all(|e| e["exit_code"] == 3 && e["worker_id"] == "crashy#1"));
}

#[test]
fn the_cpp_host_builds_as_strict_cpp17_and_stops_its_workers_gracefully() {
    let host = build_cpp("cpp_host", &["c_examples/cpp_host.cpp"], true);

    let out = Command::new(&host)
        .arg(root().join("c_examples/shell_worker.sh"))
        .output()
        .expect("cpp_host runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("mpsupervisor {}", env!("CARGO_PKG_VERSION"))),
        "{stderr}"
    );
    // stdout: the snapshot after ready, then every event drained after the stop.
    let stdout = String::from_utf8(out.stdout).unwrap();
    let values: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(values.len(), 2, "{stdout}");
    let workers = values[0]["shell"].as_array().expect("the snapshot");
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|w| w["ready"] == true), "{workers:#?}");
    let log = values[1].as_array().expect("the events");
    assert_eq!(count(log, "worker_spawned"), 2, "{log:#?}");
    assert_eq!(count(log, "worker_ready"), 2);
    let stopped = of_kind(log, "worker_stopped");
    assert_eq!(stopped.len(), 2);
    assert!(
        stopped
            .iter()
            .all(|e| e["mode"] == "graceful" && e["exit_code"] == 0),
        "{stopped:#?}"
    );

    // A failure becomes an exception carrying the result name and the library's message.
    let out = Command::new(&host)
        .arg("/nonexistent/worker")
        .output()
        .expect("cpp_host runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("mpsup_start_groups: MPSUP_ERR_SPAWN: ")
            && stderr.contains("/nonexistent/worker"),
        "{stderr}"
    );
}
