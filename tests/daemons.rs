//! Off-the-shelf daemons from Debian's packages as workers (scripts/setup installs them):
//! each becomes ready through NOTIFY_SOCKET, shows what it said in the snapshot and stops
//! gracefully with exit 0. Each runs on its own configuration in a temporary directory and
//! listens on Unix sockets there only.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{json, Value};

/// The daemon's program; a missing one fails the test (scripts/setup installs them).
fn program(name: &str) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d: PathBuf| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: run scripts/setup"))
        .to_string_lossy()
        .into_owned()
}

/// Starts `group`, waits until it is ready, checks its snapshot entry with `check`, stops it and
/// checks the exit.
fn run_daemon(group: Value, check: impl Fn(&Value, &[Value])) {
    let name = group["name"].as_str().unwrap().to_string();
    let sup = supervisor(&[group]);
    sup.start_groups(&[name.as_str()]).unwrap();
    let ready = sup.wait_ready(secs(60.0)).unwrap();
    let mut log = drain_all(&sup);
    assert!(
        ready,
        "{name} not ready: {log:#?}\n{:#}",
        sup.snapshot_value()
    );
    let ready = of_kind(&log, "worker_ready");
    assert_eq!(ready.len(), 1, "{log:#?}");
    let snap = sup.snapshot_value();
    let entry = &snap[name.as_str()][0];
    assert_eq!(entry["ready"], true);
    assert!(entry["rss_bytes"].as_u64().unwrap() > 0, "{entry}");
    check(entry, &log);
    sup.stop_groups(secs(30.0), false).unwrap();
    log.extend(drain_all(&sup));
    let stopped = of_kind(&log, "worker_stopped");
    assert_eq!(stopped.len(), 1, "{log:#?}");
    assert_eq!(stopped[0]["mode"], "graceful");
    assert_eq!(stopped[0]["exit_code"], 0, "{log:#?}");
    assert_eq!(count(&log, "worker_failed"), 0, "{log:#?}");
    assert_eq!(sup.status_value()["notify_dropped"], 0);
}

#[test]
fn redis_server_becomes_ready_through_sd_notify() {
    let dir = TempDir::new("redis");
    let group = json!({
        "name": "redis",
        "argv": [program("redis-server"), "--port", "0",
                 "--unixsocket", dir.join("redis.sock"), "--supervised", "systemd",
                 "--save", "", "--appendonly", "no", "--dir", dir.path(), "--daemonize", "no"],
        "readiness": "sd_notify", "control_channel": "off", "stop_signal": "SIGTERM",
        "stdout": "capture", "stderr": "capture", "ready_timeout_ms": 30000,
    });
    run_daemon(group, |entry, log| {
        assert_eq!(entry["status"], "Ready to accept connections", "{entry}");
        assert!(of_kind(log, "worker_status").len() >= 2, "{log:#?}");
        assert!(dir.join("redis.sock").exists());
    });
}

#[test]
fn php_fpm_becomes_ready_and_reports_its_status() {
    let dir = TempDir::new("php-fpm");
    let conf = dir.join("php-fpm.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nerror_log = /proc/self/fd/2\ndaemonize = no\npid = {pid}\n\
             [www]\nlisten = {sock}\npm = static\npm.max_children = 2\n",
            pid = dir.join("php-fpm.pid").display(),
            sock = dir.join("php-fpm.sock").display()
        ),
    )
    .unwrap();
    let fpm = ["php-fpm8.2", "php-fpm"]
        .iter()
        .find_map(|n| std::panic::catch_unwind(|| program(n)).ok())
        .unwrap_or_else(|| panic!("php-fpm is not installed: run scripts/setup"));
    // -R: CI runs as root; -n: no php.ini, so nothing outside the directory is read.
    let group = json!({
        "name": "fpm", "argv": [fpm, "-F", "-R", "-n", "-y", conf],
        "readiness": "sd_notify", "control_channel": "off", "stop_signal": "SIGQUIT",
        "stderr": "capture", "ready_timeout_ms": 30000,
    });
    run_daemon(group, |entry, _| {
        assert_eq!(entry["status"], "Ready to handle connections", "{entry}");
        assert!(dir.join("php-fpm.sock").exists());
    });
}

