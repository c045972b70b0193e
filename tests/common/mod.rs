//! Helpers shared by the integration tests: group JSON builders, event waiting driven by the
//! event fd, and process-state checks through /proc.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mpsupervisor::Supervisor;
use serde_json::{json, Value};

/// `seconds` as a `Duration`, for the calls that wait.
pub fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

/// Rolling-restart options from their JSON text.
pub fn options(json: &str) -> mpsupervisor::config::RestartOptions {
    serde_json::from_str(json).expect("restart options")
}

/// The snapshot and the status as the JSON the C API writes, for tests that read them by key.
pub trait Views {
    fn snapshot_value(&self) -> Value;
    fn status_value(&self) -> Value;
}

impl Views for Supervisor {
    fn snapshot_value(&self) -> Value {
        serde_json::from_str(&self.snapshot_json().expect("snapshot")).unwrap()
    }
    fn status_value(&self) -> Value {
        serde_json::to_value(self.status().expect("status")).unwrap()
    }
}

/// Upper bound for anything a test waits on; only reached when the library is broken.
pub const HANG: Duration = Duration::from_secs(60);

/// A shell worker that says READY when it has a channel, then exits 0 on STOP or EOF.
pub const POLITE: &str = r#"
if [ -n "$MPSUP_CONTROL_FD" ]; then
  echo READY >&"$MPSUP_CONTROL_FD"
  while read -r line <&"$MPSUP_CONTROL_FD"; do
    case "$line" in STOP*) exit 0;; esac
  done
  exit 0
fi
while :; do sleep 1; done
"#;

/// A worker that ignores STOP lines and SIGTERM; only SIGKILL ends it.
pub const STUBBORN: &str = r#"
trap '' TERM
echo READY >&"$MPSUP_CONTROL_FD"
exec sleep 1000000
"#;

pub fn sh_group(name: &str, workers: u32, script: &str) -> Value {
    json!({"name": name, "workers": workers, "argv": ["/bin/sh", "-c", script]})
}

pub fn with(mut group: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        group[k] = v.clone();
    }
    group
}

pub fn supervisor(groups: &[Value]) -> Supervisor {
    let sup = Supervisor::new().expect("supervisor");
    sup.configure_json(&Value::Array(groups.to_vec()).to_string())
        .expect("configure");
    sup
}

/// A supervisor asked for a cgroup per worker (`Options::cgroup`), configured with nothing yet.
pub fn cgroup_supervisor() -> Supervisor {
    Supervisor::with_options(mpsupervisor::Options {
        cgroup: true,
        ..Default::default()
    })
    .expect("supervisor")
}

/// Collects events into `log` until `done(log)` holds, waking on the event fd.
pub fn wait_events(sup: &Supervisor, log: &mut Vec<Value>, done: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + HANG;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sup.event_fd().unwrap());
    loop {
        for e in sup.drain_events(0).unwrap() {
            log.push(serde_json::to_value(e).unwrap());
        }
        if done(log) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "events never came; so far: {log:#?}"
        );
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 1000) };
    }
}

pub fn count(log: &[Value], kind: &str) -> usize {
    log.iter().filter(|e| e["kind"] == kind).count()
}

pub fn of_kind<'a>(log: &'a [Value], kind: &str) -> Vec<&'a Value> {
    log.iter().filter(|e| e["kind"] == kind).collect()
}

