//! The host hands its workers to its next image (API.md part 9), with real processes: a C host
//! (tests/programs/handover_host.c) prepares, `exec`s itself and adopts. Same pids, events kept,
//! a graceful stop over the original control sockets; an exit between the images is seen and
//! respawned; `abort` leaves a live handle; a host killed between prepare and adopt takes its
//! workers with it; a state of another format is refused and its workers killed; and a
//! pre-fork HTTP server is handed over again and again under load without a failed request.
//! What format 2 carries crosses a real `exec` too (captured output, `reuse_port`, the workers'
//! cgroups, the event fd at its number), each descriptor close-on-exec again, and the keeper
//! still takes workers and cgroups with a host killed after the adoption.

mod cgroup_guard;
mod common;
mod hosts;

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
}

/// Every event the host printed, its drains joined.
fn events(text: &str) -> Vec<Value> {
    let arrays: Vec<Vec<Value>> = serde_json::from_str(text).unwrap();
    arrays.into_iter().flatten().collect()
}

fn worker_pids(snapshot: &Value) -> Vec<i64> {
    pids(snapshot, "g")
}

/// The new image has the same workers, the events of the first image, `supervisor_adopted`,
/// no descriptor of the library left inheritable, and a graceful stop reaches every worker over
/// the control socket the first image made (only `STOP` on it ends them with 0).
#[test]
fn the_next_image_adopts_the_same_workers() {
    let killer = Killer::default();
    let mut run = Run::start("basic", &polite(3), &[]);
    let before = run.json("SNAPSHOT");
    killer.add(&worker_pids(&before));
    run.until("ADOPTED");
    let after = run.json("SNAPSHOT");
    assert_eq!(run.said("INHERITABLE"), Vec::<&str>::new());
    assert_eq!(run.said("MEMFD_OPEN"), Vec::<&str>::new());
    assert_eq!(worker_pids(&after), worker_pids(&before), "{after}");
    assert!(after["g"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["ready"] == true));
    let log = events(&run.until("EVENTS"));
    run.until("DONE");
    assert_eq!(run.exit_code(), Some(0));
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{log:#?}"
    );
    // What the first image left undrained comes first.
    let adopted = log
        .iter()
        .position(|e| e["kind"] == "supervisor_adopted")
        .expect("supervisor_adopted");
    assert_eq!(count(&log[..adopted], "worker_spawned"), 3, "{log:#?}");
    assert_eq!(log[adopted]["workers"], 3);
    assert_eq!(log[adopted]["exited_meanwhile"], 0);
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 3, "{log:#?}");
    for e in stopped {
        assert_eq!(e["mode"], "graceful", "{e}");
        assert_eq!(e["exit_code"], 0, "{e}");
    }
    for pid in worker_pids(&before) {
        assert_gone(pid);
    }
}

/// A rolling restart of workers that take 0.5 s to be ready crosses an `exec` in its middle:
/// the prepare succeeds, the new image finishes the rollout (every worker of the new
/// generation), the worker replaced before the `exec` keeps its pid, and the old workers stopped
/// after it get `STOP` over the control sockets the first image made (graceful, exit 0).
#[test]
fn a_rollout_crosses_the_exec_and_finishes() {
    let killer = Killer::default();
    let slow = POLITE.replacen("echo READY", "sleep 0.5; echo READY", 1);
    let groups = json!([with(
        sh_group("g", 3, &slow),
        json!({"readiness": "notify"})
    )]);
    let mut run = Run::start("rolling", &groups.to_string(), &[]);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let first = events(&run.until("EVENTS1"));
    let replaced: Vec<&Value> = of_kind(&first, "worker_replaced");
    assert_eq!(replaced.len(), 1, "{first:#?}");
    killer.add(&[replaced[0]["new_pid"].as_i64().unwrap()]);
    run.until("ADOPTED");
    let after = run.json("SNAPSHOT");
    killer.add(&worker_pids(&after));
    let log = events(&run.until("EVENTS"));
    run.until("DONE");
    assert_eq!(run.exit_code(), Some(0));
    let adopted = log
        .iter()
        .position(|e| e["kind"] == "supervisor_adopted")
        .expect("supervisor_adopted");
    let finished = log
        .iter()
        .position(|e| e["kind"] == "rollout_finished")
        .expect("rollout_finished");
    assert!(adopted < finished, "{log:#?}");
    assert_eq!(count(&log, "worker_replaced"), 2, "{log:#?}");
    let generation = &log[finished]["generation"];
    let workers = after["g"].as_array().unwrap();
    assert_eq!(workers.len(), 3, "{after}");
    assert!(workers
        .iter()
        .all(|w| &w["generation"] == generation && w["ready"] == true));
    let slot = &replaced[0]["worker_id"];
    let kept = workers.iter().find(|w| &w["worker_id"] == slot).unwrap();
    assert_eq!(kept["pid"], replaced[0]["new_pid"], "{after}");
    // Old workers stopped after the exec, over the first image's control sockets.
    let old_stopped: Vec<&Value> = of_kind(&log, "worker_stopped")
        .into_iter()
        .filter(|e| e["generation"] != *generation)
        .collect();
    assert!(!old_stopped.is_empty(), "{log:#?}");
    for e in old_stopped {
        assert!(before.contains(&e["pid"].as_i64().unwrap()));
        assert_eq!(
            (&e["mode"], &e["exit_code"]),
            (&json!("graceful"), &json!(0)),
            "{e}"
        );
    }
    for pid in before {
        assert_gone(pid);
    }
}