#[test]
fn haproxy_master_worker_becomes_ready_after_reloading() {
    let dir = TempDir::new("haproxy");
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  log stderr local0\ndefaults\n  mode http\n  timeout connect 1s\n\
             timeout client 1s\n  timeout server 1s\nfrontend f\n  bind unix@{sock}\n\
             default_backend b\nbackend b\n  server s1 unix@{backend}\n",
            sock = dir.join("haproxy.sock").display(),
            backend = dir.join("none.sock").display()
        ),
    )
    .unwrap();
    let master = dir.join("master.sock");
    let group = json!({
        "name": "haproxy", "argv": [program("haproxy"), "-Ws", "-S", master, "-f", conf],
        // The master stops its workers, as systemd's unit for it has it (KillMode=mixed): with
        // the signal to the whole group, a worker could get it twice (from us and from its
        // master) and die of the second during its soft stop (the master then exits 138).
        "readiness": "sd_notify", "control_channel": "off", "stop_signal": "SIGUSR1",
        "kill_mode": "mixed", "stderr": "capture", "ready_timeout_ms": 30000,
    });
    run_daemon(group, |entry, _| {
        // It says RELOADING=1 before its first READY=1, which ends it.
        assert_eq!(entry["notify"]["reloading"], false, "{entry}");
        // Its READY=1 can come before the master handles signals (a SIGUSR1 then is lost):
        // wait until its master CLI answers and lists the worker.
        let pid = entry["pid"].as_i64().unwrap();
        let deadline = std::time::Instant::now() + HANG;
        while !master_lists_a_worker(&master) {
            assert!(
                std::time::Instant::now() < deadline,
                "haproxy's master never listed its worker (pid {pid})"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });
}

/// Whether haproxy's master CLI answers `show proc` with a worker line.
fn master_lists_a_worker(socket: &std::path::Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    if conn.write_all(b"show proc\n").is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer ends with an empty line after "# programs".
    while !String::from_utf8_lossy(&answer).contains("# programs\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("worker"))
}

/// The newest PostgreSQL server installed (Debian keeps each major version apart).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/setup")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|bin| bin.join("postgres").is_file())
        .collect();
    versions.sort();
    versions.pop().expect("no postgres in /usr/lib/postgresql")
}

#[test]
fn postgresql_becomes_ready_through_sd_notify_as_an_unprivileged_user() {
    // PostgreSQL refuses to run as root: setpriv drops to nobody and execs it, keeping the
    // worker's pid, so its READY=1 comes from the worker itself.
    const NOBODY: u32 = 65534;
    let dir = TempDir::new("postgres");
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let data = dir.join("data");
    let bin = postgres_bin();
    let as_nobody = |program: PathBuf| -> Vec<String> {
        vec![
            "setpriv".into(),
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
            "--".into(),
            program.to_string_lossy().into_owned(),
        ]
    };
    let mut initdb = as_nobody(bin.join("initdb"));
    initdb.extend(["-D".into(), data.to_string_lossy().into_owned()]);
    initdb.extend(["--auth=trust".into(), "-U".into(), "postgres".into()]);
    let out = std::process::Command::new(&initdb[0])
        .args(&initdb[1..])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "initdb: {out:?}");
    let mut argv = as_nobody(bin.join("postgres"));
    argv.extend(["-D".into(), data.to_string_lossy().into_owned()]);
    // No TCP at all; its Unix socket in the temporary directory.
    argv.extend(["-c".into(), "listen_addresses=".into()]);
    argv.extend(["-k".into(), dir.path().to_string_lossy().into_owned()]);
    let group = json!({
        "name": "postgres", "argv": argv, "cwd": dir.path(),
        "readiness": "sd_notify", "control_channel": "off", "stop_signal": "SIGINT",
        // The postmaster stops its own processes ("fast" shutdown).
        "kill_mode": "mixed",
        "stderr": "capture", "ready_timeout_ms": 60000,
    });
    run_daemon(group, |entry, _| {
        assert!(dir.join(".s.PGSQL.5432").exists(), "{entry}");
    });
}
