//! sd_notify readiness and captured output with real processes: readiness and STATUS= through
//! NOTIFY_SOCKET, credential checks, a fuzzed socket, stderr tails in crash reports, a grandchild
//! holding the pipe, rotating files, and a flooding worker next to a stop.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Python that sends its arguments (one datagram each) to NOTIFY_SOCKET, then runs `then`.
fn notifier(messages: &[&str], then: &str) -> Value {
    let script = format!(
        r#"
import os, socket, signal, sys, time
# Before anything is sent: a stop may come as soon as READY=1 is out.
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
{PY_NOTIFY}
for m in {messages:?}:
    notify(m)
{then}
"#
    );
    json!(["python3", "-c", script])
}

/// Waits for SIGTERM (the notifier's handler exits 0).
const WAIT_FOR_TERM: &str = r#"
while True:
    time.sleep(1)
"#;

fn sd_group(name: &str, argv: Value, extra: Value) -> Value {
    with(
        json!({"name": name, "argv": argv, "readiness": "sd_notify", "control_channel": "off"}),
        extra,
    )
}

fn notify_address(sup: &mpsupervisor::Supervisor) -> Vec<u8> {
    let status = sup.status_value();
    let address = status["notify_socket"].as_str().expect("a notify socket");
    let mut name = vec![0u8];
    name.extend_from_slice(address.strip_prefix('@').unwrap().as_bytes());
    name
}

/// Sends one datagram; false when the kernel refused it (then it never arrives).
fn send_abstract(name: &[u8], data: &[u8]) -> bool {
    use std::os::linux::net::SocketAddrExt;
    let sock = UnixDatagram::unbound().unwrap();
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name[1..]).unwrap();
    // A datagram too big for the socket buffer is refused by the kernel: that is fine too.
    sock.send_to_addr(data, &addr).is_ok()
}

#[test]
fn ready_status_and_a_graceful_stop_through_notify_socket() {
    let argv = notifier(
        &[
            "RELOADING=1",
            "STATUS=warming up",
            "READY=1\nSTATUS=serving",
        ],
        WAIT_FOR_TERM,
    );
    let sup = supervisor(&[sd_group("n", argv, json!({"ready_timeout_ms": 30000}))]);
    sup.start_groups(&["n"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_status") == 2);
    let statuses: Vec<&str> = of_kind(&log, "worker_status")
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["warming up", "serving"]);
    let status = of_kind(&log, "worker_status")[0];
    assert_eq!(status["worker_id"], "n#1");
    assert_eq!(status["generation"], 1);
    assert_eq!(of_kind(&log, "worker_spawned")[0]["readiness"], "sd_notify");
    let snap = sup.snapshot_value();
    let w = &snap["n"][0];
    assert_eq!(w["status"], "serving");
    assert_eq!(w["ready"], true);
    assert_eq!(w["notify"]["reloading"], false);
    assert!(w["rss_bytes"].as_u64().unwrap() > 0);
    assert!(w["cpu_ms"].as_u64().is_some());
    assert_eq!(sup.status_value()["notify_dropped"], 0);
    sup.stop_groups(secs(30.0), false).unwrap();
    let log = drain_all(&sup);
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped[0]["exit_code"], 0, "{log:#?}");
    let snap = sup.snapshot_value();
    assert!(snap.get("n").is_none_or(|ws| ws
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["rss_bytes"].is_null())));
}

#[test]
fn only_the_worker_itself_counts_unless_notify_access_is_all() {
    // A child of the worker (same process group) says READY=1, then the worker says STATUS.
    let child_ready = r#"
import subprocess
subprocess.run([sys.executable, "-c", "import os, socket; a=os.environ['NOTIFY_SOCKET']; a='\\0'+a[1:]; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', a)"], check=True)
notify("STATUS=child has spoken")
"#
    .to_string()
        + WAIT_FOR_TERM;
    for (access, ready) in [("main", false), ("all", true)] {
        let argv = notifier(&[], &child_ready);
        let sup = supervisor(&[sd_group("a", argv, json!({"notify_access": access}))]);
        sup.start_groups(&["a"]).unwrap();
        let mut log = Vec::new();
        wait_events(&sup, &mut log, |l| count(l, "worker_status") == 1);
        // The child's datagram came first (it ended before the worker sent its own).
        assert_eq!(
            count(&log, "worker_ready"),
            usize::from(ready),
            "{access}: {log:#?}"
        );
        assert_eq!(sup.snapshot_value()["a"][0]["ready"], ready, "{access}");
        assert_eq!(
            sup.status_value()["notify_dropped"],
            u64::from(!ready),
            "{access}"
        );
        sup.stop_groups(secs(30.0), false).unwrap();
    }
}

