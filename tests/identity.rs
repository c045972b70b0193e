//! Part 7's identity and process attributes (`user`, `group`, `supplementary_groups`, `umask`,
//! `no_new_privileges`, `rlimits`): a real worker reports what it runs with, on its first spawn
//! and after a respawn; an unknown name and an unprivileged host are told so at start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use common::*;
use mpsupervisor::error::Error;
use serde_json::{json, Value};

/// Writes what the worker runs with to `$DIR/<its pid>` (through a rename, so a reader never
/// sees half a file), then sleeps. The /proc lines are `grep`'s own, which inherits them all:
/// real, effective, saved and file-system uid and gid, supplementary groups, umask, no_new_privs.
const REPORT: &str = r#"
out="$DIR/$$"
{ grep -E '^(Uid|Gid|Groups):' /proc/self/status
  grep -E '^(Umask|NoNewPrivs):' /proc/self/status
  grep -E '^Max (open files|core file size)' /proc/self/limits
} > "$out.tmp" && mv "$out.tmp" "$out"
exec sleep 1000000
"#;

/// A directory the worker's user (nobody) may write in.
fn open_dir(tag: &str) -> TempDir {
    let dir = scratch_dir(tag);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn reporting_group(dir: &Path, extra: Value) -> Value {
    with(
        json!({"name": "id", "argv": ["/bin/sh", "-c", REPORT], "control_channel": "off",
               "env": {"DIR": dir}, "restart": "always", "restart_delay_ms": 1}),
        extra,
    )
}

/// The report of the worker of group `id` with pid `pid`, once written.
fn report_of(dir: &Path, pid: i64) -> Vec<String> {
    let path = dir.join(pid.to_string());
    let deadline = Instant::now() + HANG;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
        }
        assert!(Instant::now() < deadline, "no report at {path:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn only_pid(sup: &mpsupervisor::Supervisor) -> i64 {
    let p = pids(&sup.snapshot_value(), "id");
    assert_eq!(p.len(), 1, "{p:?}");
    p[0]
}

/// Kills the worker and waits until its respawn is in the snapshot.
fn respawned(sup: &mpsupervisor::Supervisor, old: i64) -> i64 {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let mut log = Vec::new();
    wait_events(sup, &mut log, |l| {
        l.iter()
            .any(|e| e["kind"] == "worker_spawned" && e["pid"].as_i64() != Some(old))
    });
    let new = only_pid(sup);
    assert_ne!(new, old);
    new
}

#[test]
fn a_worker_runs_with_the_identity_umask_and_limits_its_group_asked_after_a_respawn_too() {
    let dir = open_dir("identity");
    let sup = supervisor(&[reporting_group(
        &dir,
        json!({"user": "nobody", "group": "nogroup", "supplementary_groups": [65534, 4242],
               "umask": "0027", "no_new_privileges": true,
               "rlimits": {"nofile": [100, 200], "core": 0}}),
    )]);
    sup.start_groups(&["id"]).unwrap();
    let expected = [
        "Uid: 65534 65534 65534 65534",
        "Gid: 65534 65534 65534 65534",
        "Groups: 4242 65534",
        "Umask: 0027",
        "NoNewPrivs: 1",
        "Max core file size 0 0 bytes",
        "Max open files 100 200 files",
    ];
    let first = only_pid(&sup);
    assert_eq!(report_of(&dir, first), expected);
    let second = respawned(&sup, first);
    assert_eq!(report_of(&dir, second), expected);
    sup.force_terminate_groups(&["id"]).unwrap();
}

#[test]
fn a_user_alone_brings_its_primary_group_and_its_groups_instead_of_the_hosts() {
    let dir = open_dir("identity-user");
    // The test runs as root, in group 0: the worker must not keep it.
    let sup = supervisor(&[reporting_group(&dir, json!({"user": "65534"}))]);
    sup.start_groups(&["id"]).unwrap();
    let report = report_of(&dir, only_pid(&sup));
    let expected = [
        "Uid: 65534 65534 65534 65534",
        "Gid: 65534 65534 65534 65534",
    ];
    assert_eq!(report[..2], expected);
    // nobody's groups (getgrouplist: its primary group), not root's.
    let groups = nix::unistd::getgrouplist(c"nobody", nix::unistd::Gid::from_raw(65534)).unwrap();
    assert_eq!(groups, [nix::unistd::Gid::from_raw(65534)]);
    assert_eq!(report[2], "Groups: 65534");
    // Nothing else asked: the host's umask, no no_new_privs.
    let host_umask = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_umask = host_umask
        .lines()
        .find(|l| l.starts_with("Umask:"))
        .unwrap();
    assert_eq!(
        report[3],
        host_umask.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert_eq!(report[4], "NoNewPrivs: 0");
    sup.force_terminate_groups(&["id"]).unwrap();
}

#[test]
fn supplementary_groups_are_set_or_cleared_and_a_group_alone_keeps_the_user() {
    let dir = open_dir("identity-groups");
    for (extra, uid, gid, groups) in [
        // [] clears the user's groups.
        (
            json!({"user": "nobody", "supplementary_groups": []}),
            65534,
            65534,
            "Groups:",
        ),
        // A group without a user: the uid stays root's, the groups are cleared (as systemd's
        // Group=) unless given.
        (json!({"group": 4243}), 0, 4243, "Groups:"),
        (
            json!({"group": "nogroup", "supplementary_groups": [7, "4244"]}),
            0,
            65534,
            "Groups: 7 4244",
        ),
    ] {
        let sup = supervisor(&[reporting_group(&dir, extra.clone())]);
        sup.start_groups(&["id"]).unwrap();
        let report = report_of(&dir, only_pid(&sup));
        assert_eq!(
            report[0],
            format!("Uid: {uid} {uid} {uid} {uid}"),
            "{extra}"
        );
        assert_eq!(
            report[1],
            format!("Gid: {gid} {gid} {gid} {gid}"),
            "{extra}"
        );
        assert_eq!(report[2], groups, "{extra}");
        sup.force_terminate_groups(&["id"]).unwrap();
    }
}

#[test]
fn a_worker_switched_to_another_user_still_reaches_the_notify_socket_and_its_channel() {
    // sd_notify: the supervisor's socket is abstract, so no file permission stands in the way.
    let notify = r#"
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", "\0" + os.environ["NOTIFY_SOCKET"][1:])
time.sleep(1e6)
"#;
    let sup = supervisor(&[
        json!({"name": "n", "argv": ["/usr/bin/python3", "-c", notify], "readiness": "sd_notify",
               "control_channel": "off", "user": "nobody"}),
        // notify: READY comes through the control channel.
        with(
            sh_group("c", 1, POLITE),
            json!({"user": "nobody", "readiness": "notify"}),
        ),
    ]);
    sup.start_groups(&["n", "c"]).unwrap();
    assert!(sup.wait_ready(secs(60.0)).unwrap());
    let snap = sup.snapshot_value();
    for group in ["n", "c"] {
        let pid = pids(&snap, group)[0];
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status.contains("Uid:\t65534\t65534\t65534\t65534"),
            "{status}"
        );
    }
    // The control channel: a graceful stop through it ends the sh worker with 0.
    sup.stop_groups(secs(60.0), false).unwrap();
    let log = drain_all(&sup);
    let stopped = of_kind(&log, "worker_stopped");
    assert!(
        stopped
            .iter()
            .any(|e| e["group_name"] == "c" && e["mode"] == "graceful" && e["exit_code"] == 0),
        "{log:#?}"
    );
}

#[test]
fn an_unknown_user_or_group_name_fails_the_start_naming_it() {
    for (extra, key, name) in [
        (
            json!({"user": "no-such-user-mpsup"}),
            "user",
            "no-such-user-mpsup",
        ),
        (
            json!({"group": "no-such-group-mpsup"}),
            "group",
            "no-such-group-mpsup",
        ),
        (
            json!({"supplementary_groups": ["nogroup", "no-such-group-mpsup"]}),
            "supplementary_groups[1]",
            "no-such-group-mpsup",
        ),
    ] {
        let sup = supervisor(&[with(sh_group("id", 1, POLITE), extra)]);
        match sup.start_groups(&["id"]) {
            Err(Error::InvalidConfig(m)) => assert!(
                m.contains(&format!("group 'id': {key}: no "))
                    && m.contains(&format!("\"{name}\"")),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(pids(&sup.snapshot_value(), "id").is_empty());
    }
}

/// Whether this process has `CAP_SYS_RESOURCE` (bit 24 of CapEff).
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    u64::from_str_radix(hex.trim(), 16).unwrap() & (1 << 24) != 0
}

#[test]
fn a_hard_limit_beyond_reach_fails_the_start_naming_the_key() {
    // Above fs.nr_open, no process may raise nofile. With CAP_SYS_RESOURCE the check at start
    // lets it through and the shim's setrlimit fails (EPERM); without it (as in a container
    // whose root lacks it), the start is refused before any spawn.
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let sup = supervisor(&[with(
        sh_group("id", 1, POLITE),
        json!({"rlimits": {"nofile": nr_open + 1}}),
    )]);
    match (sup.start_groups(&["id"]), has_cap_sys_resource()) {
        (Err(e @ Error::Spawn { .. }), true) => {
            let m = e.to_string();
            assert!(m.contains("rlimits: setrlimit: "), "{m}");
        }
        (Err(Error::Unsupported(m)), false) => {
            assert!(
                m.contains("rlimits.nofile: ") && m.contains("CAP_SYS_RESOURCE"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(pids(&sup.snapshot_value(), "id").is_empty());
}

/// Set in the copy of this binary that runs as nobody.
const INSIDE: &str = "MPSUP_TEST_IDENTITY_UNPRIVILEGED";

#[test]
fn an_unprivileged_host_is_told_it_cannot_switch_user_but_may_name_itself() {
    if std::env::var_os(INSIDE).is_none() {
        let dir = open_dir("identity-unprivileged");
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "an_unprivileged_host_is_told_it_cannot_switch_user_but_may_name_itself",
                "--nocapture",
            ])
            .env(INSIDE, dir.path())
            .output()
            .expect("setpriv (util-linux)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
        return;
    }
    // As nobody, without capabilities.
    assert_eq!(nix::unistd::geteuid().as_raw(), 65534);
    for (extra, key) in [
        (json!({"user": "root"}), "user"),
        (json!({"user": 0, "group": 65534}), "user"),
        (json!({"group": "root"}), "group"),
        (
            json!({"supplementary_groups": [4242]}),
            "supplementary_groups",
        ),
    ] {
        let sup = supervisor(&[with(sh_group("id", 1, POLITE), extra.clone())]);
        match sup.start_groups(&["id"]) {
            Err(Error::Unsupported(m)) => {
                assert!(
                    m.contains(&format!("{key}: ")) && m.contains("EPERM"),
                    "{m}"
                )
            }
            other => panic!("{extra}: {other:?}"),
        }
        assert!(pids(&sup.snapshot_value(), "id").is_empty());
    }
    // Its own user and group, with a umask: allowed, and applied.
    let dir = Path::new(&std::env::var_os(INSIDE).unwrap()).to_path_buf();
    let sup = supervisor(&[reporting_group(
        &dir,
        json!({"user": "nobody", "group": 65534, "supplementary_groups": [], "umask": "077"}),
    )]);
    sup.start_groups(&["id"]).unwrap();
    let report = report_of(&dir, only_pid(&sup));
    let expected = [
        "Uid: 65534 65534 65534 65534",
        "Gid: 65534 65534 65534 65534",
        "Groups:",
        "Umask: 0077",
    ];
    assert_eq!(report[..4], expected);
    sup.force_terminate_groups(&["id"]).unwrap();
    // Its own user alone, whose groups (nogroup) differ from its own (none) only by its primary
    // group, which grants nothing more: allowed too, and nothing is changed.
    let sup = supervisor(&[reporting_group(&dir, json!({"user": "nobody"}))]);
    sup.start_groups(&["id"]).unwrap();
    let report = report_of(&dir, only_pid(&sup));
    assert_eq!(report[..3], expected[..3]);
    sup.force_terminate_groups(&["id"]).unwrap();
}
