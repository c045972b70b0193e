//! cgroup limits (API.md part 7): `memory_max` ends a worker that allocates past it with reason
//! `oom_killed`; `pids_max` makes a fork past it fail; `cpu_max: "20%"` keeps a busy worker
//! near a fifth of a core; a host that cannot write the hierarchies gets `MPSUP_ERR_UNSUPPORTED`
//! naming the key; `guarantees.limits` says which cgroups hold them. Real cgroups, real
//! processes. The tests run one at a time (each owns every `mpsup-<our pid>-*` cgroup while it
//! runs) and a guard removes whatever cgroups of ours are left, even when a test fails; each
//! checks that the library removed its own once the supervisor is freed.

mod cgroup_guard;
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cgroup_guard::*;
use common::*;
use mpsupervisor::{Error, Supervisor};
use serde_json::{json, Value};

fn hog() -> PathBuf {
    build_c("hog", &["tests/programs/hog.c"], false, &[])
}

fn group(name: &str, argv: &[&str], extra: Value) -> Value {
    let g = json!({"name": name, "argv": argv, "control_channel": "off", "warmup_ms": 1});
    with(g, extra)
}

fn worker_pid(sup: &Supervisor, group: &str) -> i64 {
    let snapshot = sup.snapshot_value();
    pids(&snapshot, group)[0]
}

