//! Probes (API.md part 8) with real sockets, real HTTP servers and real processes: readiness
//! by an HTTP probe on each worker's own port (`{port}`), unready and ready again, a TCP
//! liveness probe that gets a worker restarted, exec probes with `{index}` and a timeout, and
//! `probe_failed` once per crossing, never once per period.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::Instant;

use common::*;
use serde_json::{json, Value};

/// An HTTP server on `$PORT` whose `/ready` answers 503 for its first 0.8 s and while
/// `$DIR/sick-$INDEX` exists, else 200; it appends the port of each request to
/// `$DIR/hits-$INDEX`.
const HTTP_WORKER: &str = r#"
import http.server, os, time
port, index, d = int(os.environ["PORT"]), os.environ["INDEX"], os.environ["DIR"]
start = time.monotonic()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(f"{d}/hits-{index}", "a") as f:
            f.write(f"{port}\n")
        sick = time.monotonic() - start < 0.8 or os.path.exists(f"{d}/sick-{index}")
        self.send_response(503 if sick else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// Accepts connections on `$PORT` until `$DIR/close` appears: then it removes the file, closes
/// its listener and lives on.
const TCP_WORKER: &str = r#"
import os, socket, time
port, d = int(os.environ["PORT"]), os.environ["DIR"]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
s.settimeout(0.02)
while not os.path.exists(f"{d}/close"):
    try:
        s.accept()[0].close()
    except socket.timeout:
        pass
os.remove(f"{d}/close")
s.close()
while True:
    time.sleep(1)
"#;

/// The first of `n` consecutive free TCP ports on 127.0.0.1.
fn free_ports(n: u16) -> u16 {
    let seed = std::process::id() as u16;
    for attempt in 0..1000u16 {
        let base = 20_000 + (seed.wrapping_mul(7).wrapping_add(attempt * 97)) % 40_000;
        let held: Vec<_> = (0..n)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

fn python_group(name: &str, workers: u32, script: &str, dir: &Path, extra: Value) -> Value {
    let group = json!({"name": name, "workers": workers,
        "argv": ["python3", "-c", script], "control_channel": "off",
        "env": {"PORT": "{port}", "INDEX": "{index}", "DIR": dir},
        "port_base": free_ports(workers as u16)});
    with(group, extra)
}

fn of_worker<'a>(log: &'a [Value], kind: &str, worker: &str) -> Vec<&'a Value> {
    of_kind(log, kind)
        .into_iter()
        .filter(|e| e["worker_id"] == worker)
        .collect()
}

fn snapshot_ready(sup: &mpsupervisor::Supervisor, group: &str) -> Vec<bool> {
    sup.snapshot_value()[group]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["ready"].as_bool().unwrap())
        .collect()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn an_http_readiness_probe_makes_each_worker_ready_unready_and_ready_again_on_its_own_port() {
    let dir = scratch_dir("probe-http");
    let group = python_group(
        "api",
        2,
        HTTP_WORKER,
        &dir,
        json!({"readiness": "probe",
               "readiness_probe": {"http": "http://127.0.0.1:{port}/ready", "period_ms": 100,
                                   "failure_threshold": 3}}),
    );
    let base = group["port_base"].as_u64().unwrap();
    let sup = supervisor(&[group]);
    sup.start_groups(&["api"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let mut log = drain_all(&sup);
    for (i, worker) in ["api#1", "api#2"].iter().enumerate() {
        let spawned = of_worker(&log, "worker_spawned", worker)[0];
        let ready = of_worker(&log, "worker_ready", worker);
        assert_eq!(ready.len(), 1, "{log:#?}");
        // Not before the server stopped answering 503 (0.8 s after its own start).
        let waited = ready[0]["ts_ms"].as_u64().unwrap() - spawned["ts_ms"].as_u64().unwrap();
        assert!(waited >= 800, "{worker} ready after {waited} ms");
        let failed = of_worker(&log, "probe_failed", worker);
        assert!(!failed.is_empty(), "{log:#?}");
        assert_eq!(failed[0]["probe"], "readiness");
        let detail = failed[0]["detail"].as_str().unwrap();
        assert!(
            detail == "HTTP 503" || detail == "connect: Connection refused",
            "{detail}"
        );
        // Each worker was probed on its own port only.
        let hits = lines(&dir.join(format!("hits-{}", i + 1)));
        assert!(!hits.is_empty());
        let port = (base + i as u64).to_string();
        assert!(hits.iter().all(|p| *p == port), "{hits:?}");
    }
    // Made sick: api#2 becomes unready (snapshot, wait_ready), api#1 stays ready.
    let at_sick = log.len();
    std::fs::write(dir.join("sick-2"), b"").unwrap();
    wait_events(&sup, &mut log, |l| {
        !of_worker(l, "worker_unready", "api#2").is_empty()
    });
    assert_eq!(snapshot_ready(&sup, "api"), [true, false]);
    assert!(!sup.wait_ready(secs(0.0)).unwrap());
    assert_eq!(sup.status_value()["groups"]["api"]["ready"], 1);
    // Probed on while sick: many more failures, but no more events than the two crossings.
    let sick_hits = lines(&dir.join("hits-2")).len();
    let deadline = Instant::now() + HANG;
    while lines(&dir.join("hits-2")).len() < sick_hits + 8 {
        assert!(Instant::now() < deadline, "the probe stopped");
        std::thread::sleep(secs(0.02));
    }
    log.extend(drain_all(&sup));
    let sick = &log[at_sick..];
    let failures = |worker: &str| -> Vec<u64> {
        of_worker(sick, "probe_failed", worker)
            .iter()
            .map(|e| e["failures"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(failures("api#2"), [1, 3], "{sick:#?}");
    assert_eq!(failures("api#1"), Vec::<u64>::new(), "{sick:#?}");
    assert_eq!(count(sick, "worker_unready"), 1);
    // Well again: ready again.
    std::fs::remove_file(dir.join("sick-2")).unwrap();
    wait_events(&sup, &mut log, |l| {
        of_worker(l, "worker_ready", "api#2").len() == 2
    });
    assert!(sup.wait_ready(HANG).unwrap());
    assert_eq!(snapshot_ready(&sup, "api"), [true, true]);
    let pids = pids(&sup.snapshot_value(), "api");
    sup.stop_groups(HANG, false).unwrap();
    for pid in pids {
        assert_gone(pid);
    }
}

#[test]
fn a_tcp_liveness_probe_restarts_a_worker_that_closed_its_listener() {
    let dir = scratch_dir("probe-tcp");
    let group = python_group(
        "svc",
        1,
        TCP_WORKER,
        &dir,
        json!({"readiness": "warmup", "warmup_ms": 0, "restart": "always",
               "restart_delay_ms": 0,
               "liveness_probe": {"tcp": "127.0.0.1:{port}", "period_ms": 100,
                                  "initial_delay_ms": 500, "failure_threshold": 2}}),
    );
    let sup = supervisor(&[group]);
    sup.start_groups(&["svc"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let first = pids(&sup.snapshot_value(), "svc")[0];
    let mut log = drain_all(&sup);
    assert_eq!(count(&log, "probe_failed"), 0, "{log:#?}");
    std::fs::write(dir.join("close"), b"").unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_spawned") == 2);
    let failed = of_kind(&log, "worker_failed");
    assert_eq!(failed.len(), 1, "{log:#?}");
    assert_eq!(failed[0]["reason"], "liveness_failed");
    assert_eq!(failed[0]["pid"], first);
    let probe = of_kind(&log, "probe_failed");
    assert_eq!(probe[0]["probe"], "liveness");
    assert_eq!(probe[0]["detail"], "connect: Connection refused");
    assert_eq!(count(&log, "worker_restarting"), 1);
    assert_gone(first);
    // The new process listens again and stays alive.
    assert!(sup.wait_ready(HANG).unwrap());
    let second = pids(&sup.snapshot_value(), "svc")[0];
    assert_ne!(second, first);
    sup.stop_groups(HANG, false).unwrap();
    assert_gone(second);
}

#[test]
fn an_exec_readiness_probe_takes_the_workers_index() {
    let dir = scratch_dir("probe-exec");
    let check = format!("test -e {}/ok-{{index}}", dir.display());
    let group = with(
        sh_group("job", 2, "exec sleep 100000"),
        json!({"control_channel": "off", "readiness": "probe",
               "readiness_probe": {"exec": ["/bin/sh", "-c", check], "period_ms": 50}}),
    );
    let sup = supervisor(&[group]);
    sup.start_groups(&["job"]).unwrap();
    std::fs::write(dir.join("ok-2"), b"").unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        !of_worker(l, "worker_ready", "job#2").is_empty()
            && of_worker(l, "probe_failed", "job#1").len() == 2
    });
    assert!(of_worker(&log, "worker_ready", "job#1").is_empty());
    assert_eq!(snapshot_ready(&sup, "job"), [false, true]);
    let failed = of_worker(&log, "probe_failed", "job#1");
    assert_eq!(failed[0]["detail"], "exec: exit status 1");
    assert_eq!(failed[1]["failures"], 3);
    std::fs::write(dir.join("ok-1"), b"").unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    sup.stop_groups(HANG, false).unwrap();
}

/// The pids of this process's children whose command line is `argv`.
fn children_running(argv: &[&str]) -> Vec<String> {
    let wanted = argv.join("\0") + "\0";
    children()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted.as_bytes())
        })
        .collect()
}

#[test]
fn an_exec_probe_past_its_timeout_is_killed_and_reaped_and_fails_the_liveness_probe() {
    let probe = ["/bin/sleep", "31.5"];
    let group = with(
        sh_group("slow", 1, "exec sleep 100000"),
        json!({"control_channel": "off", "warmup_ms": 0,
               "liveness_probe": {"exec": probe, "period_ms": 100, "timeout_ms": 150,
                                  "failure_threshold": 1}}),
    );
    let sup = supervisor(&[group]);
    sup.start_groups(&["slow"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    let failed = of_kind(&log, "worker_failed");
    assert_eq!(failed[0]["reason"], "liveness_failed");
    let probe_failed = of_kind(&log, "probe_failed");
    assert_eq!(probe_failed[0]["detail"], "timed out after 150 ms");
    drop(sup);
    // No probe program is left running, nor unreaped.
    let deadline = Instant::now() + HANG;
    while !children_running(&probe).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", children_running(&probe));
        std::thread::sleep(secs(0.01));
    }
}

#[test]
fn placeholders_in_env_give_each_worker_its_index_port_and_pid() {
    let dir = scratch_dir("probe-env");
    let script = format!(
        r#"echo "$ME" > {}/me-$MPSUP_WORKER_ID.tmp && mv {0}/me-$MPSUP_WORKER_ID.tmp {0}/me-$MPSUP_WORKER_ID; exec sleep 100000"#,
        dir.display()
    );
    let group = with(
        sh_group("env", 2, &script),
        json!({"control_channel": "off", "warmup_ms": 0, "port_base": 7000,
               "env": {"ME": "pid={pid} index={index} port={port}"}}),
    );
    let sup = supervisor(&[group]);
    sup.start_groups(&["env"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let pids = pids(&sup.snapshot_value(), "env");
    for (i, pid) in pids.iter().enumerate() {
        let file = dir.join(format!("me-env#{}", i + 1));
        let deadline = Instant::now() + HANG;
        while !file.exists() {
            assert!(Instant::now() < deadline, "{file:?} never written");
            std::thread::sleep(secs(0.01));
        }
        let expected = format!("pid={pid} index={} port={}\n", i + 1, 7000 + i);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), expected);
    }
    sup.stop_groups(HANG, false).unwrap();
}

#[test]
fn an_http_probe_fails_on_a_server_that_never_answers_or_answers_garbage() {
    // Accepted by the kernel (the backlog) but never answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    // Answers every connection with a line that is no HTTP status line.
    let junk = TcpListener::bind("127.0.0.1:0").unwrap();
    let junk_port = junk.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        if let Ok((mut conn, _)) = junk.accept() {
            let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        }
    });
    let group = |name: &str, port: u16| {
        with(
            sh_group(name, 1, "exec sleep 100000"),
            json!({"control_channel": "off", "warmup_ms": 0,
                   "liveness_probe": {"http": format!("http://127.0.0.1:{port}/health"),
                                      "timeout_ms": 200, "failure_threshold": 1}}),
        )
    };
    let silent_port = silent.local_addr().unwrap().port();
    let sup = supervisor(&[group("silent", silent_port), group("junk", junk_port)]);
    sup.start_groups(&["silent", "junk"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 2);
    let detail = |group: &str| -> String {
        let failed = of_kind(&log, "probe_failed");
        let e = failed.iter().find(|e| e["group_name"] == group).unwrap();
        e["detail"].as_str().unwrap().to_string()
    };
    assert_eq!(detail("silent"), "timed out after 200 ms");
    assert!(
        detail("junk").starts_with("HTTP: malformed response"),
        "{}",
        detail("junk")
    );
    for e in of_kind(&log, "worker_failed") {
        assert_eq!(e["reason"], "liveness_failed");
    }
    server.join().unwrap();
    drop(silent);
}

/// With `use_pidfd: false` (as where the kernel has no pidfds), exec probes are watched by the
/// probe thread's polling (`probes/exec.rs`): they still pass, fail, and time out (killed and
/// reaped past `timeout_ms`).
#[test]
fn exec_probes_without_pidfds_pass_fail_and_time_out() {
    let dir = scratch_dir("probe-exec-polled");
    let check = format!("test -e {}/ok", dir.display());
    let timed_out = ["/bin/sleep", "32.5"];
    let groups = [
        with(
            sh_group("job", 1, "exec sleep 100000"),
            json!({"control_channel": "off", "readiness": "probe",
                   "readiness_probe": {"exec": ["/bin/sh", "-c", check], "period_ms": 50}}),
        ),
        with(
            sh_group("slow", 1, "exec sleep 100000"),
            json!({"control_channel": "off", "warmup_ms": 0,
                   "liveness_probe": {"exec": timed_out, "period_ms": 100, "timeout_ms": 150,
                                      "failure_threshold": 1}}),
        ),
    ];
    let sup = mpsupervisor::Supervisor::with_options(mpsupervisor::Options {
        use_pidfd: false,
        ..Default::default()
    })
    .unwrap();
    sup.configure_json(&Value::Array(groups.to_vec()).to_string())
        .unwrap();
    sup.start_groups(&["job", "slow"]).unwrap();
    let mut log = Vec::new();
    // Fails while the file is missing, not ready meanwhile.
    wait_events(&sup, &mut log, |l| {
        of_worker(l, "probe_failed", "job#1").len() == 2
    });
    assert!(of_worker(&log, "worker_ready", "job#1").is_empty());
    assert_eq!(
        of_worker(&log, "probe_failed", "job#1")[0]["detail"],
        "exec: exit status 1"
    );
    // Passes once it is there.
    std::fs::write(dir.join("ok"), b"").unwrap();
    wait_events(&sup, &mut log, |l| {
        !of_worker(l, "worker_ready", "job#1").is_empty()
    });
    // Fails again (the default threshold, 3) once it is gone.
    std::fs::remove_file(dir.join("ok")).unwrap();
    wait_events(&sup, &mut log, |l| {
        !of_worker(l, "worker_unready", "job#1").is_empty()
    });
    assert_eq!(snapshot_ready(&sup, "job"), [false]);
    // Past its timeout: failed with the timeout, the worker restarted for it.
    wait_events(&sup, &mut log, |l| {
        !of_worker(l, "worker_failed", "slow#1").is_empty()
    });
    assert_eq!(
        of_worker(&log, "worker_failed", "slow#1")[0]["reason"],
        "liveness_failed"
    );
    assert_eq!(
        of_worker(&log, "probe_failed", "slow#1")[0]["detail"],
        "timed out after 150 ms"
    );
    drop(sup);
    // No probe program is left running, nor unreaped.
    let deadline = Instant::now() + HANG;
    while !children_running(&timed_out).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            children_running(&timed_out)
        );
        std::thread::sleep(secs(0.01));
    }
}