/// A worker that exits while the host is between images is seen by the next one and goes
/// through the restart policy; the others keep their pids.
#[test]
fn an_exit_between_the_images_is_seen_and_respawned() {
    let killer = Killer::default();
    let mut run = Run::start("meanwhile", &polite(3), &[]);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let exited = run.until("EXITED");
    assert_eq!(
        exited,
        format!("{} Z", before[0]),
        "unreaped until the next image"
    );
    run.until("ADOPTED");
    let after = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&after);
    let log = events(&run.until("EVENTS"));
    run.until("DONE");
    assert_eq!(run.exit_code(), Some(0));
    assert_eq!(after.len(), 3);
    assert_ne!(after[0], before[0]);
    assert_eq!(after[1..], before[1..]);
    let adopted = of_kind(&log, "supervisor_adopted");
    assert_eq!(adopted[0]["exited_meanwhile"], 1, "{log:#?}");
    let failed = of_kind(&log, "worker_failed");
    assert_eq!(failed.len(), 1, "{log:#?}");
    assert_eq!(failed[0]["pid"], before[0]);
    assert_eq!(failed[0]["signal"], libc::SIGTERM);
    assert!(of_kind(&log, "worker_spawned")
        .iter()
        .any(|e| e["pid"] == after[0]));
    assert_eq!(count(&log, "worker_stopped"), 3, "{log:#?}");
}

/// `abort` after `prepare` (an `exec` that failed): meanwhile the handle refuses calls; after
/// it the library's descriptors are close-on-exec again, the memfd closed, and the handle
/// stops its workers gracefully as usual.
#[test]
fn abort_leaves_a_live_handle() {
    let killer = Killer::default();
    let mut run = Run::start("abort", &polite(2), &[]);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    assert_eq!(run.until("LOCKED"), "MPSUP_ERR_INVALID_HANDLE");
    let after = worker_pids(&run.json("SNAPSHOT"));
    assert_eq!(run.said("INHERITABLE"), Vec::<&str>::new());
    assert_eq!(run.said("MEMFD_OPEN"), Vec::<&str>::new());
    assert_eq!(after, before);
    let log = events(&run.until("EVENTS"));
    run.until("DONE");
    assert_eq!(run.exit_code(), Some(0));
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 2, "{log:#?}");
    assert!(stopped.iter().all(|e| e["exit_code"] == 0), "{log:#?}");
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

/// The keeper watches the same pid across the handover: a host SIGKILLed between prepare and
/// adopt still takes every worker with it.
#[test]
fn a_host_killed_between_prepare_and_adopt_takes_its_workers() {
    let killer = Killer::default();
    let mut run = Run::start("die", &polite(3), &[]);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let status = run.json("STATUS");
    assert_eq!(status["guarantees"]["host_death"], "keeper", "{status}");
    run.until("PREPARED");
    assert!(before.iter().all(|&p| alive(p)));
    let host = run.host.pid();
    // SAFETY: plain system call on our own child.
    unsafe { libc::kill(host, libc::SIGKILL) };
    run.host.wait_within(HANG).expect("the host did not die");
    assert!(
        all_die(&before, Duration::from_secs(10)),
        "workers outlived their host: {before:?}"
    );
}

