//! What is in force (`guarantees`), what turns it off, and the hosts that cannot have it.

use super::*;

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
                    "mechanisms::an_unprivileged_host_runs_its_workers_without_cgroups",
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
        let (mut child, mut lines) = start_host(
            Command::new(&host)
                .args(["free", &groups.to_string(), "g"])
                .env_remove("MPSUP_CGROUP")
                .env(var, value),
        );
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
    let (mut child, mut lines) = start_host(
        Command::new(&host)
            .args(["sigkill", &groups.to_string(), "p"])
            .env("MPSUP_CGROUP", "0"),
    );
    let host_pid = child.pid();
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
