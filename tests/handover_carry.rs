//! What crosses a handover since state format 2 (format 1 refused it with `Unsupported`), in one
//! process as in handover_in_process.rs (the writing supervisor is forgotten, never dropped, as
//! an `exec` would): captured output (no line lost, doubled or cut, the stderr tail and an
//! unfinished line carried, the rotating file going on), `reuse_port` listen sockets (the
//! workers serve on, and respawns get sockets of their own again), the workers' cgroups (a
//! forced kill still reaches a `setsid` grandchild, `memory_max` still ends a worker with
//! `oom_killed`, the cgroups go at exit and at free) and the event fd (same number, readable
//! while events wait). The real `exec`, the keeper and close-on-exec: tests/handover/.
//!
//! Each test holds the cgroup guard (one at a time; whatever cgroup of ours is left goes).

mod cgroup_guard;
mod common;

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroup_guard::*;
use common::*;
use mpsupervisor::{Error, Supervisor};
use serde_json::{json, Value};

/// Prepares (again while a change is in progress), forgets the writer as an `exec` would, and
/// adopts.
fn hand_over(sup: Supervisor) -> Supervisor {
    let until = Instant::now() + HANG;
    let fd = loop {
        match sup.handover_prepare() {
            Ok(fd) => break fd,
            Err(Error::NotReady(m)) if Instant::now() < until => {
                let _ = m;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("handover_prepare: {e:?}"),
        }
    };
    std::mem::forget(sup);
    Supervisor::adopt(fd).expect("adopt")
}

/// Waits (bounded) until `done` holds.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let until = Instant::now() + HANG;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The complete lines of a file (a line being written is left out); none if it is missing.
fn whole_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    text[..end].lines().map(str::to_string).collect()
}

/// Every line of a rotating file, oldest first: `PATH.keep` … `PATH.1`, then `PATH`.
fn rotated_lines(path: &Path, keep: u32) -> Vec<String> {
    let mut out = Vec::new();
    for i in (1..=keep).rev() {
        out.extend(whole_lines(&PathBuf::from(format!(
            "{}.{i}",
            path.display()
        ))));
    }
    out.extend(whole_lines(path));
    out
}

/// The `line`s of the `worker.output` records of `stream` in a jsonl log.
fn output_records(log: &Path, stream: &str) -> Vec<String> {
    whole_lines(log)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["message"] == "worker.output" && r["fields"]["stream"] == stream)
        .map(|r| r["fields"]["line"].as_str().unwrap().to_string())
        .collect()
}

/// `lines` are `PREFIX 0`, `PREFIX 1`, … with none missing, doubled or out of order.
fn assert_counted(lines: &[String], prefix: &str) {
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(
            line,
            &format!("{prefix} {i}"),
            "line {i} of {}: {:?}",
            lines.len(),
            &lines[i.saturating_sub(3)..(i + 3).min(lines.len())]
        );
    }
}

/// A worker writes numbered lines to stdout (a rotating file) and stderr (log records) in a
/// loop while its host hands it over three times: every line arrives once, in order, and lines
/// written after each adoption land too.
#[test]
fn captured_output_crosses_without_a_line_lost_or_doubled() {
    let _cgroups = Cgroups::guard();
    let dir = scratch_dir("handover-output");
    let (file, log) = (dir.join("out.log"), dir.join("log.jsonl"));
    const KEEP: u32 = 100;
    // Paced a little (a pause every 20 lines) so the log writer's queue never overflows.
    let script = "i=0; while :; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); \
                  case $i in *[02468]0) sleep 0.01;; esac; done";
    let mut sup = supervisor(&[with(
        sh_group("g", 1, script),
        json!({"control_channel": "off", "warmup_ms": 1, "stderr": "capture",
               "stdout": {"file": file, "max_bytes": 16384, "keep": KEEP}}),
    )]);
    let settings = json!({"exporters": [{"kind": "jsonl", "settings": {"path": log}}]});
    sup.configure_logging_json(&settings.to_string()).unwrap();
    sup.start_groups(&["g"]).unwrap();
    let worker = pids(&sup.snapshot_value(), "g");
    for round in 0..3 {
        let (lines, records) = (
            rotated_lines(&file, KEEP).len(),
            output_records(&log, "stderr").len(),
        );
        wait_until(&format!("output before handover {round}"), || {
            rotated_lines(&file, KEEP).len() >= lines + 300
                && output_records(&log, "stderr").len() >= records + 300
        });
        sup = hand_over(sup);
    }
    let (lines, records) = (
        rotated_lines(&file, KEEP).len(),
        output_records(&log, "stderr").len(),
    );
    wait_until("output after the last adoption", || {
        rotated_lines(&file, KEEP).len() >= lines + 300
            && output_records(&log, "stderr").len() >= records + 300
    });
    assert_eq!(pids(&sup.snapshot_value(), "g"), worker);
    let status = sup.status_value();
    sup.stop_groups(HANG, false).unwrap();
    drop(sup);
    assert_eq!(status["output_lines_dropped"], 0, "{status}");
    assert_eq!(status["output_bytes_dropped"], 0, "{status}");
    let out = rotated_lines(&file, KEEP);
    let err = output_records(&log, "stderr");
    assert!(
        out.len() >= 1200 && err.len() >= 1200,
        "{} {}",
        out.len(),
        err.len()
    );
    assert!(!Path::new(&format!("{}.{KEEP}", file.display())).exists());
    assert_counted(&out, "out");
    assert_counted(&err, "err");
    let text = read(&log);
    assert_eq!(text.matches(".supervisor_adopted\"").count(), 3);
}

