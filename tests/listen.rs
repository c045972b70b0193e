//! Listen sockets: opened once per group and passed to its workers with systemd's socket
//! activation variables, kept across respawns, scaling and rolling restarts, closed at stop;
//! `reuse_port` gives each worker its own socket on one port. A pre-fork HTTP server of Python
//! workers (tests/programs/prefork_http.py) is rolled out under load and fails no request.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mpsupervisor::Supervisor;
use serde_json::{json, Value};

fn http_group(workers: u32, listen: Value, extra: Value) -> Value {
    with(
        json!({"name": "web", "workers": workers,
               "argv": ["python3", prefork_server().to_str().unwrap()],
               "readiness": "sd_notify", "listen": listen, "env": {"VERSION": "1"}}),
        extra,
    )
}

fn listen_addresses(sup: &Supervisor) -> Vec<(String, String)> {
    sup.status_value()["groups"]["web"]["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `socket:[inode]` of a worker's descriptor.
fn socket_of(pid: i64, fd: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Whether this process still holds a descriptor for `socket` (`socket:[inode]`).
fn we_hold(socket: &str) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .any(|e| std::fs::read_link(e.unwrap().path()).is_ok_and(|l| l.to_string_lossy() == socket))
}

fn ready_pids(sup: &Supervisor) -> Vec<i64> {
    let mut pids = ready_pids_of(&sup.snapshot_value(), "web");
    pids.sort();
    pids
}

#[test]
fn workers_get_the_groups_sockets_with_socket_activation_variables() {
    let dir = TempDir::new("listen-env");
    let unix = dir.path().join("admin.sock");
    let sup = supervisor(&[http_group(
        2,
        json!([{"name": "http", "tcp": "127.0.0.1:0"},
               {"name": "admin", "unix": unix.to_str().unwrap(), "backlog": 16}]),
        json!({}),
    )]);
    sup.start_groups(&["web"]).unwrap();
    assert!(
        sup.wait_ready(secs(30.0)).unwrap(),
        "{:#?}",
        drain_all(&sup)
    );
    let addresses = listen_addresses(&sup);
    assert_eq!(addresses[0].0, "http");
    let http: SocketAddr = addresses[0].1.parse().unwrap();
    assert_eq!(http.ip().to_string(), "127.0.0.1");
    assert_ne!(http.port(), 0, "the bound port is shown");
    assert_eq!(
        addresses[1],
        ("admin".into(), unix.to_str().unwrap().into())
    );

    let pids = ready_pids(&sup);
    let shared = socket_of(pids[0], 3);
    for pid in &pids {
        assert_eq!(socket_of(*pid, 3), shared, "one socket for every worker");
    }
    for env in [
        http_get(http, "/env").unwrap(),
        http_request(UnixStream::connect(&unix).unwrap(), "/env").unwrap(),
    ] {
        let env: Value = serde_json::from_str(&env).unwrap();
        assert!(pids.contains(&env["pid"].as_i64().unwrap()), "{env}");
        assert_eq!(env["listen_pid"], env["pid"].to_string(), "{env}");
        assert_eq!(env["listen_fds"], "2");
        assert_eq!(env["listen_fdnames"], "http:admin");
        assert_eq!(
            env["control_fd"], "5",
            "the control socket comes after them"
        );
        assert_eq!(
            env["sockets"][0]["address"],
            format!("('127.0.0.1', {})", http.port())
        );
        assert_eq!(env["sockets"][1]["address"], unix.to_str().unwrap());
    }
    sup.stop_groups(secs(30.0), true).unwrap();
    let log = drain_all(&sup);
    assert!(
        of_kind(&log, "worker_stopped")
            .iter()
            .all(|e| e["exit_code"] == 0),
        "{log:#?}"
    );
    assert!(TcpStream::connect(http).is_err(), "closed at stop");
    assert!(!unix.exists(), "the socket file is removed at stop");
    assert!(!we_hold(&shared));
    assert_eq!(listen_addresses(&sup), vec![]);
}

/// A worker that finds each socket by its name, as a socket-activated program does: the names in
/// `LISTEN_FDNAMES` split at `:` give descriptors 3, 4, 5 in order, each bound where status says.
#[test]
fn listen_fdnames_names_each_descriptor_in_order() {
    let dir = TempDir::new("fdnames");
    let report = dir.path().join("sockets.json");
    let script = r#"
import json, os, socket, sys, time
names = os.environ["LISTEN_FDNAMES"].split(":")
found = {}
for i, name in enumerate(names):
    s = socket.socket(fileno=3 + i)
    found[name] = s.getsockname() if s.family == socket.AF_UNIX else "%s:%d" % s.getsockname()
    s.detach()
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump({"fds": os.environ["LISTEN_FDS"], "found": found}, f)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(1000)
"#;
    let unix = dir.path().join("b.sock");
    let sup = supervisor(&[
        json!({"name": "web", "warmup_ms": 1, "control_channel": "off",
        "argv": ["python3", "-c", script, report.to_str().unwrap()],
        "listen": [{"name": "a", "tcp": "127.0.0.1:0"},
                   {"name": "b", "unix": unix.to_str().unwrap()},
                   {"name": "c", "tcp": "127.0.0.1:0"}]}),
    ]);
    sup.start_groups(&["web"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !report.exists() && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let seen: Value = serde_json::from_str(&read(&report)).unwrap();
    assert_eq!(seen["fds"], "3", "{seen}");
    for (name, address) in listen_addresses(&sup) {
        assert_eq!(seen["found"][&name], address, "{name}: {seen}");
    }
    sup.stop_groups(secs(30.0), false).unwrap();
}

#[test]
fn sockets_are_kept_across_respawns_scaling_and_rollouts() {
    let sup = supervisor(&[http_group(
        2,
        json!([{"name": "http", "tcp": "127.0.0.1:0"}]),
        json!({"restart": "always", "restart_delay_ms": 10}),
    )]);
    sup.start_groups(&["web"]).unwrap();
    assert!(sup.wait_ready(secs(30.0)).unwrap());
    let http: SocketAddr = listen_addresses(&sup)[0].1.parse().unwrap();
    let pids = ready_pids(&sup);
    let shared = socket_of(pids[0], 3);
    let mut log = drain_all(&sup);

    // A respawn.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_ready") >= 3);
    // Scaling up.
    sup.scale_group("web", 3).unwrap();
    wait_events(&sup, &mut log, |l| count(l, "worker_ready") >= 4);
    // A rolling restart to a new version.
    sup.configure_json(
        &json!([http_group(
            3,
            json!([{"name": "http", "tcp": "127.0.0.1:0"}]),
            json!({"restart": "always", "restart_delay_ms": 10, "env": {"VERSION": "2"}})
        )])
        .to_string(),
    )
    .unwrap();
    sup.restart_groups(&["web"], &Default::default()).unwrap();
    // `rollout_finished` says every slot runs the new generation and each old worker has been
    // asked to stop; an old one still draining may accept from the shared queue until it
    // exits, so the request below waits for every old worker to be gone.
    wait_events(&sup, &mut log, |l| {
        count(l, "rollout_finished") == 1
            && count(l, "worker_stopped") == count(l, "worker_stopping")
    });
    assert!(sup.wait_ready(secs(30.0)).unwrap());

    assert_eq!(
        listen_addresses(&sup)[0].1,
        http.to_string(),
        "same address"
    );
    let now = ready_pids(&sup);
    assert_eq!(now.len(), 3);
    for pid in &now {
        assert!(!pids.contains(pid));
        assert_eq!(socket_of(*pid, 3), shared, "the same socket");
    }
    let answer = http_get(http, "/").unwrap();
    assert!(answer.starts_with("2 "), "{answer}");
    sup.stop_groups(secs(30.0), true).unwrap();
    assert!(!we_hold(&shared));
}

#[test]
fn reuse_port_gives_each_worker_its_own_socket_on_one_port() {
    let sup = supervisor(&[http_group(
        3,
        json!([{"name": "http", "tcp": "127.0.0.1:0"}]),
        json!({"reuse_port": true}),
    )]);
    sup.start_groups(&["web"]).unwrap();
    assert!(sup.wait_ready(secs(30.0)).unwrap());
    let http: SocketAddr = listen_addresses(&sup)[0].1.parse().unwrap();
    assert_ne!(http.port(), 0);
    let pids = ready_pids(&sup);
    let mut sockets: Vec<String> = pids.iter().map(|p| socket_of(*p, 3)).collect();
    sockets.sort();
    sockets.dedup();
    assert_eq!(sockets.len(), 3, "one socket per worker");
    for s in &sockets {
        assert!(
            !we_hold(s),
            "the supervisor keeps no copy of a worker's socket"
        );
    }
    // Each answers on the one port: connect until every worker has answered.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..1000 {
        let body = http_get(http, "/").unwrap();
        seen.insert(body.split(' ').nth(1).unwrap().parse::<i64>().unwrap());
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), pids);
    sup.stop_groups(secs(30.0), true).unwrap();
    assert!(
        TcpStream::connect(http).is_err(),
        "the port is free after stop"
    );
}

#[test]
fn a_bad_address_or_a_taken_port_is_refused() {
    let err = Supervisor::new()
        .unwrap()
        .configure_json(
            &json!([http_group(
                1,
                json!([{"name": "http", "tcp": "localhost:80"}]),
                json!({})
            )])
            .to_string(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("groups[0].listen[0]"), "{err}");
    for (listen, reuse, needle) in [
        (
            json!([{"name": "a:b", "tcp": "127.0.0.1:0"}]),
            false,
            "name",
        ),
        (
            json!([{"name": "a", "tcp": "127.0.0.1:0", "unix": "/x"}]),
            false,
            "exactly one",
        ),
        (json!([{"name": "a", "unix": "/tmp/x"}]), true, "reuse_port"),
        (
            json!([{"name": "a", "tcp": "127.0.0.1:0"}, {"name": "a", "tcp": "127.0.0.1:0"}]),
            false,
            "duplicate",
        ),
    ] {
        let err = Supervisor::new()
            .unwrap()
            .configure_json(
                &json!([http_group(1, listen, json!({"reuse_port": reuse}))]).to_string(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let sup = supervisor(&[http_group(
        1,
        json!([{"name": "http", "tcp": format!("127.0.0.1:{port}")}]),
        json!({}),
    )]);
    let err = sup.start_groups(&["web"]).unwrap_err().to_string();
    assert!(
        err.contains("listen 'http'") && err.contains("in use"),
        "{err}"
    );
    assert!(sup.snapshot_value().as_object().unwrap().is_empty());
}

/// Client threads that send requests back to back and count what failed.
struct Load {
    stop: Arc<AtomicBool>,
    progress: Arc<(Mutex<Tally>, Condvar)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    failed: Vec<String>,
    /// Answers by version.
    versions: std::collections::BTreeMap<String, u64>,
}

impl Load {
    fn start(address: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new((Mutex::new(Tally::default()), Condvar::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, progress) = (Arc::clone(&stop), Arc::clone(&progress));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let result = http_get(address, "/");
                        let mut t = progress.0.lock().unwrap();
                        match result {
                            Ok(body) => {
                                t.ok += 1;
                                let version = body.split(' ').next().unwrap_or("").to_string();
                                *t.versions.entry(version).or_default() += 1;
                            }
                            Err(e) => t.failed.push(e.to_string()),
                        }
                        progress.1.notify_all();
                    }
                })
            })
            .collect();
        Load {
            stop,
            progress,
            threads,
        }
    }

    /// Waits until `n` more answers of `version` came.
    fn wait_answers(&self, version: &str, n: u64) {
        let (lock, cv) = &*self.progress;
        let mut t = lock.lock().unwrap();
        let target = t.versions.get(version).copied().unwrap_or(0) + n;
        while t.versions.get(version).copied().unwrap_or(0) < target {
            let (next, timeout) = cv.wait_timeout(t, HANG).unwrap();
            assert!(
                !timeout.timed_out(),
                "no answers of version {version}: {:?}",
                *next
            );
            t = next;
        }
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.progress)
            .unwrap()
            .0
            .into_inner()
            .unwrap()
    }
}

/// A rolling restart of a pre-fork server under a loopback load: every request succeeds, and the
/// new version takes over.
fn roll_out_under_load(reuse_port: bool) {
    let listen = json!([{"name": "http", "tcp": "127.0.0.1:0"}]);
    let extra = json!({"reuse_port": reuse_port, "control_channel": "off"});
    let sup = supervisor(&[http_group(3, listen.clone(), extra.clone())]);
    sup.start_groups(&["web"]).unwrap();
    assert!(sup.wait_ready(secs(30.0)).unwrap());
    let http: SocketAddr = listen_addresses(&sup)[0].1.parse().unwrap();
    let old = ready_pids(&sup);
    let load = Load::start(http, 4);
    load.wait_answers("1", 200);

    let mut v2 = with(
        http_group(3, listen, extra),
        json!({"env": {"VERSION": "2"}}),
    );
    v2["restart"] = json!("never");
    sup.configure_json(&json!([v2]).to_string()).unwrap();
    sup.restart_groups(
        &["web"],
        &options(r#"{"max_surge": 1, "max_unavailable": 0}"#),
    )
    .unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        count(l, "rollout_finished") == 1
            && old.iter().all(|pid| {
                l.iter()
                    .any(|e| e["kind"] == "worker_stopped" && e["pid"] == *pid)
            })
    });
    load.wait_answers("2", 200);
    let tally = load.finish();
    sup.stop_groups(secs(30.0), true).unwrap();
    log.extend(drain_all(&sup));
    assert!(
        tally.failed.is_empty(),
        "{} failed of {}: {:?}",
        tally.failed.len(),
        tally.ok,
        tally.failed
    );
    assert!(
        tally.versions["1"] >= 200 && tally.versions["2"] >= 200,
        "{tally:?}"
    );
    assert_eq!(count(&log, "rollout_failed"), 0, "{log:#?}");
    for e in of_kind(&log, "worker_stopped") {
        assert_eq!(e["exit_code"], 0, "every worker drained and exited 0: {e}");
    }
}