/// A state whose format this library does not read is refused naming both versions, and its
/// workers are killed rather than left without a supervisor.
#[test]
fn a_state_of_another_format_is_refused_and_its_workers_killed() {
    let killer = Killer::default();
    let mut run = Run::start("badversion", &polite(3), &[]);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let refused = run.until("REFUSED");
    assert!(
        refused.starts_with("MPSUP_ERR_INVALID_ARGUMENT "),
        "{refused}"
    );
    let version = env!("CARGO_PKG_VERSION");
    for needle in [
        format!("written by mpsupervisor {version} (state format 9)"),
        format!("this is mpsupervisor {version} (state format 2)"),
        "its workers were killed".to_string(),
    ] {
        assert!(refused.contains(&needle), "{needle:?} not in {refused}");
    }
    // Killed and reaped by the refusing image, before the call returned.
    for &pid in &before {
        assert!(!alive(pid), "worker {pid} outlived the refusal");
    }
    assert_eq!(run.exit_code(), Some(0));
}

fn web(version: &str) -> Value {
    json!([{"name": "web", "workers": 4, "argv": ["python3", prefork_server().to_str().unwrap()],
            "readiness": "sd_notify", "restart": "on-failure",
            "listen": [{"name": "http", "tcp": "127.0.0.1:0"}], "env": {"VERSION": version}}])
}

/// What the client got: answers by version, and the failures.
#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    failed: Vec<String>,
    versions: std::collections::BTreeMap<String, u64>,
}

/// Sends requests back to back on two threads until `stop`; counts the answers of version 2 in
/// `new`.
fn load(
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    new: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<Tally>> {
    (0..2)
        .map(|_| {
            let (stop, new) = (Arc::clone(&stop), Arc::clone(&new));
            std::thread::spawn(move || {
                let mut t = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    match http_get(address, "/") {
                        Ok(body) => {
                            t.ok += 1;
                            let version = body.split(' ').next().unwrap_or("").to_string();
                            if version == "2" {
                                new.fetch_add(1, Ordering::Relaxed);
                            }
                            *t.versions.entry(version).or_default() += 1;
                        }
                        Err(e) => t.failed.push(e.to_string()),
                    }
                }
                t
            })
        })
        .collect()
}

