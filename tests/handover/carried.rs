//! What format 2 carries (output, `reuse_port`, cgroups, the event fd) crosses a real `exec`.

use super::*;

/// Removes the cgroups a host's supervisor left (a failing test leaves none).
struct HostCgroups(u32);

impl Drop for HostCgroups {
    fn drop(&mut self) {
        cgroup_guard::remove_all(cgroup_guard::of_host(self.0));
    }
}

/// Says hello (on stdout and stderr), numbers lines on stdout in a loop in the background
/// (`n PID I`, a pause every 20), and says goodbye when told to stop over its control socket.
const CHATTY: &str = r#"
echo "hello $$"; echo "hello $$" >&2
( i=0; while :; do echo "n $$ $i"; i=$((i+1)); case $i in *[02468]0) sleep 0.01;; esac; done ) &
echo READY >&"$MPSUP_CONTROL_FD"
while read -r line <&"$MPSUP_CONTROL_FD"; do
  case "$line" in STOP*) echo "bye $$"; exit 0;; esac
done
"#;

/// Two workers with all that format 2 carries: stdout to a rotating file at `out`, stderr
/// captured, `reuse_port` sockets, cgroup limits.
fn everything(out: &std::path::Path) -> Value {
    with(
        sh_group("g", 2, CHATTY),
        json!({"readiness": "notify", "stdout": {"file": out, "max_bytes": 1_000_000, "keep": 1},
               "stderr": "capture", "reuse_port": true,
               "listen": [{"name": "http", "tcp": "127.0.0.1:0"}],
               "memory_max": "64M", "pids_max": 32}),
    )
}

/// Each worker's numbered lines in `text` (`n PID I`): none lost or doubled, in order.
fn assert_numbered(text: &str, workers: &[i64]) {
    for pid in workers {
        let prefix = format!("n {pid} ");
        let numbers: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(!numbers.is_empty(), "{pid}");
        assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());
    }
}

/// Everything format 2 carries, across a real `exec`: a group with stdout to a rotating file,
/// stderr captured, `reuse_port` sockets and cgroup limits, and a host that polls the event fd.
/// Nothing is refused; no descriptor is left inheritable; the event fd has the same number and
/// is readable; the file has the lines of both images; the stop reaches every worker; the
/// freed supervisor leaves no cgroup.
#[test]
fn what_format_2_carries_crosses_a_real_exec() {
    let killer = Killer::default();
    let dir = scratch_dir("handover-carry");
    let out = dir.join("out.log");
    let group = everything(&out);
    let go = dir.join("go");
    let env = [("EVENT_FD", "1"), ("WAIT_FOR", go.to_str().unwrap())];
    let mut run = Run::start("basic", &json!([group]).to_string(), &env);
    let host = run.host.pid() as u32;
    let _cgroups = HostCgroups(host);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let status = run.json("STATUS");
    assert_eq!(status["guarantees"]["limits"], "cgroup1", "{status}");
    let number = run.until("EVENT_FD");
    run.until("ADOPTED");
    // Each worker's loop goes on writing after the adoption, and its lines land.
    let numbered = |pid: i64| {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let prefix = format!("n {pid} ");
        text.lines().filter(|l| l.starts_with(&prefix)).count()
    };
    let landed: Vec<usize> = before.iter().map(|&p| numbered(p)).collect();
    let until = Instant::now() + HANG;
    while before
        .iter()
        .zip(&landed)
        .any(|(&p, &n)| numbered(p) < n + 100)
    {
        assert!(Instant::now() < until, "no output after the adoption");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(&go, b"").unwrap();
    assert_eq!(run.until("EVENT_FD"), format!("{number} 1"));
    assert_eq!(run.said("INHERITABLE"), Vec::<&str>::new());
    assert_eq!(run.said("MEMFD_OPEN"), Vec::<&str>::new());
    let after = worker_pids(&run.json("SNAPSHOT"));
    assert_eq!(after, before);
    let log = run.finish();
    assert_stopped_with_0(&log, 2);
    let text = read(&out);
    assert_numbered(&text, &before);
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("n "))
        .map(str::to_string)
        .collect();
    lines.sort();
    let mut want: Vec<String> = before
        .iter()
        .flat_map(|p| [format!("bye {p}"), format!("hello {p}")])
        .collect();
    want.sort();
    assert_eq!(lines, want);
    assert_eq!(cgroup_guard::of_host(host), Vec::<PathBuf>::new());
}

/// `abort` with all that format 2 carries: every descriptor (the event fd, the output pipes)
/// is close-on-exec again, the output goes on whole, and the cgroups go at free.
#[test]
fn abort_with_what_format_2_carries_leaves_nothing_inheritable() {
    let killer = Killer::default();
    let dir = scratch_dir("handover-carry-abort");
    let out = dir.join("out.log");
    let config = json!([everything(&out)]).to_string();
    let mut run = Run::start("abort", &config, &[("EVENT_FD", "1")]);
    let host = run.host.pid() as u32;
    let _cgroups = HostCgroups(host);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    run.until("EVENT_FD");
    assert_eq!(run.until("LOCKED"), "MPSUP_ERR_INVALID_HANDLE");
    assert_eq!(worker_pids(&run.json("SNAPSHOT")), before);
    assert_eq!(run.said("INHERITABLE"), Vec::<&str>::new());
    assert_eq!(run.said("MEMFD_OPEN"), Vec::<&str>::new());
    run.until("DONE");
    assert_eq!(run.exit_code(), Some(0));
    assert_numbered(&read(&out), &before);
    assert_eq!(cgroup_guard::of_host(host), Vec::<PathBuf>::new());
}

/// The keeper (same pid, its socket carried) still does its work after an adoption: a host
/// SIGKILLed then takes its workers, a `setsid` grandchild in their cgroups, and the cgroups.
#[test]
fn a_host_killed_after_adoption_takes_its_workers_and_cgroups() {
    let killer = Killer::default();
    let dir = scratch_dir("handover-keeper");
    let grandchild = dir.join("grandchild");
    let script = format!(
        "setsid sleep 1000 & echo $! > {}; {POLITE}",
        grandchild.display()
    );
    let group = with(
        sh_group("g", 1, &script),
        json!({"readiness": "notify", "memory_max": "64M"}),
    );
    let mut run = Run::start("dieafter", &json!([group]).to_string(), &[]);
    let host = run.host.pid();
    let _cgroups = HostCgroups(host as u32);
    let before = worker_pids(&run.json("SNAPSHOT"));
    killer.add(&before);
    let escaped: i64 = read(&grandchild).trim().parse().unwrap();
    killer.add(&[escaped]);
    run.until("ADOPTED");
    assert_eq!(worker_pids(&run.json("SNAPSHOT")), before);
    let cgroups = cgroup_guard::of_host(host as u32);
    assert!(!cgroups.is_empty());
    // SAFETY: plain system call on our own child.
    unsafe { libc::kill(host, libc::SIGKILL) };
    run.host.wait_within(HANG).expect("the host did not die");
    let all: Vec<i64> = before.iter().copied().chain([escaped]).collect();
    assert!(
        all_die(&all, Duration::from_secs(10)),
        "{all:?} outlived their host"
    );
    for dir in &cgroups {
        cgroup_guard::wait_gone(dir);
    }
}