#[test]
fn a_rolling_restart_on_a_shared_socket_fails_no_request() {
    roll_out_under_load(false);
}

/// With `reuse_port`, connections queued on an old worker's own socket when it closes it are
/// reset unless the kernel moves them to the other workers' sockets
/// (`net.ipv4.tcp_migrate_req`, Linux 5.14). The test runs itself again in a network namespace
/// of its own (root only), where it turns that on without touching the machine's setting.
#[test]
fn a_rolling_restart_with_reuse_port_fails_no_request() {
    const INSIDE: &str = "MPSUP_TEST_IN_NETNS";
    if std::env::var_os(INSIDE).is_some() {
        set_loopback_up();
        std::fs::write("/proc/sys/net/ipv4/tcp_migrate_req", "1").unwrap();
        roll_out_under_load(true);
        return;
    }
    let out = std::process::Command::new("unshare")
        .args(["--net", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_rolling_restart_with_reuse_port_fails_no_request",
            "--nocapture",
        ])
        .env(INSIDE, "1")
        .output()
        .expect("unshare (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "in a network namespace:\n{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// `ip link set lo up`, without iproute2.
fn set_loopback_up() {
    // SAFETY: an ifreq naming "lo", used with the two ioctls that read and set its flags.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[..2].copy_from_slice(&[b'l' as libc::c_char, b'o' as libc::c_char]);
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req), 0);
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut req), 0);
        libc::close(fd);
    }
}