pub fn drain_all(sup: &Supervisor) -> Vec<Value> {
    sup.drain_events(0)
        .unwrap()
        .into_iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

/// The single-letter state of a process from /proc, or None when it is gone.
pub fn proc_state(pid: i64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.chars().next()
}

/// Our own children must be gone entirely: reaped, not zombies.
pub fn assert_gone(pid: i64) {
    assert_eq!(proc_state(pid), None, "process {pid} is still there");
}

/// Grandchildren may stay zombies here (PID 1 does not reap), but must not run.
pub fn assert_dead(pid: i64) {
    let deadline = Instant::now() + HANG;
    loop {
        match proc_state(pid) {
            None | Some('Z') | Some('X') => return,
            Some(s) => assert!(
                Instant::now() < deadline,
                "process {pid} still alive in state {s}"
            ),
        }
        std::thread::yield_now();
    }
}

pub fn pids(snapshot: &Value, group: &str) -> Vec<i64> {
    snapshot[group]
        .as_array()
        .map(|ws| ws.iter().map(|w| w["pid"].as_i64().unwrap()).collect())
        .unwrap_or_default()
}

/// The pids of the ready workers of `group` in `snapshot` (not one still finishing its stop).
pub fn ready_pids_of(snapshot: &Value, group: &str) -> Vec<i64> {
    snapshot[group]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter(|w| w["ready"] == true)
                .map(|w| w["pid"].as_i64().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// A fresh directory under the system's temporary directory, removed with everything in it when
/// the guard is dropped, so a test leaves nothing behind whether it passes or panics.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// `mpsup-test-<tag>-<pid>-<n>`: unique within this test binary and across binaries.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("mpsup-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl serde::Serialize for TempDir {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.path.serialize(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn scratch_dir(tag: &str) -> TempDir {
    TempDir::new(tag)
}

/// Waits until a file exists (written by a worker), driven by the worker's own events where
/// possible; here the file is written before the worker says READY, so callers wait for ready.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The directory where the tests build C programs.
pub fn build_dir() -> PathBuf {
    // target/<profile>/deps/<test binary> → target/<profile>/c-tests
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("c-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The directory holding the libmpsupervisor.so of this very test build: target/<profile>/deps,
/// next to the test binary. `cargo test` rebuilds the library there (all its crate types come
/// from one compile) but does not copy it up to target/<profile>, so linking against (or
/// loading from) target/<profile>/libmpsupervisor.so would test whatever `cargo build` made last.
pub fn lib_dir() -> PathBuf {
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let lib = dir.join("libmpsupervisor.so");
    assert!(
        lib.exists(),
        "{}: the library of this test build is missing",
        lib.display()
    );
    dir
}

/// Compiles C sources into an executable in `build_dir()`, strict warnings on, linked with the
/// library when `link` is true. Each test binary builds its own copy, so parallel test binaries
/// never race on one output file.
pub fn build_c(name: &str, sources: &[&str], link: bool, extra: &[&str]) -> PathBuf {
    build_program("cc", "-std=c11", name, sources, link, extra)
}

/// `build_c` for C++17 sources.
pub fn build_cpp(name: &str, sources: &[&str], link: bool) -> PathBuf {
    build_program("c++", "-std=c++17", name, sources, link, &[])
}

fn build_program(
    compiler: &str,
    std: &str,
    name: &str,
    sources: &[&str],
    link: bool,
    extra: &[&str],
) -> PathBuf {
    // Tests of one binary run in parallel: build each program once, under a lock.
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tag = std::env::current_exe()
        .unwrap()
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let out = build_dir().join(format!("{name}-{tag}"));
    if built.iter().any(|b| b == name) {
        return out;
    }
    let mut cmd = std::process::Command::new(compiler);
    cmd.args([
        std,
        "-O1",
        "-g",
        "-Wall",
        "-Wextra",
        "-Wpedantic",
        "-Werror",
    ])
    .arg("-I")
    .arg(root.join("include"))
    .args(extra)
    .arg("-o")
    .arg(&out);
    for s in sources {
        cmd.arg(root.join(s));
    }
    if link {
        let lib = lib_dir();
        // DT_RPATH, not DT_RUNPATH: cargo test puts target/<profile> first in LD_LIBRARY_PATH,
        // which would otherwise win and load the library `cargo build` made last.
        cmd.arg("-L")
            .arg(&lib)
            .arg(format!("-Wl,--disable-new-dtags,-rpath,{}", lib.display()))
            .arg("-lmpsupervisor");
    }
    let status = cmd.status().expect("the compiler runs");
    assert!(status.success(), "building {name} failed");
    if link {
        assert_loads_this_library(&out);
    }
    built.push(name.to_string());
    out
}

/// Fails unless `program`, started with this test's environment, loads the library of this
/// test build: the dynamic loader says where it finds each library and exits.
fn assert_loads_this_library(program: &std::path::Path) {
    let out = std::process::Command::new(program)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("the loader runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = lib_dir().join("libmpsupervisor.so");
    let found = text
        .lines()
        .find(|l| l.trim_start().starts_with("libmpsupervisor.so "))
        .and_then(|l| l.split("=>").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .map(PathBuf::from);
    assert_eq!(
        found.as_deref().map(|p| p.canonicalize().unwrap()),
        Some(expected.canonicalize().unwrap()),
        "{} would load another libmpsupervisor.so:\n{text}",
        program.display()
    );
}

/// The pids of this process's children, from /proc, but for the keepers of live supervisors
/// (`mpsup-keeper`, one per supervisor, reaped when it is freed).
pub fn children() -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(text.split_whitespace().map(String::from));
    }
    out.retain(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map_or(true, |c| c.trim() != "mpsup-keeper")
    });
    out
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path of our own.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// Makes a FIFO at `path` and opens it for reading (non-blocking), so that writers can open it;
/// the caller never reads it, so a writer gets stuck once its 64 KiB buffer is full.
pub fn fifo_with_idle_reader(path: &std::path::Path) -> i32 {
    mkfifo(path);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: open on a NUL-terminated path; the caller closes the descriptor.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    assert!(fd >= 0);
    fd
}

/// A supervisor whose jsonl log exporter is stuck: it writes to a FIFO that is open for reading
/// but never read, and 3 cycles of 100 workers fill the FIFO's 64 KiB. Returns the supervisor
/// and the FIFO's read end, which the caller closes, and the directory holding the FIFO.
pub fn supervisor_with_stuck_log_exporter(tag: &str) -> (Supervisor, i32, TempDir) {
    let dir = scratch_dir(tag);
    let fifo = dir.join("log.fifo");
    let reader = fifo_with_idle_reader(&fifo);
    let sup = supervisor(&[with(
        sh_group("g", 100, POLITE),
        json!({"readiness": "notify"}),
    )]);
    let settings = json!({"exporters": [{"kind": "jsonl", "settings": {"path": fifo}}]});
    sup.configure_logging_json(&settings.to_string()).unwrap();
    // A supervisor blocked by its exporter would hang here.
    for _ in 0..3 {
        sup.start_groups(&["g"]).unwrap();
        assert!(sup.wait_ready(secs(60.0)).unwrap());
        sup.stop_groups(secs(30.0), true).unwrap();
    }
    (sup, reader, dir)
}

/// Runs `f` on a thread of its own and gives its result, failing the test when it does not
/// return within `limit`: a call that hangs fails instead of hanging the suite. (The stuck
/// thread is left behind; the test binary ends with the failure.)
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            worker.join().unwrap();
            value
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // It panicked: show that panic.
            match worker.join() {
                Err(payload) => std::panic::resume_unwind(payload),
                Ok(()) => unreachable!("sent nothing, yet returned"),
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {limit:?}")
        }
    }
}

/// Python (after `import os, socket`): `notify(msg)` sends one sd_notify datagram to
/// `NOTIFY_SOCKET` (an abstract address when it starts with `@`).
pub const PY_NOTIFY: &str = r#"
def notify(msg):
    addr = os.environ["NOTIFY_SOCKET"]
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(msg.encode(), addr)
    s.close()
"#;

/// The pre-fork HTTP server of the listen and handover tests (`tests/programs/prefork_http.py`).
pub fn prefork_server() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/prefork_http.py")
}

/// One HTTP/1.0 request on `stream`; the body of a 200 answer.
pub fn http_request(
    mut stream: impl std::io::Read + std::io::Write,
    path: &str,
) -> std::io::Result<String> {
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!("bad answer: {answer:?}"))),
    }
}