/// Random datagrams from strangers (this process, another process) and garbage from a worker
/// itself: each is dropped and counted, nothing crashes, and only the worker that says READY=1
/// becomes ready.
#[test]
fn a_fuzzed_notify_socket_never_marks_the_wrong_worker_ready() {
    let quiet = notifier(&[], WAIT_FOR_TERM);
    let sup = supervisor(&[sd_group("quiet", quiet, json!({}))]);
    sup.start_groups(&["quiet"]).unwrap();
    let name = notify_address(&sup);
    // Foreign datagrams from this process: valid ones included.
    let mut seed: u64 = 0x5eed_1234_abcd;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut foreign = 0u64;
    for i in 0..300 {
        let data: Vec<u8> = match i % 4 {
            0 => b"READY=1".to_vec(),
            1 => b"READY=1\nSTATUS=impostor\nWATCHDOG=1".to_vec(),
            _ => {
                let len = (next() % 70_000) as usize;
                (0..len).map(|_| next() as u8).collect()
            }
        };
        if send_abstract(&name, &data) {
            foreign += 1;
        }
    }
    // And from another process that is no worker at all.
    let addr = String::from_utf8(name[1..].to_vec()).unwrap();
    let status = std::process::Command::new("python3")
        .arg("-c")
        // The sender is the child of a child: no child of the host, so a stranger at once.
        .arg(format!(
            "import os, socket\nif os.fork() == 0:\n    s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n    for _ in range(20): s.sendto(b'READY=1', '\\0{addr}')\n    os._exit(0)\nassert os.wait()[1] == 0"
        ))
        .status()
        .unwrap();
    assert!(status.success());
    foreign += 20;
    // A worker that sends garbage of its own (each has a NUL or is longer than any datagram
    // taken), then READY=1.
    let garbage = r#"
import random
rng = random.Random(7)
addr = "\0" + os.environ["NOTIFY_SOCKET"][1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
for i in range(200):
    n = rng.choice([1, 10, 100, 4000, 5000, 65536, 70000])
    data = bytes(rng.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 + 1)
    data = data[:n] if n > 4096 else data[:n - 1] + b"\0"
    try:
        s.sendto(data, addr)
    except OSError:
        notify("STATUS=refused")
notify("READY=1")
"#
    .to_string()
        + WAIT_FOR_TERM;
    let sup_groups = [
        sd_group("quiet", notifier(&[], WAIT_FOR_TERM), json!({})),
        sd_group("noisy", notifier(&[], &garbage), json!({})),
    ];
    sup.configure_json(&Value::Array(sup_groups.to_vec()).to_string())
        .unwrap();
    sup.start_groups(&["noisy"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_ready") == 1);
    let ready = of_kind(&log, "worker_ready");
    assert_eq!(ready[0]["worker_id"], "noisy#1");
    let snap = sup.snapshot_value();
    assert_eq!(snap["quiet"][0]["ready"], false);
    assert_eq!(snap["quiet"][0]["status"], Value::Null);
    assert_eq!(snap["quiet"][0]["alive"], true);
    let refused = count(&log, "worker_status") as u64;
    let status = sup.status_value();
    assert_eq!(
        status["notify_dropped"].as_u64().unwrap(),
        foreign + 200 - refused,
        "{status}"
    );
    sup.stop_groups(secs(30.0), false).unwrap();
}

#[test]
fn a_crashing_workers_failure_carries_its_last_stderr_lines() {
    let script = r#"for i in $(seq 1 30); do echo "err $i" >&2; echo "out $i"; done; printf 'no newline' >&2; exit 3"#;
    let sup = supervisor(&[with(
        sh_group("c", 1, script),
        json!({"stdout": "capture", "stderr": "capture", "output_tail_lines": 4,
               "control_channel": "off"}),
    )]);
    sup.start_groups(&["c"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    let failed = of_kind(&log, "worker_failed")[0];
    assert_eq!(failed["exit_code"], 3);
    assert_eq!(
        failed["stderr_tail"],
        json!(["err 28", "err 29", "err 30", "no newline"])
    );
    let snap = sup.snapshot_value();
    assert_eq!(snap["c"][0]["stderr_tail"], failed["stderr_tail"]);
    assert!(snap["c"][0]["rss_bytes"].is_null());
}

/// Lines that arrive many to a read (`seq` writes in blocks) keep exactly the tail's length:
/// the default from the schema, and one.
#[test]
fn a_tail_holds_exactly_its_length_of_lines_written_in_blocks() {
    let script = "seq 1 5000 >&2; exit 3";
    let group = |name: &str, extra: Value| {
        with(
            sh_group(name, 1, script),
            with(
                json!({"stderr": "capture", "control_channel": "off", "restart": "never"}),
                extra,
            ),
        )
    };
    let sup = supervisor(&[
        group("default", json!({})),
        group("one", json!({"output_tail_lines": 1})),
    ]);
    sup.start_groups(&["default", "one"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 2);
    let tail_of = |id: &str| {
        of_kind(&log, "worker_failed")
            .into_iter()
            .find(|e| e["worker_id"] == id)
            .unwrap()["stderr_tail"]
            .clone()
    };
    let default: Vec<String> = (4981..=5000).map(|n| n.to_string()).collect();
    assert_eq!(tail_of("default#1"), json!(default));
    assert_eq!(tail_of("one#1"), json!(["5000"]));
}

#[test]
fn output_lines_become_log_records_never_events() {
    let dir = TempDir::new("output-records");
    let log_path = dir.join("log.jsonl");
    let sup = supervisor(&[with(
        sh_group("o", 1, "echo hello; echo world >&2; exit 0"),
        json!({"stdout": "capture", "stderr": "capture", "control_channel": "off"}),
    )]);
    sup.configure_logging_json(
        &json!({"exporters": [{"kind": "jsonl", "settings": {"path": log_path}}]}).to_string(),
    )
    .unwrap();
    sup.start_groups(&["o"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    assert!(log
        .iter()
        .all(|e| !e["kind"].as_str().unwrap().contains("output")));
    drop(sup);
    let text = std::fs::read_to_string(&log_path).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["message"] == "worker.output")
        .collect();
    assert_eq!(records.len(), 2, "{text}");
    let line = |stream: &str| {
        records
            .iter()
            .find(|r| r["fields"]["stream"] == stream)
            .map(|r| r["fields"]["line"].as_str().unwrap().to_string())
    };
    assert_eq!(line("stdout").as_deref(), Some("hello"));
    assert_eq!(line("stderr").as_deref(), Some("world"));
    assert_eq!(records[0]["fields"]["worker_id"], "o#1");
}

/// Kills the process whose pid a worker wrote to a file, when the test ends however it ends.
struct KillOnDrop(std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(&self.0) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                // SAFETY: a plain kill of the grandchild this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                assert_dead(pid as i64);
            }
        }
    }
}

#[test]
fn a_grandchild_holding_the_pipe_never_delays_the_workers_exit() {
    let dir = TempDir::new("grandchild");
    let pidfile = dir.join("grandchild.pid");
    let _guard = KillOnDrop(pidfile.clone());
    // The grandchild leaves the process group (setsid), so nothing kills it with the worker,
    // and it keeps both pipes open.
    let script = format!(
        r#"import os, sys, time
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.setsid()
    os.close(r)
    os.write(w, b"x")
    os.close(w)
    time.sleep(1000)
    os._exit(0)
os.close(w)
os.read(r, 1)
with open({:?}, "w") as f:
    f.write(str(pid))
print("bye", flush=True)
os._exit(4)
"#,
        pidfile.display().to_string()
    );
    // Without cgroups: with them the grandchild would be killed at the worker's reap (what a
    // worker leaves in its cgroup goes with it), and the pipe would not be held.
    let sup = mpsupervisor::Supervisor::with_options(mpsupervisor::Options {
        cgroup: false,
        ..mpsupervisor::Options::default()
    })
    .unwrap();
    let group = json!({"name": "g", "argv": ["python3", "-c", script],
        "stdout": "capture", "stderr": "capture", "control_channel": "off"});
    sup.configure_json(&json!([group]).to_string()).unwrap();
    let started = Instant::now();
    sup.start_groups(&["g"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(of_kind(&log, "worker_failed")[0]["exit_code"], 4);
    // The grandchild still runs: it is what held the pipe.
    let pid: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(matches!(proc_state(pid), Some('S' | 'R')));
}

#[test]
fn a_rotating_file_keeps_at_most_keep_plus_one_files_within_the_bound() {
    let dir = TempDir::new("rotate");
    let path = dir.join("out.log");
    let (max_bytes, keep) = (100_000u64, 3u64);
    // 1 MB in lines of 100 bytes.
    let script = r#"import sys
for i in range(10000):
    sys.stdout.write("%099d\n" % i)
"#;
    let sup = supervisor(&[json!({"name": "r", "argv": ["python3", "-c", script],
        "control_channel": "off",
        "stdout": {"file": path, "max_bytes": max_bytes, "keep": keep}})]);
    sup.start_groups(&["r"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    assert_eq!(of_kind(&log, "worker_failed")[0]["exit_code"], 0);
    let dropped = sup.status_value()["output_bytes_dropped"].as_u64().unwrap();
    // Freeing waits for the file writer.
    drop(sup);
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    assert_eq!(files.len() as u64, keep + 1, "{files:?}");
    assert!(files.iter().all(|(_, len)| *len <= max_bytes), "{files:?}");
    assert!(files.iter().map(|(_, l)| l).sum::<u64>() <= (keep + 1) * max_bytes);
    assert_eq!(dropped, 0);
    // The newest file ends with the last line, and the files hold the last lines in order.
    let mut text = String::new();
    for name in ["out.log.3", "out.log.2", "out.log.1", "out.log"] {
        text += &std::fs::read_to_string(dir.join(name)).unwrap();
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(*lines.last().unwrap(), format!("{:099}", 9999));
    for pair in lines.windows(2) {
        let (a, b): (u64, u64) = (pair[0].parse().unwrap(), pair[1].parse().unwrap());
        assert_eq!(a + 1, b);
    }
    assert_eq!(lines.len(), 4000);
}

#[test]
fn a_worker_flooding_its_output_does_not_delay_a_stop_of_the_others() {
    let dir = TempDir::new("flood");
    let flood = r#"import os, signal, sys
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
line = b"x" * 99 + b"\n"
block = line * 650
while True:
    os.write(1, block)
"#;
    let sup = supervisor(&[
        json!({"name": "flood", "argv": ["python3", "-c", flood], "stdout": "capture",
               "control_channel": "off"}),
        with(sh_group("calm", 4, POLITE), json!({"readiness": "notify"})),
    ]);
    sup.configure_logging_json(
        &json!({"exporters": [{"kind": "jsonl", "settings": {"path": dir.join("log.jsonl")}}]})
            .to_string(),
    )
    .unwrap();
    sup.start_groups(&["flood", "calm"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    // Let the flood get going: wait until a megabyte of its lines was logged, or some dropped.
    let deadline = Instant::now() + HANG;
    let logged = || std::fs::metadata(dir.join("log.jsonl")).map_or(0, |m| m.len());
    while sup.log_records_dropped() == 0 && logged() < 1 << 20 {
        assert!(Instant::now() < deadline, "the flood never arrived");
        std::thread::yield_now();
    }
    let t = Instant::now();
    sup.snapshot_value();
    let snapshot_took = t.elapsed();
    let t = Instant::now();
    sup.stop_groups(secs(30.0), true).unwrap();
    let stop_took = t.elapsed();
    assert!(
        stop_took < Duration::from_secs(5),
        "stop took {stop_took:?}"
    );
    assert!(snapshot_took < Duration::from_secs(1), "{snapshot_took:?}");
    let log = drain_all(&sup);
    assert_eq!(count(&log, "worker_stopped"), 5, "{log:#?}");
}

#[test]
fn watchdog_pings_are_heartbeats_and_watchdog_usec_is_set() {
    let beats = r#"
notify("STATUS=" + os.environ.get("WATCHDOG_USEC", "unset"))
notify("READY=1")
for _ in range(40):
    notify("WATCHDOG=1")
    time.sleep(0.05)
notify("STATUS=silent")
"#
    .to_string()
        + WAIT_FOR_TERM;
    let sup = supervisor(&[sd_group(
        "w",
        notifier(&[], &beats),
        json!({"heartbeat_timeout_ms": 1500}),
    )]);
    sup.start_groups(&["w"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    let kinds: Vec<&str> = log
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .filter(|k| matches!(*k, "worker_status" | "worker_ready" | "worker_failed"))
        .collect();
    // Two seconds of pings with a 1.5 s timeout: failed only once they stopped.
    assert_eq!(
        kinds,
        [
            "worker_status",
            "worker_ready",
            "worker_status",
            "worker_failed"
        ],
        "{log:#?}"
    );
    assert_eq!(of_kind(&log, "worker_status")[0]["status"], "1500000");
    assert_eq!(
        of_kind(&log, "worker_failed")[0]["reason"],
        "heartbeat_timeout"
    );
}

#[test]
fn extend_timeout_usec_moves_the_ready_deadline() {
    let slow = r#"
notify("EXTEND_TIMEOUT_USEC=20000000")
time.sleep(3.0)
notify("READY=1")
"#
    .to_string()
        + WAIT_FOR_TERM;
    let sup = supervisor(&[
        // Two seconds leave room for a slow Python start before the extension arrives.
        sd_group(
            "slow",
            notifier(&[], &slow),
            json!({"ready_timeout_ms": 2000}),
        ),
        // The same without the extension fails, so the timeout is real.
        sd_group(
            "late",
            notifier(&[], "time.sleep(3.0)\nnotify('READY=1')\n"),
            json!({"ready_timeout_ms": 2000}),
        ),
        // Half a second in microseconds is half a second: it ends, and the worker fails (read
        // as milliseconds it would wait for 500 s, past the events' wait).
        sd_group(
            "short",
            notifier(&["EXTEND_TIMEOUT_USEC=500000"], "time.sleep(1000)\n"),
            json!({"ready_timeout_ms": 2000, "restart": "never"}),
        ),
    ]);
    sup.start_groups(&["slow", "late", "short"]).unwrap();
    let mut log = Vec::new();
    let failed = |l: &[Value], id: &str| {
        of_kind(l, "worker_failed")
            .iter()
            .any(|e| e["worker_id"] == id)
    };
    wait_events(&sup, &mut log, |l| {
        count(l, "worker_ready") >= 1 && failed(l, "late#1") && failed(l, "short#1")
    });
    assert_eq!(of_kind(&log, "worker_ready")[0]["worker_id"], "slow#1");
    let failed: Vec<(&Value, &Value)> = of_kind(&log, "worker_failed")
        .into_iter()
        .map(|e| (&e["worker_id"], &e["reason"]))
        .collect();
    for id in ["late#1", "short#1"] {
        assert!(
            failed.contains(&(&json!(id), &json!("ready_timeout"))),
            "{failed:?}"
        );
    }
    sup.stop_groups(secs(30.0), false).unwrap();
}

/// Where the early notifier of the next test says it has sent READY=1.
static SENT_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Holds each spawn back until its process has sent READY=1, so that the datagram is there
/// before the worker is adopted.
fn wait_until_sent(pid: i32) {
    let marker = SENT_DIR.get().unwrap().join(pid.to_string());
    let deadline = Instant::now() + HANG;
    while !marker.exists() && Instant::now() < deadline {
        std::thread::yield_now();
    }
}

#[test]
fn ready_1_sent_before_the_worker_is_adopted_still_counts() {
    let dir = TempDir::new("early-ready");
    SENT_DIR.set(dir.to_path_buf()).unwrap();
    let early = format!(
        "open(os.path.join({:?}, str(os.getpid())), 'w').close()\n",
        dir.display().to_string()
    );
    let argv = notifier(&["READY=1\nSTATUS=early"], &(early + WAIT_FOR_TERM));
    let sup = mpsupervisor::Supervisor::with_options(mpsupervisor::Options {
        spawn_hook: Some(wait_until_sent),
        ..Default::default()
    })
    .unwrap();
    sup.configure_json(&json!([sd_group("e", argv, json!({"workers": 2}))]).to_string())
        .unwrap();
    sup.start_groups(&["e"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let snap = sup.snapshot_value();
    assert!(snap["e"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["status"] == "early"));
    assert_eq!(sup.status_value()["notify_dropped"], 0);
    sup.stop_groups(secs(30.0), false).unwrap();
}
