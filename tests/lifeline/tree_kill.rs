//! With cgroups, a child that left its worker's process group (setsid) dies with the worker.

use super::*;

/// A worker whose child left its process group (setsid), in group `esc` (with `esc_keys`), and
/// its sibling in group `other`, started with cgroups; None where no cgroup is writable (then
/// the report says process groups).
fn escaped_workers(
    script: &str,
    esc_keys: Value,
    reaper: &mut Reaper,
) -> Option<(Supervisor, [i32; 4])> {
    let sup = cgroup_supervisor();
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
    let sup = cgroup_supervisor();
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