/// What was read of stderr crosses: the tail of lines, and a line whose end had not come yet
/// (it is neither lost nor cut in two, in the tail and in the log records).
#[test]
fn the_stderr_tail_and_an_unfinished_line_cross() {
    let _cgroups = Cgroups::guard();
    let dir = scratch_dir("handover-tail");
    let (go, log) = (dir.join("go"), dir.join("log.jsonl"));
    let script = format!(
        "printf 'a\\nb\\nc' >&2; while [ ! -e {} ]; do sleep 0.01; done; printf 'd\\n' >&2; \
         exit 3",
        go.display()
    );
    let sup = supervisor(&[with(
        sh_group("g", 1, &script),
        json!({"control_channel": "off", "warmup_ms": 1, "stderr": "capture",
               "restart": "never"}),
    )]);
    let settings = json!({"exporters": [{"kind": "jsonl", "settings": {"path": log}}]});
    sup.configure_logging_json(&settings.to_string()).unwrap();
    sup.start_groups(&["g"]).unwrap();
    // One write: once "b" is a record, "c" was read too.
    wait_until("the first lines", || {
        output_records(&log, "stderr").len() == 2
    });
    let sup = hand_over(sup);
    std::fs::write(&go, b"").unwrap();
    let mut events = Vec::new();
    wait_events(&sup, &mut events, |l| count(l, "worker_failed") == 1);
    let failed = of_kind(&events, "worker_failed")[0];
    assert_eq!(failed["exit_code"], 3, "{failed}");
    assert_eq!(failed["stderr_tail"], json!(["a", "b", "cd"]), "{failed}");
    drop(sup);
    assert_eq!(output_records(&log, "stderr"), ["a", "b", "cd"]);
}

fn web_reuse_port(workers: u32) -> Value {
    json!({"name": "web", "workers": workers,
           "argv": ["python3", prefork_server().to_str().unwrap()],
           "readiness": "sd_notify", "restart": "always", "restart_delay_ms": 0,
           "reuse_port": true, "listen": [{"name": "http", "tcp": "127.0.0.1:0"}],
           "env": {"VERSION": "1"}})
}

/// The pids that answered `n` requests.
fn answering(address: std::net::SocketAddr, n: usize) -> BTreeSet<i64> {
    (0..n)
        .map(|_| {
            let body = http_get(address, "/").expect("a request failed");
            body.split(' ').nth(1).unwrap().trim().parse().unwrap()
        })
        .collect()
}

