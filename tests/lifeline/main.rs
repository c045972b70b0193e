//! Workers die with their host (API.md part 4): a C host that SIGKILLs itself, exits without
//! freeing, forked a child that holds its descriptors, or started its workers on a thread that
//! exited; every worker and every process of its process group (and, with cgroups, a descendant
//! that left it) is dead within 1 s. A host thread that exits kills nothing. `guarantees` says
//! what is in force. Every process a test saw is SIGKILLed at its end, whatever happened.

#[path = "../common/mod.rs"]
mod common;
mod host_death;
#[path = "../hosts/mod.rs"]
mod hosts;
mod mechanisms;
mod tree_kill;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hosts::{Guard, Lines};
use mpsupervisor::{Options, Supervisor};
use serde_json::{json, Value};

const DEAF: &str = "trap '' TERM HUP; echo READY >&3; exec sleep 1000";
/// Two children, and a grandchild under a shell of its own: all in the worker's process group.
/// The inner shell says READY once it has forked the grandchild (the outer one forked the rest
/// before it), so every process exists when the worker counts as ready.
const TREE: &str = "sleep 1000 & sleep 1000 & sh -c 'sleep 1000 & echo READY >&3; wait' & wait";
const ESCAPED: &str = "setsid sleep 1000 & echo READY >&3; wait";

fn every_kind() -> Value {
    let notify = |name: &str, n: u32, script: &str| {
        with(sh_group(name, n, script), json!({"readiness": "notify"}))
    };
    json!([
        {"name": "off", "workers": 2, "argv": ["/bin/sleep", "1000"], "control_channel": "off",
         "warmup_ms": 1},
        notify("deaf", 2, DEAF),
        notify("tree", 1, TREE),
        notify("polite", 2, POLITE),
        notify("escaped", 1, ESCAPED),
    ])
}
const KINDS: [&str; 5] = ["off", "deaf", "tree", "polite", "escaped"];

/// (pid, ppid, pgid) of every process.
fn processes() -> Vec<(i32, i32, i32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if let (Some(ppid), Some(pgid)) = (f.get(1), f.get(2)) {
            out.push((pid, ppid.parse().unwrap_or(0), pgid.parse().unwrap_or(0)));
        }
    }
    out
}

/// Running (not a zombie, not gone).
fn alive(pid: i32) -> bool {
    !matches!(proc_state(pid as i64), None | Some('Z') | Some('X'))
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Processes SIGKILLed when dropped (those still running), and cgroups removed, so a failing test
/// leaves none.
#[derive(Default)]
struct Reaper(BTreeSet<i32>, Vec<PathBuf>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                // SAFETY: plain system call.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        // A supervisor's cgroups, which its keeper would have removed had the test not killed
        // it: once their processes are dead they are empty and can go, deepest first.
        for dir in &self.1 {
            let until = Instant::now() + Duration::from_secs(5);
            while dir.exists() && !remove_cgroup_tree(dir) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Removes a cgroup and the cgroups below it; false while one still holds a process.
fn remove_cgroup_tree(dir: &Path) -> bool {
    let subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    subdirs.iter().all(|d| remove_cgroup_tree(d)) && std::fs::remove_dir(dir).is_ok()
}

/// The workers of a snapshot, each with every process of its process group and every
/// descendant (children, grandchildren, and one that left the group).
fn workers_and_members(snapshot: &Value) -> (Vec<i32>, BTreeSet<i32>) {
    let workers: Vec<i32> = KINDS
        .iter()
        .flat_map(|g| pids(snapshot, g))
        .map(|p| p as i32)
        .collect();
    let procs = processes();
    let mut members: BTreeSet<i32> = workers.iter().copied().collect();
    loop {
        let before = members.len();
        for &(pid, ppid, pgid) in &procs {
            if workers.contains(&pgid) || members.contains(&ppid) {
                members.insert(pid);
            }
        }
        if members.len() == before {
            break;
        }
    }
    (workers, members)
}

/// The members that stayed in their worker's process group (all but one that called setsid).
fn in_worker_groups(workers: &[i32], members: &BTreeSet<i32>) -> BTreeSet<i32> {
    let procs = processes();
    members
        .iter()
        .copied()
        .filter(|m| {
            procs
                .iter()
                .any(|&(pid, _, pgid)| pid == *m && workers.contains(&pgid))
        })
        .collect()
}

/// The supervisor's cgroup directory, from a worker's /proc/PID/cgroup (None: not in one).
fn supervisor_cgroup(worker: i32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{worker}/cgroup")).ok()?;
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .to_string();
    let at = path.find("/mpsup-")?;
    let end = path[at + 1..].find('/').map_or(path.len(), |e| at + 1 + e);
    Some(cgroup_mount()?.join(path[..end].trim_start_matches('/')))
}

fn cgroup_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
    })
}

/// Whether this machine lets this process make cgroups with cgroup.kill (it then must use
/// them): a probe cgroup beside our own is made and removed, once per test binary (the tests of
/// one binary run at once, and would race for the probe's name).
fn machine_has_writable_cgroup() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(probe_cgroup)
}

fn probe_cgroup() -> bool {
    let Some(mount) = cgroup_mount() else {
        return false;
    };
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    let probe = mount
        .join(path.trim_start_matches('/'))
        .join(format!("probe-{}", std::process::id()));
    if std::fs::create_dir(&probe).is_err() {
        return false;
    }
    let ok = probe.join("cgroup.kill").exists();
    std::fs::remove_dir(&probe).unwrap();
    ok
}

fn poll_until(limit: Duration, what: impl Fn() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if what() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::yield_now();
    }
}

/// Whether process `holder` has a pidfd of process `pid` open (its fdinfo says `Pid: <pid>`).
fn holds_pidfd_of(holder: i32, pid: i32) -> bool {
    let wanted = format!("Pid:\t{pid}\n");
    std::fs::read_dir(format!("/proc/{holder}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|info| info.contains(&wanted)))
}

/// Starts a C host with its stdin and stdout piped: the guard that kills it at the end, and
/// the lines it prints.
fn start_host(command: &mut Command) -> (Guard, Lines) {
    let mut child = Guard::new(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = Lines::new(child.child().stdout.take().unwrap());
    (child, lines)
}