/// A host that systemd started has `NOTIFY_SOCKET`, `WATCHDOG_*` and `LISTEN_*` of its own: none
/// reaches a worker (it would speak for the host, or take its sockets). The test runs itself
/// again with those in its environment.
#[test]
fn the_hosts_own_systemd_variables_never_reach_workers() {
    const INSIDE: &str = "MPSUP_TEST_HOST_VARS";
    const HOST_ONLY: [&str; 6] = [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ];
    if std::env::var_os(INSIDE).is_none() {
        let mut env: Vec<(&str, String)> = vec![(INSIDE, "1".into())];
        env.extend(HOST_ONLY.iter().map(|&key| (key, "from-the-host".into())));
        run_alone_in_child("the_hosts_own_systemd_variables_never_reach_workers", &env);
        return;
    }
    assert_eq!(std::env::var("LISTEN_FDS").unwrap(), "from-the-host");
    let dir = TempDir::new("host-vars");
    let dump = format!(
        "env > {}/\"$MPSUP_WORKER_ID\"; echo READY >&\"$MPSUP_CONTROL_FD\"; exec sleep 100000",
        dir.path().display()
    );
    let sup = supervisor(&[
        with(sh_group("plain", 1, &dump), json!({"readiness": "notify"})),
        with(
            sh_group("activated", 1, &dump),
            json!({"readiness": "notify", "listen": [{"name": "a", "tcp": "127.0.0.1:0"}]}),
        ),
    ]);
    sup.start_groups(&["plain", "activated"]).unwrap();
    assert!(
        sup.wait_ready(secs(30.0)).unwrap(),
        "{:#?}",
        drain_all(&sup)
    );
    let env_of = |id: &str| -> std::collections::BTreeMap<String, String> {
        read(&dir.path().join(id))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let plain = env_of("plain#1");
    for key in HOST_ONLY {
        assert!(
            !plain.contains_key(key),
            "{key} reached a worker: {plain:?}"
        );
    }
    let activated = env_of("activated#1");
    let pid = pids(&sup.snapshot_value(), "activated")[0];
    assert_eq!(activated["LISTEN_FDS"], "1");
    assert_eq!(activated["LISTEN_FDNAMES"], "a");
    // sh is the worker itself: its pid is the one the shim set.
    assert_eq!(activated["LISTEN_PID"], pid.to_string());
    assert!(!activated.contains_key("NOTIFY_SOCKET"));
    sup.force_terminate_groups(&["plain", "activated"]).unwrap();
}
