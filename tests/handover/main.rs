//! The host hands its workers to its next image (API.md part 9), with real processes: a C host
//! (tests/programs/handover_host.c) prepares, `exec`s itself and adopts. Same pids, events kept,
//! a graceful stop over the original control sockets; an exit between the images is seen and
//! respawned; `abort` leaves a live handle; a host killed between prepare and adopt takes its
//! workers with it; a state of another format is refused and its workers killed; and a
//! pre-fork HTTP server is handed over again and again under load without a failed request.
//! What format 2 carries crosses a real `exec` too (captured output, `reuse_port`, the workers'
//! cgroups, the event fd at its number), each descriptor close-on-exec again, and the keeper
//! still takes workers and cgroups with a host killed after the adoption.

mod carried;
#[path = "../cgroup_guard/mod.rs"]
mod cgroup_guard;
#[path = "../common/mod.rs"]
mod common;
#[path = "../hosts/mod.rs"]
mod hosts;
mod images;
mod prefork;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hosts::{Guard, Lines};
use serde_json::{json, Value};

fn host() -> PathBuf {
    build_c(
        "handover_host",
        &["tests/programs/handover_host.c"],
        true,
        &[],
    )
}

fn polite(workers: u32) -> String {
    json!([with(
        sh_group("g", workers, POLITE),
        json!({"readiness": "notify", "restart": "on-failure", "restart_delay_ms": 0}),
    )])
    .to_string()
}

/// Processes SIGKILLed when dropped, if still running: a failing test leaves none.
#[derive(Default)]
struct Killer(Mutex<BTreeSet<i64>>);

impl Killer {
    fn add(&self, pids: &[i64]) {
        self.0.lock().unwrap().extend(pids);
    }
}

impl Drop for Killer {
    fn drop(&mut self) {
        for &pid in self.0.lock().unwrap().iter() {
            if alive(pid) {
                // SAFETY: plain system call.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

fn alive(pid: i64) -> bool {
    !matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// What a host printed, by tag, in order.
struct Run {
    host: Guard,
    lines: Lines,
    seen: Vec<(String, String)>,
}

impl Run {
    fn start(mode: &str, groups: &str, env: &[(&str, &str)]) -> Run {
        Run::start_with(mode, groups, "0", env)
    }

    fn start_with(mode: &str, groups: &str, rounds: &str, env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(host());
        cmd.arg(mode)
            .arg(groups)
            .arg(rounds)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut host = Guard::new(cmd.spawn().unwrap());
        let lines = Lines::new(host.child().stdout.take().unwrap());
        Run {
            host,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one tagged `tag` (returned, with what it said); panics at the end.
    fn until(&mut self, tag: &str) -> String {
        loop {
            let line = self.lines.next_within(HANG).unwrap_or_else(|| {
                panic!("the host ended before {tag}; it said: {:#?}", self.seen)
            });
            let (t, rest) = line.split_once(' ').unwrap_or((&line, ""));
            self.seen.push((t.to_string(), rest.to_string()));
            assert_ne!(t, "ERROR", "{line}\n{:#?}", self.seen);
            if t == tag {
                return rest.to_string();
            }
        }
    }

    fn json(&mut self, tag: &str) -> Value {
        serde_json::from_str(&self.until(tag)).unwrap()
    }

    fn said(&self, tag: &str) -> Vec<&str> {
        self.seen
            .iter()
            .filter(|(t, _)| t == tag)
            .map(|(_, r)| r.as_str())
            .collect()
    }

    fn exit_code(&mut self) -> Option<i32> {
        self.host.wait_within(HANG).expect("the host hung").code()
    }

    /// The events the host printed last, once it said DONE and exited 0.
    fn finish(&mut self) -> Vec<Value> {
        let log = events(&self.until("EVENTS"));
        self.until("DONE");
        assert_eq!(self.exit_code(), Some(0));
        log
    }
}

/// `workers` workers were stopped, each exiting 0 (only `STOP` on its control socket does that).
fn assert_stopped_with_0(log: &[Value], workers: usize) {
    let stopped = of_kind(log, "worker_stopped");
    assert_eq!(stopped.len(), workers, "{log:#?}");
    assert!(stopped.iter().all(|e| e["exit_code"] == 0), "{log:#?}");
}

/// Every event the host printed, its drains joined.
fn events(text: &str) -> Vec<Value> {
    let arrays: Vec<Vec<Value>> = serde_json::from_str(text).unwrap();
    arrays.into_iter().flatten().collect()
}

fn worker_pids(snapshot: &Value) -> Vec<i64> {
    pids(snapshot, "g")
}

/// Waits until every pid is gone or a zombie (PID 1 here reaps no orphan); false after `limit`.
fn all_die(pids: &[i64], limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}