/// Zero failed requests: a host serving HTTP through a listen-socket group of pre-fork workers
/// hands them to its next image every second (`MPSUP_HANDOVER_ROUNDS` times, 10 by default;
/// 60 is the full minute of API.md part 9) while a client sends requests in a loop, then rolls
/// them out to a new version. No request fails; the workers' pids never change across the
/// handovers.
#[test]
fn a_prefork_http_server_is_handed_over_without_a_failed_request() {
    let rounds: u32 = std::env::var("MPSUP_HANDOVER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let killer = Killer::default();
    let config2 = web("2").to_string();
    let env = [("GROUP", "web"), ("CONFIG2", config2.as_str())];
    let rounds_text = rounds.to_string();
    let mut run = Run::start_with("http", &web("1").to_string(), &rounds_text, &env);
    let first = pids(&run.json("SNAPSHOT"), "web");
    killer.add(&first);
    assert_eq!(first.len(), 4);
    let status = run.json("STATUS");
    let address: SocketAddr = status["groups"]["web"]["listen"][0]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let new = Arc::new(AtomicU64::new(0));
    let clients = load(address, Arc::clone(&stop), Arc::clone(&new));
    let started = Instant::now();
    for round in 0..=rounds {
        run.until("ADOPTED");
        let now = pids(&run.json("SNAPSHOT"), "web");
        assert_eq!(now, first, "after handover {round}");
    }
    run.until("ROLLED");
    let handing = started.elapsed();
    // The client goes on until answers of the new version came.
    let until = Instant::now() + HANG;
    while new.load(Ordering::Relaxed) < 100 && Instant::now() < until {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    writeln!(run.host.child().stdin.as_mut().unwrap(), "go").unwrap();
    let snapshot = run.json("SNAPSHOT");
    killer.add(&pids(&snapshot, "web"));
    // The new build's workers (an old one may still be finishing its graceful stop).
    let after = ready_pids_of(&snapshot, "web");
    assert_eq!(after.len(), 4, "{snapshot}");
    run.until("DONE");
    assert_eq!(run.exit_code(), Some(0));
    let failed: Vec<&String> = tallies.iter().flat_map(|t| &t.failed).collect();
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let v2: u64 = tallies
        .iter()
        .map(|t| t.versions.get("2").copied().unwrap_or(0))
        .sum();
    eprintln!(
        "{rounds} handovers in {handing:?}: {ok} requests answered, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert!(ok > u64::from(rounds), "too few requests: {ok}");
    assert!(v2 >= 100, "too few answers of the new version: {tallies:?}");
    assert!(
        after.iter().all(|p| !first.contains(p)),
        "{first:?} {after:?}"
    );
}

/// Removes the cgroups a host's supervisor left (a failing test leaves none).
struct HostCgroups(u32);

impl Drop for HostCgroups {
    fn drop(&mut self) {
        cgroup_guard::remove_all(cgroup_guard::of_host(self.0));
    }
}

/// Says hello (on stdout and stderr), numbers lines on stdout in a loop in the background
/// (`n PID I`, a pause every 20), and says goodbye when told to stop over its control socket.
const CHATTY: &str = r#"
echo "hello $$"; echo "hello $$" >&2
( i=0; while :; do echo "n $$ $i"; i=$((i+1)); case $i in *[02468]0) sleep 0.01;; esac; done ) &
echo READY >&"$MPSUP_CONTROL_FD"
while read -r line <&"$MPSUP_CONTROL_FD"; do
  case "$line" in STOP*) echo "bye $$"; exit 0;; esac
done
"#;

/// Two workers with all that format 2 carries: stdout to a rotating file at `out`, stderr
/// captured, `reuse_port` sockets, cgroup limits.
fn everything(out: &std::path::Path) -> Value {
    with(
        sh_group("g", 2, CHATTY),
        json!({"readiness": "notify", "stdout": {"file": out, "max_bytes": 1_000_000, "keep": 1},
               "stderr": "capture", "reuse_port": true,
               "listen": [{"name": "http", "tcp": "127.0.0.1:0"}],
               "memory_max": "64M", "pids_max": 32}),
    )
}

/// Each worker's numbered lines in `text` (`n PID I`): none lost or doubled, in order.
fn assert_numbered(text: &str, workers: &[i64]) {
    for pid in workers {
        let prefix = format!("n {pid} ");
        let numbers: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(!numbers.is_empty(), "{pid}");
        assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());
    }
}

