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

/// Runs the demo host with `--json` and returns its exit code and every JSON value it printed.
fn run_demo(args: &[&str]) -> (i32, Vec<Value>, String) {
    let (code, stdout, stderr) = run_demo_text(&[&["--json"], args].concat());
    let values = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout is not JSON: {l}: {e}")))
        .collect();
    (code, values, stderr)
}

/// Runs the demo host and returns its exit code, stdout and stderr.
fn run_demo_text(args: &[&str]) -> (i32, String, String) {
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
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// "HH:MM:SS.mmm" at the start of `line`.
fn starts_with_time(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 12
        && [0, 1, 3, 4, 6, 7, 9, 10, 11]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
        && b[2] == b':'
        && b[5] == b':'
        && b[8] == b'.'
}

#[test]
fn the_demos_default_output_is_one_aligned_line_per_event_and_per_worker() {
    let (code, stdout, stderr) = run_demo_text(&["--seconds", "0.2"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    for line in &lines {
        assert!(line.len() < 160, "a long line: {line}");
        assert!(
            starts_with_time(line) || line.starts_with("snapshot "),
            "neither an event nor a snapshot line: {line}"
        );
    }
    // The console exporter's columns: time, who (12 wide), `=`, kind (24 wide), then the
    // key=value fields in name order.
    let ready: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains(" worker_ready "))
        .collect();
    assert_eq!(ready.len(), 4, "{stdout}");
    for id in ["ingest#1", "ingest#2", "cpu#1", "cpu#2"] {
        let line = ready
            .iter()
            .find(|l| l[13..].starts_with(&format!("{id:<12} = worker_ready ")))
            .unwrap_or_else(|| panic!("no aligned worker_ready line for {id}: {stdout}"));
        assert!(
            line[13 + 12 + 3 + 24..]
                .trim_start()
                .starts_with("generation=1 pid="),
            "{line}"
        );
    }
    let stopped = lines
        .iter()
        .filter(|l| {
            l.contains(" worker_stopped ")
                && l.contains("exit_code=0")
                && l.contains("mode=graceful")
        })
        .count();
    assert_eq!(stopped, 4, "{stdout}");
    // The workers' stderr, captured, in the same columns.
    assert!(
        lines
            .iter()
            .any(|l| l[13..].starts_with("ingest#1     | [worker ingest#1 pid ")),
        "{stdout}"
    );
    let snapshot = lines.iter().filter(|l| l.starts_with("snapshot ")).count();
    assert_eq!(snapshot, 4, "{stdout}");
    assert!(lines.iter().all(|l| !l.contains("null")), "{stdout}");
    // It says what it waits for.
    assert!(stderr.contains("waiting up to"), "{stderr}");
    assert!(stderr.contains("running; stopping in 0.2 s"), "{stderr}");
}

#[test]
fn the_demo_exits_promptly_with_status_4_when_a_group_fails() {
    let dir = scratch_dir("demo-group-failed");
    let worker = build_c(
        "example_worker",
        &["c_examples/example_worker.c"],
        true,
        &[],
    );
    let config = dir.join("groups.json");
    let groups = serde_json::json!([{
        "name": "crashy", "argv": [worker, "--exit-after-ms", "20", "--exit-code", "3"],
        "readiness": "notify", "restart": "on-failure", "restart_delay_ms": 10,
        "max_restarts": 1
    }]);
    std::fs::write(&config, groups.to_string()).unwrap();
    let started = std::time::Instant::now();
    // Without the prompt exit it would run for the whole 600 s.
    let (code, stdout, stderr) =
        run_demo_text(&[config.to_str().unwrap(), "crashy", "--seconds", "600"]);
    assert!(
        started.elapsed() < HANG,
        "the demo kept running after group_failed"
    );
    assert_eq!(code, 4, "{stdout}\n{stderr}");
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" group_failed "))
        .collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert!(
        failed[0].contains("crashy") && failed[0].contains("restarts=1"),
        "{stdout}"
    );
    assert!(stderr.contains("a group failed"), "{stderr}");

    // The same with --json: the raw event, and the same prompt exit.
    let (code, values, stderr) =
        run_demo(&[config.to_str().unwrap(), "crashy", "--seconds", "600"]);
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(count(&events(&values), "group_failed"), 1);
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

/// The C++ host hands its workers to its next image (API.md part 9): it prepares, `exec`s
/// itself and adopts through the RAII wrapper; the new image has the same pids, says
/// `supervisor_adopted`, and stops the workers gracefully over the first image's sockets.
#[test]
fn the_cpp_host_hands_its_workers_to_its_next_image() {
    let (out, stderr, stdout, values) = run_cpp_handover(&[]);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    assert!(stderr.contains("cpp_handover: adopted"), "{stderr}");
    assert_eq!(values.len(), 3, "{stdout}");
    let before = pids(&values[0], "shell");
    assert_eq!(before.len(), 2, "{stdout}");
    assert_eq!(pids(&values[1], "shell"), before, "{stdout}");
    let log = values[2].as_array().expect("the events");
    let adopted = of_kind(log, "supervisor_adopted");
    assert_eq!(adopted.len(), 1, "{log:#?}");
    assert_eq!(adopted[0]["workers"], 2);
    assert_eq!(adopted[0]["exited_meanwhile"], 0);
    assert_stopped_gracefully(log, &before);
}

/// The C++ host whose `exec` fails: `handover_abort` gives the handle back, and the same
/// handle stops the workers gracefully.
#[test]
fn the_cpp_host_whose_exec_fails_aborts_and_keeps_its_workers() {
    let (out, stderr, stdout, values) =
        run_cpp_handover(&[("CPP_HANDOVER_EXE", "/nonexistent/cpp_handover")]);
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{stdout}");
    assert!(
        stderr.contains("cpp_handover: exec: No such file or directory; aborted"),
        "{stderr}"
    );
    assert_eq!(values.len(), 2, "{stdout}");
    let before = pids(&values[0], "shell");
    let log = values[1].as_array().expect("the events");
    assert!(of_kind(log, "supervisor_adopted").is_empty(), "{log:#?}");
    assert_stopped_gracefully(log, &before);
}

/// `log`'s `worker_stopped` events are exactly `pids`, each graceful with exit code 0.
fn assert_stopped_gracefully(log: &[Value], pids: &[i64]) {
    let stopped = of_kind(log, "worker_stopped");
    let mut stopped_pids: Vec<i64> = stopped.iter().map(|e| e["pid"].as_i64().unwrap()).collect();
    stopped_pids.sort_unstable();
    let mut want = pids.to_vec();
    want.sort_unstable();
    assert_eq!(stopped_pids, want, "{log:#?}");
    assert!(
        stopped
            .iter()
            .all(|e| e["mode"] == "graceful" && e["exit_code"] == 0),
        "{stopped:#?}"
    );
}

/// Runs `c_examples/cpp_handover.cpp` with `env`: its exit status, stderr, stdout, and the JSON
/// values of its stdout lines. Whatever happened, no worker it printed is left running.
fn run_cpp_handover(env: &[(&str, &str)]) -> (std::process::Output, String, String, Vec<Value>) {
    let host = build_cpp("cpp_handover", &["c_examples/cpp_handover.cpp"], true);
    let out = Command::new(&host)
        .arg(root().join("c_examples/shell_worker.sh"))
        .env_remove("MPSUP_HANDOVER_FD")
        .envs(env.iter().copied())
        .output()
        .expect("cpp_handover runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let values: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let seen: Vec<i64> = values
        .iter()
        .take(2)
        .flat_map(|v| pids(v, "shell"))
        .collect();
    for &pid in &seen {
        if proc_state(pid).is_some_and(|s| s != 'Z') {
            // SAFETY: plain system call on a worker of this test.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    (out, stderr, stdout, values)
}