/// `reuse_port` listen sockets cross: the same address, the workers serve on, and workers
/// respawned after adoption bind sockets of their own on it again and serve.
#[test]
fn reuse_port_sockets_cross_and_respawns_serve() {
    let _cgroups = Cgroups::guard();
    let sup = supervisor(&[web_reuse_port(2)]);
    sup.start_groups(&["web"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let before = pids(&sup.snapshot_value(), "web");
    let address = sup.status_value()["groups"]["web"]["listen"][0]["address"].clone();
    let sup = hand_over(sup);
    let status = sup.status_value();
    assert_eq!(status["groups"]["web"]["listen"][0]["address"], address);
    let address: std::net::SocketAddr = address.as_str().unwrap().parse().unwrap();
    assert_eq!(pids(&sup.snapshot_value(), "web"), before);
    assert!(answering(address, 20).iter().all(|p| before.contains(p)));
    // The ready events of the first workers crossed: only those of their respawns count.
    drain_all(&sup);
    let mut log = Vec::new();
    for &pid in &before {
        // SAFETY: plain system call on our own worker.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    wait_events(&sup, &mut log, |l| count(l, "worker_ready") == 2);
    let after = pids(&sup.snapshot_value(), "web");
    assert!(after.iter().all(|p| !before.contains(p)), "{after:?}");
    let until = Instant::now() + HANG;
    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        assert!(
            Instant::now() < until,
            "only {seen:?} of {after:?} answered"
        );
        seen.extend(answering(address, 10));
        assert!(seen.iter().all(|p| after.contains(p)), "{seen:?} {after:?}");
    }
    sup.stop_groups(HANG, true).unwrap();
}

fn hog() -> PathBuf {
    build_c("hog", &["tests/programs/hog.c"], false, &[])
}

/// The first line of a file, once there is one.
fn first_line(path: &Path) -> String {
    wait_until(&path.display().to_string(), || {
        !whole_lines(path).is_empty()
    });
    whole_lines(path).remove(0)
}

/// The workers' cgroups cross: after adoption a forced stop still kills a `setsid` grandchild
/// in its worker's cgroup (out of the worker's process group), the exit removes the worker's
/// cgroup, `memory_max` still ends a worker with `oom_killed`, and the freed supervisor leaves
/// no cgroup. Both kinds: the limits' v1 hierarchies, and the tree cgroup where cgroup v2 is
/// writable here.
#[test]
fn workers_in_cgroups_cross_and_stay_under_their_limits() {
    let _cgroups = Cgroups::guard();
    let dir = scratch_dir("handover-cgroups");
    let (grandchild, go) = (dir.join("grandchild"), dir.join("go"));
    let escapes = format!(
        "setsid sleep 1000 & echo $! > {}; exec sleep 1000",
        grandchild.display()
    );
    let eats = format!(
        "while [ ! -e {} ]; do sleep 0.01; done; exec {} mem 256",
        go.display(),
        hog().display()
    );
    let limits = json!({"control_channel": "off", "warmup_ms": 1, "memory_max": "32M",
                        "pids_max": 16});
    let sup = cgroup_supervisor();
    let groups = json!([
        with(sh_group("esc", 1, &escapes), limits.clone()),
        with(
            sh_group("mem", 1, &eats),
            with(limits, json!({"restart": "never"}))
        ),
    ]);
    sup.configure_json(&groups.to_string()).unwrap();
    sup.start_groups(&["esc", "mem"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let worker = pids(&sup.snapshot_value(), "esc")[0];
    let escaped: i64 = first_line(&grandchild).parse().unwrap();
    let mem_dir = worker_dir(worker, "memory");
    let held = || read(&mem_dir.join("cgroup.procs")).lines().count();
    wait_until("both in the worker's cgroup", || held() == 2);
    let tree = sup.status_value()["guarantees"]["tree_kill"] == "cgroup";
    let v2_dir = tree.then(|| worker_dir_v2(worker));
    let sup = hand_over(sup);
    let mut log = drain_all(&sup);
    sup.force_terminate_groups(&["esc"]).unwrap();
    wait_events(&sup, &mut log, |l| {
        of_kind(l, "worker_stopped")
            .iter()
            .any(|e| e["pid"] == worker)
    });
    assert_dead(escaped);
    wait_gone(&mem_dir);
    if let Some(v2) = v2_dir {
        wait_gone(&v2);
    }
    std::fs::write(&go, b"").unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    let failed = of_kind(&log, "worker_failed")[0];
    assert_eq!(failed["reason"], "oom_killed", "{failed}");
    assert_eq!(failed["group_name"], "mem", "{failed}");
    free_and_check(sup);
}

/// The event fd the host has crosses at its number: readable after adoption (events wait),
/// not once they are drained, and the adopted supervisor names the same number.
#[test]
fn the_event_fd_crosses_at_its_number() {
    let _cgroups = Cgroups::guard();
    let sup = supervisor(&[with(
        sh_group("g", 1, POLITE),
        json!({"readiness": "notify"}),
    )]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let number = sup.event_fd().unwrap().as_raw_fd();
    drain_all(&sup);
    assert!(!readable(number));
    let sup = hand_over(sup);
    assert_eq!(sup.event_fd().unwrap().as_raw_fd(), number);
    // SAFETY: plain system call on a number the supervisor owns.
    let flags = unsafe { libc::fcntl(number, libc::F_GETFD) };
    assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC, "{flags}");
    assert!(readable(number), "supervisor_adopted waits");
    let log = drain_all(&sup);
    assert_eq!(count(&log, "supervisor_adopted"), 1, "{log:?}");
    assert!(!readable(number));
    sup.stop_groups(HANG, true).unwrap();
    assert!(readable(number), "worker_stopped waits");
}

/// Whether descriptor `fd` polls readable now.
fn readable(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; no wait.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}