/// Everything format 2 carries, across a real `exec`: a group with stdout to a rotating file,
/// stderr captured, `reuse_port` sockets and cgroup limits, and a host that polls the event fd.
/// Nothing is refused; no descriptor is left inheritable; the event fd has the same number and
/// is readable; the file has the lines of both images; the stop reaches every worker; the
/// freed supervisor leaves no cgroup.
#[test]
fn what_format_2_carries_crosses_a_real_exec() {
    let killer = Killer::default();
    let dir = scratch_dir("handover-carry");
    let out = dir.join("out.log");
    let group = everything(&out);
    let go = dir.join("go");
    let env = [("EVENT_FD", "1"), ("WAIT_FOR", go.to_str().unwrap())];
    let mut run = Run::start("basic", &json!([group]).to_string(), &env);
    let host = run.host.pid() as u32;
    let _cgroups = HostCgroups(host);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let status = run.json("STATUS");
    assert_eq!(status["guarantees"]["limits"], "cgroup1", "{status}");
    let number = run.until("EVENT_FD");
    run.until("ADOPTED");
    // Each worker's loop goes on writing after the adoption, and its lines land.
    let numbered = |pid: i64| {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let prefix = format!("n {pid} ");
        text.lines().filter(|l| l.starts_with(&prefix)).count()
    };
    let landed: Vec<usize> = before.iter().map(|&p| numbered(p)).collect();
    let until = Instant::now() + HANG;
    while before
        .iter()
        .zip(&landed)
        .any(|(&p, &n)| numbered(p) < n + 100)
    {
        assert!(Instant::now() < until, "no output after the adoption");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(&go, b"").unwrap();
    assert_eq!(run.until("EVENT_FD"), format!("{number} 1"));
    assert_eq!(run.said("INHERITABLE"), Vec::<&str>::new());
    assert_eq!(run.said("MEMFD_OPEN"), Vec::<&str>::new());
    let after = worker_pids(&run.json("SNAPSHOT"));
    assert_eq!(after, before);
    let log = events(&run.until("EVENTS"));
    run.until("DONE");
    assert_eq!(run.exit_code(), Some(0));
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 2, "{log:#?}");
    assert!(stopped.iter().all(|e| e["exit_code"] == 0), "{log:#?}");
    let text = read(&out);
    assert_numbered(&text, &before);
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("n "))
        .map(str::to_string)
        .collect();
    lines.sort();
    let mut want: Vec<String> = before
        .iter()
        .flat_map(|p| [format!("bye {p}"), format!("hello {p}")])
        .collect();
    want.sort();
    assert_eq!(lines, want);
    assert_eq!(cgroup_guard::of_host(host), Vec::<PathBuf>::new());
}

/// `abort` with all that format 2 carries: every descriptor (the event fd, the output pipes)
/// is close-on-exec again, the output goes on whole, and the cgroups go at free.
#[test]
fn abort_with_what_format_2_carries_leaves_nothing_inheritable() {
    let killer = Killer::default();
    let dir = scratch_dir("handover-carry-abort");
    let out = dir.join("out.log");
    let config = json!([everything(&out)]).to_string();
    let mut run = Run::start("abort", &config, &[("EVENT_FD", "1")]);
    let host = run.host.pid() as u32;
    let _cgroups = HostCgroups(host);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    run.until("EVENT_FD");
    assert_eq!(run.until("LOCKED"), "MPSUP_ERR_INVALID_HANDLE");
    assert_eq!(worker_pids(&run.json("SNAPSHOT")), before);
    assert_eq!(run.said("INHERITABLE"), Vec::<&str>::new());
    assert_eq!(run.said("MEMFD_OPEN"), Vec::<&str>::new());
    run.until("DONE");
    assert_eq!(run.exit_code(), Some(0));
    assert_numbered(&read(&out), &before);
    assert_eq!(cgroup_guard::of_host(host), Vec::<PathBuf>::new());
}

/// The keeper (same pid, its socket carried) still does its work after an adoption: a host
/// SIGKILLed then takes its workers, a `setsid` grandchild in their cgroups, and the cgroups.
#[test]
fn a_host_killed_after_adoption_takes_its_workers_and_cgroups() {
    let killer = Killer::default();
    let dir = scratch_dir("handover-keeper");
    let grandchild = dir.join("grandchild");
    let script = format!(
        "setsid sleep 1000 & echo $! > {}; {POLITE}",
        grandchild.display()
    );
    let group = with(
        sh_group("g", 1, &script),
        json!({"readiness": "notify", "memory_max": "64M"}),
    );
    let mut run = Run::start("dieafter", &json!([group]).to_string(), &[]);
    let host = run.host.pid();
    let _cgroups = HostCgroups(host as u32);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let escaped: i64 = read(&grandchild).trim().parse().unwrap();
    killer.add(&[escaped]);
    run.until("ADOPTED");
    assert_eq!(worker_pids(&run.json("SNAPSHOT")), before);
    let cgroups = cgroup_guard::of_host(host as u32);
    assert!(!cgroups.is_empty());
    // SAFETY: plain system call on our own child.
    unsafe { libc::kill(host, libc::SIGKILL) };
    run.host.wait_within(HANG).expect("the host did not die");
    let all: Vec<i64> = before.iter().copied().chain([escaped]).collect();
    assert!(
        all_die(&all, Duration::from_secs(10)),
        "{all:?} outlived their host"
    );
    for dir in &cgroups {
        cgroup_guard::wait_gone(dir);
    }
}
