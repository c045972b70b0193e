//! The typed Rust face, used as a Rust host would: groups as `GroupSpec`s, waits as `Duration`s,
//! typed snapshot, status and events, and not a line of JSON. README.md shows the first test.

use std::time::Duration;

use mpsupervisor::config::{GroupSpec, Probe, Readiness, RestartOptions};
use mpsupervisor::events::{EventKind, ExitReason, ProbeKind};
use mpsupervisor::{Error, Supervisor, WorkerState};

#[test]
fn a_rust_host_configures_waits_and_reads_typed_values() -> mpsupervisor::Result<()> {
    let sup = Supervisor::new()?;
    sup.configure(&[GroupSpec {
        name: "ingest".into(),
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo READY >&3; read -r line <&3".into(),
        ],
        workers: 2,
        readiness: Readiness::Notify,
        ..Default::default()
    }])?;
    sup.start_groups(&["ingest"])?;
    assert!(sup.wait_ready(Duration::from_secs(5))?);
    for worker in &sup.snapshot()?.groups["ingest"] {
        assert_eq!(worker.state, WorkerState::Ready);
        println!("{} runs as pid {}", worker.worker_id, worker.pid);
    }
    sup.stop_groups(Duration::from_secs(5), true)?;
    let stopped = sup
        .drain_events(0)?
        .into_iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::WorkerStopped {
                    exit_code: Some(0),
                    ..
                }
            )
        })
        .count();
    assert_eq!(stopped, 2);
    Ok(())
}

#[test]
fn a_typed_group_is_checked_as_its_json_would_be() {
    let sup = Supervisor::new().unwrap();
    let bad = GroupSpec {
        name: "g".into(),
        argv: vec!["/bin/true".into()],
        workers: 0,
        ..Default::default()
    };
    match sup.configure(&[bad]) {
        Err(Error::InvalidConfig(m)) => assert!(m.starts_with("groups[0].workers"), "{m}"),
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
    let twice = GroupSpec {
        name: "g".into(),
        argv: vec!["/bin/true".into()],
        ..Default::default()
    };
    assert!(matches!(
        sup.configure(&[twice.clone(), twice]),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn status_restart_options_and_the_event_fd_are_typed() {
    let sup = Supervisor::new().unwrap();
    sup.configure(&[GroupSpec {
        name: "web".into(),
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo READY >&3; read -r line <&3".into(),
        ],
        readiness: Readiness::Notify,
        ..Default::default()
    }])
    .unwrap();
    sup.start_groups(&["web"]).unwrap();
    assert!(sup.wait_ready(Duration::from_secs(5)).unwrap());
    let status = sup.status().unwrap();
    assert!(status.groups["web"].started);
    assert_eq!(status.groups["web"].ready, 1);
    let options = RestartOptions {
        max_surge: 0,
        max_unavailable: 0,
        ..Default::default()
    };
    assert!(matches!(
        sup.restart_groups(&["web"], &options),
        Err(Error::InvalidArgument(_))
    ));
    sup.restart_groups(&["web"], &RestartOptions::default())
        .unwrap();
    assert!(sup.wait_ready(Duration::from_secs(5)).unwrap());
    let fd = sup.event_fd().unwrap();
    let mut poll = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    assert_eq!(
        nix::poll::poll(&mut poll, nix::poll::PollTimeout::ZERO).unwrap(),
        1
    );
    sup.stop_groups(Duration::from_secs(5), true).unwrap();
}

/// Probes as a Rust host writes them: a typed `Probe`, typed `probe_failed` and `worker_failed`.
#[test]
fn a_typed_liveness_probe_kills_a_worker_whose_check_fails() -> mpsupervisor::Result<()> {
    let sup = Supervisor::new()?;
    sup.configure(&[GroupSpec {
        name: "svc".into(),
        argv: vec!["/bin/sh".into(), "-c".into(), "exec sleep 100000".into()],
        control_channel: mpsupervisor::config::ControlChannelMode::Off,
        liveness_probe: Some(Probe {
            exec: Some(vec!["/bin/sh".into(), "-c".into(), "exit 7".into()]),
            period_ms: 20,
            failure_threshold: 2,
            ..Default::default()
        }),
        ..Default::default()
    }])?;
    sup.start_groups(&["svc"])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|k| matches!(k, EventKind::WorkerFailed { .. }))
    {
        assert!(std::time::Instant::now() < deadline, "{seen:#?}");
        seen.extend(sup.drain_events(0)?.into_iter().map(|e| e.kind));
        std::thread::sleep(Duration::from_millis(10));
    }
    let probes: Vec<(ProbeKind, String, u32)> = seen
        .iter()
        .filter_map(|k| match k {
            EventKind::ProbeFailed {
                probe,
                detail,
                failures,
                ..
            } => Some((*probe, detail.clone(), *failures)),
            _ => None,
        })
        .collect();
    let failed = "exec: exit status 7".to_string();
    assert_eq!(
        probes,
        [
            (ProbeKind::Liveness, failed.clone(), 1),
            (ProbeKind::Liveness, failed, 2)
        ]
    );
    assert!(seen.iter().any(|k| matches!(
        k,
        EventKind::WorkerFailed {
            reason: ExitReason::LivenessFailed,
            ..
        }
    )));
    sup.stop_groups(Duration::from_secs(5), true)?;
    Ok(())
}
