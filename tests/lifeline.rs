//! Workers die with their host (API.md part 4): a C host that SIGKILLs itself, exits without
//! freeing, forked a child that holds its descriptors, or started its workers on a thread that
//! exited; every worker and every process of its process group (and, with cgroups, a descendant
//! that left it) is dead within 1 s. A host thread that exits kills nothing. `guarantees` says
//! what is in force. Every process a test saw is SIGKILLed at its end, whatever happened.

mod common;
mod hosts;

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

/// `cgroups`: the host's `MPSUP_CGROUP` (None: unset, the default: cgroups on x86-64). With cgroups
/// (`"1"`, `"move"`, where writable) every descendant must die; without, every process of a
/// worker's process group must (the keeper kills the groups, not only the workers).
fn dying_host(mode: &str, cgroups: Option<&str>) {
    let host = build_c("dying_host", &["tests/programs/dying_host.c"], true, &[]);
    let groups = every_kind().to_string();
    let mut reaper = Reaper::default();
    let mut command = Command::new(&host);
    command.arg(mode).arg(&groups).args(KINDS);
    match cgroups {
        Some(value) => command.env("MPSUP_CGROUP", value),
        None => command.env_remove("MPSUP_CGROUP"),
    };
    let mut child = Guard::new(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let host_pid = child.pid();
    let mut lines = Lines::new(child.child().stdout.take().unwrap());
    let mut status = Value::Null;
    let mut snapshot = Value::Null;
    loop {
        let line = lines.next_within(HANG).expect("the host ended early");
        if let Some(s) = line.strip_prefix("STATUS ") {
            status = serde_json::from_str(s).unwrap();
        } else if let Some(s) = line.strip_prefix("SNAPSHOT ") {
            snapshot = serde_json::from_str(s).unwrap();
        } else if let Some(s) = line.strip_prefix("FORKED ") {
            reaper.0.insert(s.parse().unwrap());
        } else if line == "WAITING" {
            break;
        }
    }
    let keepers: Vec<i32> = processes()
        .into_iter()
        .filter(|&(pid, ppid, _)| ppid == host_pid && comm(pid) == "mpsup-keeper")
        .map(|(pid, _, _)| pid)
        .collect();
    reaper.0.extend(&keepers);
    let (workers, members) = workers_and_members(&snapshot);
    reaper.0.extend(&members);
    // Handed to the reaper before any check, so that a failing check leaves no cgroup behind.
    let cgroup = workers.first().and_then(|&w| supervisor_cgroup(w));
    reaper.1.extend(cgroup.clone());
    assert_eq!(workers.len(), 8, "{snapshot}");
    // Every kind is really there: the tree's two sleeps, its shell and grandchild, the escaped
    // one in a session of its own.
    assert_eq!(members.len(), 8 + 5, "{members:?}");
    assert!(members.iter().all(|&p| alive(p)), "{members:?}");
    assert_eq!(status["guarantees"]["host_death"], "keeper", "{status}");
    assert_eq!(keepers.len(), 1, "no keeper process beside the host");
    // The keeper was told of each worker (not of an exec shim that forked one): it holds the
    // worker's pidfd.
    assert!(
        poll_until(HANG, || workers
            .iter()
            .all(|&w| holds_pidfd_of(keepers[0], w))),
        "the keeper holds no pidfd of some worker of {workers:?}"
    );
    let wants_cgroups = match cgroups {
        Some(v) => v == "1" || v == "move",
        None => cfg!(target_arch = "x86_64"),
    };
    let tree_kill = wants_cgroups && machine_has_writable_cgroup();
    // What must die with the host: without cgroups the escaped sleep is out of reach (and
    // killed by the reaper at the end); everything in a worker's process group is not.
    let members = if tree_kill {
        members
    } else {
        in_worker_groups(&workers, &members)
    };
    assert_eq!(members.len(), 8 + 4 + usize::from(tree_kill), "{members:?}");
    if tree_kill {
        assert_eq!(status["guarantees"]["tree_kill"], "cgroup", "{status}");
        assert!(cgroup.as_ref().is_some_and(|c| c.is_dir()), "{cgroup:?}");
    } else {
        assert_eq!(status["guarantees"]["tree_kill"], "process_group");
    }
    let forked: Vec<i32> = reaper
        .0
        .iter()
        .copied()
        .filter(|p| !members.contains(p) && !keepers.contains(p))
        .collect();

    writeln!(child.child().stdin.as_mut().unwrap(), "go").unwrap();
    let exit = child
        .wait_within(HANG)
        .expect("the host did not die when told");
    let died = Instant::now();
    use std::os::unix::process::ExitStatusExt;
    match mode {
        "exit" => assert_eq!(exit.code(), Some(0)),
        _ => assert_eq!(exit.signal(), Some(libc::SIGKILL)),
    }
    let all_dead = poll_until(Duration::from_secs(1), || {
        members.iter().all(|&p| !alive(p))
    });
    let late: Vec<(i32, String)> = members
        .iter()
        .filter(|&&p| alive(p))
        .map(|&p| (p, comm(p)))
        .collect();
    assert!(
        all_dead,
        "{mode}: alive {:?} after the host died: {late:?}",
        died.elapsed()
    );
    // The forked child lives on (it is the host's business), yet did not keep anyone alive.
    for &p in &forked {
        assert!(alive(p), "the forked child {p} should still sleep");
    }
    // The keeper finishes its work: it exits and removes the supervisor's cgroup.
    assert!(
        poll_until(Duration::from_secs(5), || keepers
            .iter()
            .all(|&k| !alive(k))),
        "the keeper did not exit"
    );
    if let Some(dir) = cgroup {
        assert!(
            poll_until(Duration::from_secs(5), || !dir.exists()),
            "{} was not removed",
            dir.display()
        );
    }
}

/// With cgroups, where one is writable, even a descendant that called setsid dies with the host.
#[test]
fn workers_die_within_a_second_of_a_host_killed_by_sigkill() {
    dying_host("sigkill", Some("1"));
}

/// By default (cgroups where workers can be born in them) too.
#[test]
fn workers_die_within_a_second_of_a_host_that_exits_without_freeing() {
    dying_host("exit", None);
}

/// Without cgroups the keeper kills each worker's whole process group: the workers' children and
/// grandchildren die too.
#[test]
fn workers_children_and_grandchildren_die_with_a_host_killed_without_cgroups() {
    dying_host("sigkill", Some("0"));
}

/// Workers moved into their cgroups rather than born there (`MPSUP_CGROUP=move`, for bench/)
/// die with the host as well.
#[test]
fn workers_moved_into_their_cgroups_die_with_a_host_killed_by_sigkill() {
    dying_host("sigkill", Some("move"));
}

#[test]
fn a_forked_child_holding_the_hosts_descriptors_keeps_no_worker_alive() {
    dying_host("fork-sigkill", Some("1"));
}

#[test]
fn workers_started_on_a_host_thread_that_exited_die_with_the_host() {
    dying_host("thread-sigkill", Some("1"));
}

/// A host thread that made the supervisor and started the workers exits: nothing dies; the
/// workers stop gracefully later, and new ones still start.
#[test]
fn a_host_thread_that_exits_kills_no_worker() {
    let mut reaper = Reaper::default();
    let sup = std::thread::spawn(|| {
        let sup = supervisor(&[with(
            sh_group("g", 2, POLITE),
            json!({"readiness": "notify"}),
        )]);
        sup.start_groups(&["g"]).unwrap();
        assert!(sup.wait_ready(secs(60.0)).unwrap());
        Arc::new(sup)
    })
    .join()
    .unwrap();
    let before: Vec<i32> = pids(&sup.snapshot_value(), "g")
        .into_iter()
        .map(|p| p as i32)
        .collect();
    reaper.0.extend(&before);
    // More workers: a round trip through the spawner, the monitor and the keeper after the
    // thread's exit, time enough for a death signal tied to that thread to have struck.
    sup.scale_group("g", 3).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let status = sup.status_value();
    assert_eq!(status["guarantees"]["host_death"], "keeper", "{status}");
    assert!(before.iter().all(|&p| alive(p)), "{before:?}");
    sup.stop_groups(secs(30.0), true).unwrap();
    let log = drain_all(&sup);
    let graceful = of_kind(&log, "worker_stopped")
        .iter()
        .filter(|e| e["mode"] == "graceful")
        .count();
    assert_eq!(graceful, 3, "{log:?}");
    for p in before {
        assert_gone(p as i64);
    }
}

/// A worker whose child left its process group (setsid), in group `esc` (with `esc_keys`), and
/// its sibling in group `other`, started with cgroups; None where no cgroup is writable (then
/// the report says process groups).
fn escaped_workers(
    script: &str,
    esc_keys: Value,
    reaper: &mut Reaper,
) -> Option<(Supervisor, [i32; 4])> {
    let sup = Supervisor::with_options(Options {
        cgroup: true,
        ..Options::default()
    })
    .unwrap();
    let groups = json!([
        with(
            with(sh_group("esc", 1, script), json!({"readiness": "notify"})),
            esc_keys
        ),
        with(sh_group("other", 1, script), json!({"readiness": "notify"})),
    ]);
    sup.configure_json(&groups.to_string()).unwrap();
    let status = sup.status_value();
    if !machine_has_writable_cgroup() {
        assert_eq!(status["guarantees"]["tree_kill"], "process_group");
        eprintln!("no writable cgroup v2 here: tree kill by cgroup is not in force");
        return None;
    }
    assert_eq!(status["guarantees"]["tree_kill"], "cgroup", "{status}");
    sup.start_groups(&["esc", "other"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let snap = sup.snapshot_value();
    let child_of = |w: i64| -> i32 {
        processes()
            .iter()
            .find(|&&(_, ppid, _)| ppid == w as i32)
            .map(|&(p, _, _)| p)
            .expect("the worker's child")
    };
    let (esc, other) = (pids(&snap, "esc")[0], pids(&snap, "other")[0]);
    let (esc_child, other_child) = (child_of(esc), child_of(other));
    let all = [esc as i32, other as i32, esc_child, other_child];
    reaper.0.extend(all);
    reaper.1.extend(supervisor_cgroup(esc as i32));
    // The workers (born in their cgroups by the exec shim's fork) are the host's children,
    // each leading its own process group.
    let me = std::process::id() as i32;
    for &(pid, ppid, pgid) in processes()
        .iter()
        .filter(|p| p.0 == all[0] || p.0 == all[1])
    {
        assert_eq!((ppid, pgid), (me, pid), "worker {pid}");
    }
    // The child is in a session (so a process group) of its own once setsid has run.
    assert!(
        poll_until(HANG, || comm(esc_child) == "sleep"),
        "setsid did not run"
    );
    let pgid = processes()
        .into_iter()
        .find(|&(p, _, _)| p == esc_child)
        .unwrap()
        .2;
    assert_eq!(pgid, esc_child, "the child did not leave the group");
    Some((sup, all))
}

/// With cgroups a forced stop kills a descendant that left the worker's process group; the
/// worker's siblings are untouched by one worker's kill.
#[test]
fn a_setsid_child_dies_at_force_terminate_groups_with_cgroup_tree_kill() {
    let mut reaper = Reaper::default();
    let Some((sup, [_, other, esc_child, other_child])) =
        escaped_workers(ESCAPED, json!({}), &mut reaper)
    else {
        return;
    };
    sup.force_terminate_groups(&["esc"]).unwrap();
    assert!(
        poll_until(Duration::from_secs(1), || !alive(esc_child)),
        "the setsid child outlived the forced stop"
    );
    assert!(alive(other) && alive(other_child));
    sup.force_terminate_groups(&["other"]).unwrap();
    assert!(poll_until(Duration::from_secs(1), || !alive(other_child)));
}

/// With cgroups a graceful stop of a worker that ignores SIGTERM (a scale-down) ends, past its
/// `stop_timeout_ms`, with a kill that reaches its descendant that left the process group (and
/// ignores SIGTERM too).
#[test]
fn a_setsid_child_dies_at_a_graceful_stop_past_its_timeout_with_cgroup_tree_kill() {
    let mut reaper = Reaper::default();
    let deaf_escaped = "trap '' TERM HUP; setsid sleep 1000 & echo READY >&3; wait";
    let Some((sup, [esc, other, esc_child, other_child])) =
        escaped_workers(deaf_escaped, json!({"stop_timeout_ms": 200}), &mut reaper)
    else {
        return;
    };
    sup.scale_group("esc", 0).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |log| {
        !of_kind(log, "worker_stopped").is_empty() || !of_kind(log, "worker_failed").is_empty()
    });
    let stopping = of_kind(&log, "worker_stopping");
    assert!(
        stopping.iter().any(|e| e["mode"] == "graceful"),
        "no graceful stop: {log:?}"
    );
    assert!(
        stopping.iter().any(|e| e["mode"] == "forced"),
        "the deaf worker was not killed past its timeout: {log:?}"
    );
    assert_gone(i64::from(esc));
    assert!(
        poll_until(Duration::from_secs(1), || !alive(esc_child)),
        "the setsid child outlived the stop"
    );
    assert!(alive(other) && alive(other_child));
    sup.force_terminate_groups(&["other"]).unwrap();
    assert!(poll_until(Duration::from_secs(1), || !alive(other_child)));
}

/// With cgroups, a program that cannot be exec'd is the spawn's error, as without (the worker
/// the exec shim forked into its cgroup reports it, and is reaped); the other workers, born in
/// cgroups of their own, run.
#[test]
fn an_exec_failure_with_cgroups_is_the_spawns_error_and_leaves_nothing() {
    let mut reaper = Reaper::default();
    let sup = Supervisor::with_options(Options {
        cgroup: true,
        ..Options::default()
    })
    .unwrap();
    sup.configure_json(
        &json!([
            with(sh_group("ok", 2, POLITE), json!({"readiness": "notify"})),
            {"name": "bad", "argv": ["/nonexistent/worker"]},
        ])
        .to_string(),
    )
    .unwrap();
    sup.start_groups(&["ok"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let workers = pids(&sup.snapshot_value(), "ok");
    reaper.0.extend(workers.iter().map(|&p| p as i32));
    let cgroup = supervisor_cgroup(workers[0] as i32);
    reaper.1.extend(cgroup.clone());
    assert_eq!(cgroup.is_some(), machine_has_writable_cgroup());
    match sup.start_groups(&["bad"]) {
        Err(mpsupervisor::Error::Spawn { context, source }) => {
            assert!(context.contains("bad#1"), "{context}");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{source}");
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    // Nothing of the failed spawn is left (this binary's other tests have children too): no
    // exec shim, no process in the failed group's cgroups, not even a zombie.
    let me = std::process::id() as i32;
    let in_bad = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains("/g-bad/"))
    };
    let left = || -> Vec<(i32, String)> {
        processes()
            .into_iter()
            .filter(|&(p, ppid, _)| ppid == me && (comm(p) == "mpsup-exec" || in_bad(p)))
            .map(|(p, _, _)| (p, comm(p)))
            .collect()
    };
    assert!(poll_until(HANG, || left().is_empty()), "{:?}", left());
    sup.force_terminate_groups(&["ok"]).unwrap();
    for w in workers {
        assert_gone(w);
    }
}

/// Set in the copy of this binary that runs as nobody.
const UNPRIVILEGED: &str = "MPSUP_TEST_LIFELINE_UNPRIVILEGED";

/// A host without the right to make cgroups (nobody, no capabilities) runs its workers without
/// them, by default and with `MPSUP_CGROUP=1`: process groups, never an error.
#[test]
fn an_unprivileged_host_runs_its_workers_without_cgroups() {
    if std::env::var_os(UNPRIVILEGED).is_none() {
        for cgroup in [None, Some("1")] {
            let mut command = Command::new("setpriv");
            command
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg("--inh-caps=-all")
                .arg(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "an_unprivileged_host_runs_its_workers_without_cgroups",
                    "--nocapture",
                ])
                .env(UNPRIVILEGED, "1");
            match cgroup {
                Some(v) => command.env("MPSUP_CGROUP", v),
                None => command.env_remove("MPSUP_CGROUP"),
            };
            let out = command.output().expect("setpriv (util-linux)");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "MPSUP_CGROUP={cgroup:?}: {text}");
            assert!(text.contains("1 passed"), "{text}");
        }
        return;
    }
    assert_eq!(nix::unistd::geteuid().as_raw(), 65534);
    let mut reaper = Reaper::default();
    let sup = supervisor(&[with(
        sh_group("g", 2, POLITE),
        json!({"readiness": "notify"}),
    )]);
    let status = sup.status_value();
    assert_eq!(
        status["guarantees"]["tree_kill"], "process_group",
        "{status}"
    );
    assert_eq!(status["guarantees"]["host_death"], "keeper", "{status}");
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let workers = pids(&sup.snapshot_value(), "g");
    reaper.0.extend(workers.iter().map(|&p| p as i32));
    for &w in &workers {
        assert_eq!(supervisor_cgroup(w as i32), None, "worker {w} in a cgroup");
    }
    sup.force_terminate_groups(&["g"]).unwrap();
    for w in workers {
        assert_gone(w);
    }
}

/// The report follows the machine, and the fallbacks report themselves.
#[test]
fn guarantees_report_what_is_in_force() {
    let mut reaper = Reaper::default();
    let run = |options: Options| -> (Value, Option<PathBuf>, i32) {
        let sup = Supervisor::with_options(options).unwrap();
        sup.configure_json(
            &json!([with(
                sh_group("g", 1, POLITE),
                json!({"readiness": "notify"})
            )])
            .to_string(),
        )
        .unwrap();
        sup.start_groups(&["g"]).unwrap();
        assert!(sup.wait_ready(secs(60.0)).unwrap());
        let pid = pids(&sup.snapshot_value(), "g")[0] as i32;
        let status = sup.status_value();
        (status["guarantees"].clone(), supervisor_cgroup(pid), pid)
    };
    // Options spelled out, since `Options::default()` follows MPSUP_* variables a run may set.
    let keeper_only = Options {
        keeper: true,
        cgroup: false,
        ..Options::default()
    };
    // The keeper, and process groups.
    let (default, cgroup, pid) = run(keeper_only.clone());
    reaper.0.insert(pid);
    assert_eq!(default["host_death"], "keeper", "{default}");
    assert_eq!(default["tree_kill"], "process_group", "{default}");
    assert!(cgroup.is_none());

    let (full, cgroup, pid) = run(Options {
        cgroup: true,
        ..keeper_only.clone()
    });
    reaper.0.insert(pid);
    assert_eq!(full["host_death"], "keeper", "{full}");
    let writable = machine_has_writable_cgroup();
    assert_eq!(
        full["tree_kill"],
        if writable { "cgroup" } else { "process_group" }
    );
    assert_eq!(cgroup.is_some(), writable);
    // Freed: the supervisor's cgroup is gone.
    if let Some(dir) = &cgroup {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    let (off, cgroup, pid) = run(Options {
        keeper: false,
        cgroup: false,
        ..Options::default()
    });
    reaper.0.insert(pid);
    assert_eq!(off["host_death"], "none", "{off}");
    assert_eq!(off["tree_kill"], "process_group", "{off}");
    assert!(cgroup.is_none());

    let (missing, _, pid) = run(Options {
        keeper_path: Some(Path::new("/nonexistent/mpsup-keeper").into()),
        ..keeper_only
    });
    reaper.0.insert(pid);
    assert_eq!(missing["host_death"], "none", "{missing}");
}

/// The environment variables that turn the mechanisms on and off, read when a supervisor is made
/// (in a host of its own: the tests of this binary share one environment).
#[test]
fn environment_variables_turn_the_mechanisms_off() {
    let host = build_c("dying_host", &["tests/programs/dying_host.c"], true, &[]);
    let groups = json!([with(
        sh_group("g", 1, POLITE),
        json!({"readiness": "notify"})
    )]);
    let with_cgroup = if machine_has_writable_cgroup() {
        "cgroup"
    } else {
        "process_group"
    };
    let default_tree_kill = if cfg!(target_arch = "x86_64") {
        with_cgroup
    } else {
        "process_group"
    };
    for (var, value, field, expected) in [
        ("MPSUP_DISABLE_KEEPER", "1", "host_death", "none"),
        (
            "MPSUP_KEEPER",
            "/nonexistent/mpsup-keeper",
            "host_death",
            "none",
        ),
        ("MPSUP_CGROUP", "0", "tree_kill", "process_group"),
        ("MPSUP_CGROUP", "1", "tree_kill", with_cgroup),
        // Workers moved rather than born in their cgroups (for bench/).
        ("MPSUP_CGROUP", "move", "tree_kill", with_cgroup),
        // Neither on nor off: the default, cgroups where workers can be born in them (x86-64).
        ("MPSUP_CGROUP", "", "tree_kill", default_tree_kill),
    ] {
        let mut child = Guard::new(
            Command::new(&host)
                .args(["free", &groups.to_string(), "g"])
                .env_remove("MPSUP_CGROUP")
                .env(var, value)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut lines = Lines::new(child.child().stdout.take().unwrap());
        let line = lines.next_within(HANG).expect("no status");
        let status: Value = serde_json::from_str(line.strip_prefix("STATUS ").unwrap()).unwrap();
        assert_eq!(
            status["guarantees"][field], expected,
            "{var}={value}: {status}"
        );
        drop(child.child().stdin.take());
        let exit = child.wait_within(HANG).expect("the host hung");
        assert_eq!(exit.code(), Some(0), "{var}: {}", lines.rest());
    }
}

/// An exec probe running when its host is SIGKILLed dies with it, as workers do (the keeper knows
/// it), though it runs in a process group of its own.
#[test]
fn an_exec_probe_running_when_the_host_is_killed_dies_with_it() {
    let host = build_c("dying_host", &["tests/programs/dying_host.c"], true, &[]);
    let probe = ["/bin/sleep", "1000.25"];
    let groups = json!([{"name": "p", "argv": ["/bin/sh", "-c", "exec sleep 1000"],
        "control_channel": "off", "warmup_ms": 0,
        "liveness_probe": {"exec": probe, "period_ms": 10, "timeout_ms": 600000}}]);
    let mut reaper = Reaper::default();
    let mut child = Guard::new(
        Command::new(&host)
            .args(["sigkill", &groups.to_string(), "p"])
            .env("MPSUP_CGROUP", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let host_pid = child.pid();
    let mut lines = Lines::new(child.child().stdout.take().unwrap());
    while lines.next_within(HANG).expect("the host ended early") != "WAITING" {}
    let wanted = probe.join("\0") + "\0";
    let deadline = Instant::now() + HANG;
    let running = loop {
        let found: Vec<i32> = processes()
            .into_iter()
            .filter(|&(pid, ppid, _)| {
                ppid == host_pid
                    && std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c == wanted.as_bytes())
            })
            .map(|(pid, _, _)| pid)
            .collect();
        reaper.0.extend(&found);
        if let Some(&pid) = found.first() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the probe never ran");
        std::thread::sleep(Duration::from_millis(10));
    };
    // The probe is announced to the keeper (with a pidfd of it) just after its spawn: kill the
    // host once the keeper holds that pidfd, not merely once the probe runs.
    let keeper = processes()
        .into_iter()
        .find(|&(pid, ppid, _)| ppid == host_pid && comm(pid) == "mpsup-keeper")
        .map(|(pid, _, _)| pid)
        .expect("no keeper");
    reaper.0.insert(keeper);
    assert!(
        poll_until(HANG, || holds_pidfd_of(keeper, running)),
        "the keeper never got the probe {running}"
    );
    writeln!(child.child().stdin.as_mut().unwrap(), "go").unwrap();
    child
        .wait_within(HANG)
        .expect("the host did not die when told");
    assert!(
        poll_until(Duration::from_secs(1), || !alive(running)),
        "the probe {running} outlived its host"
    );
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