#[test]
fn a_worker_past_memory_max_fails_with_oom_killed_and_is_respawned() {
    let _cgroups = Cgroups::guard();
    let hog = hog();
    let sup = supervisor(&[group(
        "mem",
        &[hog.to_str().unwrap(), "mem", "256"],
        json!({"memory_max": "32M", "restart": "on-failure", "restart_delay_ms": 10}),
    )]);
    sup.start_groups(&["mem"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 2);
    let failed = of_kind(&log, "worker_failed");
    for f in &failed {
        assert_eq!(f["reason"], "oom_killed", "{f}");
        assert_eq!(f["signal"], libc::SIGKILL, "{f}");
        assert_eq!(f["worker_id"], "mem#1", "{f}");
    }
    // The second is the respawn of the first: another process, in another cgroup.
    assert_ne!(failed[0]["pid"], failed[1]["pid"]);
    let spawned = of_kind(&log, "worker_spawned");
    assert!(spawned.len() >= 2, "{log:?}");
    let snapshot = sup.snapshot_value();
    assert_eq!(
        snapshot["mem"][0]["last_exit"]["reason"], "oom_killed",
        "{snapshot}"
    );
    sup.stop_groups(secs(10.0), false).unwrap();
    free_and_check(sup);
}

#[test]
fn a_worker_that_exits_under_its_memory_max_is_not_oom_killed() {
    let _cgroups = Cgroups::guard();
    let hog = hog();
    // 16 MiB allocated, 64 MiB allowed: it exits 0 on its own.
    let sup = supervisor(&[group(
        "mem",
        &[hog.to_str().unwrap(), "mem", "16"],
        json!({"memory_max": "64M"}),
    )]);
    sup.start_groups(&["mem"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    let failed = of_kind(&log, "worker_failed")[0];
    assert_eq!(
        (&failed["reason"], &failed["exit_code"]),
        (&json!("exited"), &json!(0)),
        "{failed}"
    );
    free_and_check(sup);
}

#[test]
fn a_worker_cannot_fork_past_pids_max() {
    let _cgroups = Cgroups::guard();
    let hog = hog();
    let dir = scratch_dir("pids");
    let out = dir.join("forks");
    let sup = supervisor(&[group(
        "forks",
        &[hog.to_str().unwrap(), "fork", "50", out.to_str().unwrap()],
        json!({"pids_max": 8}),
    )]);
    sup.start_groups(&["forks"]).unwrap();
    let until = Instant::now() + HANG;
    while !out.exists() {
        assert!(Instant::now() < until, "the worker never wrote its count");
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = read(&out);
    let mut f = text.split_whitespace().map(|n| n.parse::<i32>().unwrap());
    let (forks, errno) = (f.next().unwrap(), f.next().unwrap());
    // The worker itself is one of the 8 tasks.
    assert_eq!((forks, errno), (7, libc::EAGAIN), "{text}");
    let pid = worker_pid(&sup, "forks");
    let cg = worker_dir(pid, "pids");
    assert!(cg.to_string_lossy().contains("mpsup-"), "{}", cg.display());
    assert_eq!(read(&cg.join("pids.max")).trim(), "8");
    sup.stop_groups(secs(10.0), false).unwrap();
    // The worker's cgroup goes once it is reaped, before the supervisor is freed; its
    // children, killed with it, are not left in it.
    wait_gone(&cg);
    free_and_check(sup);
}

/// CPU time of a process in seconds, from /proc/PID/stat (utime + stime).
fn cpu_seconds(pid: i64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: plain libc call.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[test]
fn cpu_max_keeps_a_busy_worker_near_a_fifth_of_a_core() {
    let _cgroups = Cgroups::guard();
    let hog = hog();
    let sup = supervisor(&[group(
        "spin",
        &[hog.to_str().unwrap(), "spin"],
        json!({"cpu_max": "20%"}),
    )]);
    sup.start_groups(&["spin"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let pid = worker_pid(&sup, "spin");
    let cg = worker_dir(pid, "cpu");
    assert_eq!(read(&cg.join("cpu.cfs_quota_us")).trim(), "20000");
    assert_eq!(read(&cg.join("cpu.cfs_period_us")).trim(), "100000");
    // Measured over a second of wall time (a measurement, not a wait for something).
    let (t0, c0) = (Instant::now(), cpu_seconds(pid));
    std::thread::sleep(Duration::from_secs(1));
    let share = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64();
    assert!(share > 0.05 && share < 0.35, "share of a core: {share:.3}");
    sup.stop_groups(secs(10.0), false).unwrap();
    free_and_check(sup);
}

#[test]
fn memory_high_on_a_v1_memory_controller_is_unsupported() {
    let _cgroups = Cgroups::guard();
    let v2_has_memory = own_dir(None)
        .and_then(|d| std::fs::read_to_string(d.join("cgroup.controllers")).ok())
        .is_some_and(|c| c.split_whitespace().any(|x| x == "memory"));
    let sup = supervisor(&[group(
        "high",
        &["/bin/sleep", "1000"],
        json!({"memory_high": "64M"}),
    )]);
    let r = sup.start_groups(&["high"]);
    if v2_has_memory {
        r.unwrap();
    } else {
        match r {
            Err(Error::Unsupported(m)) => {
                assert!(m.contains("memory_high") && m.contains("cgroup v2"), "{m}")
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
        let snapshot = sup.snapshot_value();
        // Nothing was spawned.
        assert!(snapshot.get("high").is_none(), "{snapshot}");
    }
    free_and_check(sup);
}

#[test]
fn guarantees_say_which_cgroups_hold_the_limits() {
    let _cgroups = Cgroups::guard();
    let v2: Vec<String> = own_dir(None)
        .and_then(|d| std::fs::read_to_string(d.join("cgroup.controllers")).ok())
        .map(|c| c.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let all_v2 = ["memory", "pids", "cpu"]
        .iter()
        .all(|c| v2.iter().any(|x| x == c));
    let some_v1 = ["memory", "pids", "cpu"]
        .iter()
        .any(|c| own_dir(Some(c)).is_some());
    // This test runs as root (the project's tests do), so what is mounted is writable.
    let expected = if all_v2 {
        "cgroup2"
    } else if some_v1
        || v2
            .iter()
            .any(|x| ["memory", "pids", "cpu"].contains(&x.as_str()))
    {
        "cgroup1"
    } else {
        "none"
    };
    let sup = Supervisor::new().unwrap();
    let status = sup.status_value();
    assert_eq!(status["guarantees"]["limits"], expected, "{status}");
    free_and_check(sup);
}

#[test]
fn an_unprivileged_host_is_told_unsupported_naming_the_key() {
    let _cgroups = Cgroups::guard();
    let host = build_c("dying_host", &["tests/programs/dying_host.c"], true, &[]);
    for (key, value) in [("memory_max", json!("64M")), ("pids_max", json!(16))] {
        let config = json!([{"name": "g", "argv": ["/bin/sleep", "1000"], key: value}]);
        // As nobody, who cannot write the cgroup hierarchies (root owns them).
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&host)
            .args(["free", &config.to_string(), "g"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("setpriv runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.contains("start: MPSUP_ERR_UNSUPPORTED")
                && stderr.contains(&format!("group 'g': {key}: cannot be enforced"))
                && stderr.contains("Permission denied"),
            "{stderr}"
        );
    }
}

#[test]
fn each_limit_is_written_in_its_hierarchy_and_the_cgroups_go_at_stop() {
    let _cgroups = Cgroups::guard();
    let sup = supervisor(&[group(
        "all",
        &["/bin/sleep", "1000"],
        json!({"workers": 2, "memory_max": "64M", "pids_max": 32, "cpu_max": "25000 50000"}),
    )]);
    sup.start_groups(&["all"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let mut dirs = Vec::new();
    for pid in pids(&sup.snapshot_value(), "all") {
        let v2_dir = |controller: &str| {
            own_dir(None)
                .and_then(|d| std::fs::read_to_string(d.join("cgroup.controllers")).ok())
                .is_some_and(|c| c.split_whitespace().any(|x| x == controller))
        };
        // Each file as the hierarchy that holds the controller names it.
        let (mem, cpu) = if v2_dir("memory") {
            let d = worker_dir_v2(pid);
            (read(&d.join("memory.max")), read(&d.join("cpu.max")))
        } else {
            let m = worker_dir(pid, "memory");
            let c = worker_dir(pid, "cpu");
            let quota = read(&c.join("cpu.cfs_quota_us"));
            let period = read(&c.join("cpu.cfs_period_us"));
            dirs.extend([m.clone(), c]);
            (
                read(&m.join("memory.limit_in_bytes")),
                format!("{} {}", quota.trim(), period.trim()),
            )
        };
        assert_eq!(mem.trim(), (64u64 << 20).to_string());
        assert_eq!(cpu.trim(), "25000 50000");
        let p = worker_dir(pid, "pids");
        assert_eq!(read(&p.join("pids.max")).trim(), "32");
        dirs.push(p);
    }
    // One cgroup per worker process in each hierarchy.
    let distinct: std::collections::HashSet<_> = dirs.iter().collect();
    assert_eq!(distinct.len(), dirs.len(), "{dirs:?}");
    sup.stop_groups(secs(10.0), false).unwrap();
    for d in &dirs {
        wait_gone(d);
    }
    free_and_check(sup);
}

#[test]
fn invalid_limits_are_rejected_naming_the_key() {
    let _cgroups = Cgroups::guard();
    let sup = Supervisor::new().unwrap();
    for (key, value) in [
        ("memory_max", json!("512m")),
        ("memory_max", json!(0)),
        ("memory_high", json!("1.5G")),
        ("pids_max", json!(0)),
        ("pids_max", json!("64")),
        ("cpu_max", json!("0%")),
        ("cpu_max", json!(50)),
        ("cpu_max", json!("500 100000")),
    ] {
        let config = json!([{"name": "g", "argv": ["/bin/true"], key: value}]);
        match sup.configure_json(&config.to_string()) {
            Err(Error::InvalidConfig(m)) => {
                assert!(
                    m.contains(&format!("groups[0].{key}")),
                    "{key}={value}: {m}"
                )
            }
            other => panic!("{key}={value}: expected InvalidConfig, got {other:?}"),
        }
    }
}

#[test]
fn the_limit_cgroups_and_what_escaped_into_them_go_with_a_host_killed_by_sigkill() {
    use std::io::{BufRead, Write};
    let _cgroups = Cgroups::guard();
    let host = build_c("dying_host", &["tests/programs/dying_host.c"], true, &[]);
    // The worker starts a descendant in a session of its own: out of its process group, which
    // is what the keeper kills, but still in its cgroups.
    let script = "setsid sleep 1000 & exec sleep 1000";
    let config = json!([group(
        "g",
        &["/bin/sh", "-c", script],
        json!({"memory_max": "64M", "pids_max": 16}),
    )]);
    let mut child = Host(
        Command::new(&host)
            .args(["sigkill", &config.to_string(), "g"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut snapshot = Value::Null;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(s) = line.strip_prefix("SNAPSHOT ") {
            snapshot = serde_json::from_str(s).unwrap();
        } else if line == "WAITING" {
            break;
        }
    }
    let worker = pids(&snapshot, "g")[0];
    let mem = worker_dir(worker, "memory");
    let until = Instant::now() + HANG;
    let procs = loop {
        let procs: Vec<i64> = read(&mem.join("cgroup.procs"))
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        if procs.len() == 2 {
            break procs;
        }
        assert!(Instant::now() < until, "{procs:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    // The supervisor's cgroups (above group and worker) in both hierarchies.
    let sup_dirs = [mem, worker_dir(worker, "pids")]
        .map(|d| d.parent().unwrap().parent().unwrap().to_path_buf());
    assert!(sup_dirs.iter().all(|d| d.is_dir()), "{sup_dirs:?}");
    let stdin = child.0.stdin.as_mut().unwrap();
    stdin.write_all(b"die\n").unwrap();
    stdin.flush().unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    for pid in procs {
        assert_dead(pid);
    }
    for dir in &sup_dirs {
        wait_gone(dir);
    }
}

#[test]
fn a_rollout_to_limits_this_host_cannot_hold_is_refused_and_the_old_workers_stay() {
    let _cgroups = Cgroups::guard();
    if v2_has("memory") {
        return; // memory_high can be had: nothing to refuse.
    }
    let sup = supervisor(&[group("g", &["/bin/sleep", "1000"], json!({}))]);
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let before = pids(&sup.snapshot_value(), "g");
    sup.configure_json(
        &json!([group(
            "g",
            &["/bin/sleep", "1000"],
            json!({"memory_high": "64M"})
        )])
        .to_string(),
    )
    .unwrap();
    match sup.restart_groups(&["g"], &options("{}")) {
        Err(Error::Unsupported(m)) => assert!(m.contains("memory_high"), "{m}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert_eq!(pids(&sup.snapshot_value(), "g"), before);
    assert!(sup.status_value()["groups"]["g"]["rollout"].is_null());
    sup.stop_groups(secs(10.0), false).unwrap();
    free_and_check(sup);
}

/// Whether this process's cgroup v2 has `controller`.
fn v2_has(controller: &str) -> bool {
    own_dir(None)
        .and_then(|d| std::fs::read_to_string(d.join("cgroup.controllers")).ok())
        .is_some_and(|c| c.split_whitespace().any(|x| x == controller))
}
