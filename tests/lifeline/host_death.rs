//! A host that dies, however it dies, takes every worker and what the workers started with it.

use super::*;

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
    let (mut child, mut lines) = start_host(&mut command);
    let host_pid = child.pid();
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