/// `http_request` over TCP to `address`, connecting and reading within 10 s.
pub fn http_get(address: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    http_request(stream, path)
}

/// A Python sd_notify worker that sends `READY=1`, and on its reload signal (SIGHUP) sends
/// `RELOADING=1` (with `MONOTONIC_USEC`), runs `work` (Python lines), then sends `READY=1`.
pub fn py_reloader(work: &str) -> String {
    let work: String = work.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        r#"
import os, signal, socket, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
asked = []
signal.signal(signal.SIGHUP, lambda *a: asked.append(1))
{PY_NOTIFY}
notify("READY=1")
while True:
    if asked:
        asked.clear()
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notify("RELOADING=1\nMONOTONIC_USEC=%d" % usec)
{work}        notify("READY=1")
    time.sleep(0.01)
"#
    )
}

/// Runs test `name` of this test binary again, alone, in a child process with `env` added to
/// its environment (a test that changes something process-wide, or must run under a filter),
/// and checks that it passed.
pub fn run_alone_in_child(name: &str, env: &[(&str, String)]) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture"]);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

/// Configures and starts group `name` of `n` shell workers running `script` with notify
/// readiness, waits until they are ready, and returns their pids.
pub fn start_ready(sup: &Supervisor, name: &str, n: u32, script: &str) -> Vec<i64> {
    sup.configure_json(
        &json!([with(
            sh_group(name, n, script),
            json!({"readiness": "notify"})
        )])
        .to_string(),
    )
    .unwrap();
    sup.start_groups(&[name]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    pids(&sup.snapshot_value(), name)
}
