//! A worker born in its cgroup by the spawn itself (`clone3` with `CLONE_INTO_CGROUP`, no exec
//! shim: `cgroup` on, a group without limits, identity or listen sockets) starts exactly as one
//! spawned by `posix_spawn` without cgroups: default signals whatever the host set, an empty
//! mask, its own process group, the host as its parent, only its own descriptors, its `cwd`;
//! only its cgroup differs. Where the kernel refuses `clone3` (a seccomp filter here), the exec
//! shim places it instead. One binary of its own: the first test changes process-wide signal
//! dispositions.

mod common;

use std::os::fd::IntoRawFd;

use common::*;
use mpsupervisor::{Options, Supervisor};
use serde_json::json;

/// One worker of `tests/programs/report.c` (its signal state, descriptors, ids, cwd and cgroup,
/// on stdout) under a supervisor with `cgroup` as given: its report, its descriptors' targets
/// as the host sees them, and its pid.
fn describe(cgroup: bool, dir: &TempDir) -> (Vec<String>, Vec<String>, i64) {
    let program = build_c("report", &["tests/programs/report.c"], false, &[]);
    let sup = Supervisor::with_options(Options {
        cgroup,
        ..Options::default()
    })
    .unwrap();
    let out = dir.join(format!("out-{cgroup}"));
    let group = json!({"name": "g", "argv": [program], "readiness": "notify", "cwd": dir.path(),
                       "stdout": {"file": out, "append": false}});
    sup.configure_json(&json!([group]).to_string()).unwrap();
    sup.start_groups(&["g"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let pid = pids(&sup.snapshot_value(), "g")[0];
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!("{} {}", e.file_name().to_string_lossy(), target.display())
        })
        .collect();
    targets.sort();
    let tree_kill = sup.status_value()["guarantees"]["tree_kill"].clone();
    assert_eq!(tree_kill, if cgroup { "cgroup" } else { "process_group" });
    sup.stop_groups(HANG, true).unwrap();
    assert_gone(pid);
    let mut lines: Vec<String> = read(&out).lines().map(str::to_string).collect();
    lines.sort();
    (lines, targets, pid)
}

/// Whether this machine gives workers cgroups of their own (root, or a delegated cgroup v2, with
/// `cgroup.kill`): the tests of what cgroups do need them (`tests/lifeline/` checks that a
/// machine that has them uses them).
fn cgroups_here() -> bool {
    let sup = cgroup_supervisor();
    sup.status_value()["guarantees"]["tree_kill"] == "cgroup"
}

/// Sets `sig`'s disposition in this process.
fn set_disposition(sig: i32, handler: libc::sighandler_t) {
    // SAFETY: a valid sigaction; the handler (when not SIG_IGN) does nothing.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        assert_eq!(libc::sigaction(sig, &action, std::ptr::null_mut()), 0);
    }
}

extern "C" fn nothing(_: libc::c_int) {}

#[test]
fn a_worker_born_in_its_cgroup_starts_as_one_spawned_without() {
    if !cgroups_here() {
        return;
    }
    // The host ignores two signals, catches one, and leaks a descriptor without close-on-exec.
    set_disposition(libc::SIGUSR2, libc::SIG_IGN);
    set_disposition(libc::SIGPIPE, libc::SIG_IGN);
    set_disposition(libc::SIGUSR1, nothing as *const () as libc::sighandler_t);
    let leaked = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
    // SAFETY: clearing close-on-exec on our own descriptor.
    unsafe { libc::fcntl(leaked, libc::F_SETFD, 0) };
    let dir = TempDir::new("born-in");
    let (plain, plain_fds, plain_pid) = describe(false, &dir);
    let (born, born_fds, pid) = describe(true, &dir);
    // SAFETY: closing the descriptor leaked above.
    unsafe { libc::close(leaked) };
    let host = std::process::id();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own.lines().find(|l| l.starts_with("0::")).unwrap();
    let expected = |pid: i64, cgroup: &str| {
        let mut lines = vec![
            "fd 0".to_string(),
            "fd 1".to_string(),
            "fd 2".to_string(),
            "fd 3".to_string(),
            "SigBlk:\t0000000000000000".to_string(),
            "SigIgn:\t0000000000000000".to_string(),
            "SigCgt:\t0000000000000000".to_string(),
            format!("pgid {pid} pid {pid}"),
            format!("ppid {host}"),
            format!("cwd {}", dir.path().display()),
            cgroup.to_string(),
        ];
        lines.sort();
        lines
    };
    assert_eq!(plain, expected(plain_pid, own), "{plain_fds:?}");
    // Born in `<own>/mpsup-<host>-<n>/g-g/w<n>`.
    let cgroup = born.iter().find(|l| l.starts_with("0::")).unwrap();
    let prefix = format!("{}/mpsup-{host}-", own.trim_end_matches('/'));
    assert!(
        cgroup.starts_with(&prefix) && cgroup.contains("/g-g/w"),
        "{born:?}"
    );
    assert_eq!(born, expected(pid, cgroup), "{born_fds:?}");
    // The same descriptors: /dev/null, the output file, stderr as the host's, the control socket.
    let kinds = |fds: &[String]| -> Vec<String> {
        fds.iter()
            .map(|f| {
                let f = f.split(":[").next().unwrap();
                f.replace("out-false", "out").replace("out-true", "out")
            })
            .collect()
    };
    assert_eq!(kinds(&plain_fds), kinds(&born_fds));
}

/// Set in the copy of this binary that runs under the seccomp filter.
const FILTERED: &str = "MPSUP_TEST_BORN_IN_FILTERED";

/// Makes `clone3` fail with `errno` in this process and its descendants, as container
/// runtimes' filters do (glibc's own thread creation falls back to `clone`).
fn refuse_clone3(errno: i32) {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const ARCH_X86_64: u32 = 0xc000_003e;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let filter = [
        op(LD_W_ABS, 0, 0, 4),
        op(JEQ_K, 0, 3, ARCH_X86_64),
        op(LD_W_ABS, 0, 0, 0),
        op(JEQ_K, 0, 1, libc::SYS_clone3 as u32),
        op(RET_K, 0, 0, RET_ERRNO | errno as u32),
        op(RET_K, 0, 0, RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: a valid filter program, installed for this process (root: no NO_NEW_PRIVS
    // needed, and none set, so that nothing else about the workers changes).
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    assert_eq!(ret, 0, "seccomp: {}", std::io::Error::last_os_error());
}

/// Where `clone3` is refused, workers still get cgroups of their own: the exec shim moves them
/// there, and the spawns succeed (the first one included, which met the refusal).
#[test]
fn where_clone3_is_refused_the_exec_shim_places_the_workers() {
    if !cfg!(target_arch = "x86_64") || !cgroups_here() {
        return;
    }
    let Some(errno) = std::env::var(FILTERED).ok().and_then(|v| v.parse().ok()) else {
        // ENOSYS, as Docker's default profile answers. (A filter answering EPERM, as some
        // others do, also stops glibc 2.34+ from making threads: no host runs under it.)
        run_alone_in_child(
            "where_clone3_is_refused_the_exec_shim_places_the_workers",
            &[(FILTERED, libc::ENOSYS.to_string())],
        );
        return;
    };
    refuse_clone3(errno);
    // SAFETY: a raw clone3 with no arguments: refused under the filter (EINVAL without it).
    let probe = unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) };
    assert_eq!((probe, nix::errno::Errno::last_raw()), (-1, errno));
    let sup = cgroup_supervisor();
    let workers = start_ready(&sup, "g", 3, POLITE);
    let host = std::process::id();
    for &pid in &workers {
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(
            cgroup.contains(&format!("/mpsup-{host}-")) && cgroup.contains("/g-g/w"),
            "worker {pid}: {cgroup}"
        );
    }
    let log = drain_all(&sup);
    assert_eq!(count(&log, "worker_spawned"), 3, "{log:#?}");
    assert_eq!(count(&log, "worker_failed"), 0, "{log:#?}");
    sup.stop_groups(HANG, true).unwrap();
    for pid in workers {
        assert_gone(pid);
    }
}

/// Every directory named `name` below `root` (at most `depth` levels down).
fn find_dirs(root: &std::path::Path, name: &str, depth: usize, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    {
        if e.file_name() == name {
            out.push(e.path());
        }
        if depth > 0 {
            find_dirs(&e.path(), name, depth - 1, out);
        }
    }
}

/// The worker cgroups (`w<n>`) under every cgroup of group `group` of this process's
/// supervisors, in the cgroup v2 tree and the v1 memory hierarchy.
fn worker_cgroups(group: &str) -> Vec<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut roots: Vec<std::path::PathBuf> = info
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let kind = right.split_whitespace().next()?;
            let point = left.split_whitespace().nth(4)?;
            (kind == "cgroup2" || point.ends_with("/memory")).then(|| point.into())
        })
        .collect();
    roots.dedup();
    let prefix = format!("mpsup-{}-", std::process::id());
    let mut found = Vec::new();
    for root in roots {
        let mut groups = Vec::new();
        find_dirs(&root, &format!("g-{group}"), 4, &mut groups);
        for g in groups.iter().filter(|g| {
            g.parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        }) {
            found.extend(
                std::fs::read_dir(g)
                    .unwrap()
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    found
}

/// A spawn that fails before its worker runs (its stdout cannot be opened) leaves none of the
/// cgroups made for it, whether the worker was to be born in its cgroup v2 or placed by the
/// exec shim (a group with a memory limit); the supervisor's own go at free as ever.
#[test]
fn a_spawn_that_fails_leaves_no_worker_cgroup() {
    if !cgroups_here() {
        return;
    }
    let dir = TempDir::new("born-in-fails");
    let stdout = json!({"file": dir.join("missing/out"), "append": false});
    let sup = cgroup_supervisor();
    sup.configure_json(
        &json!([
            {"name": "born", "argv": ["/bin/true"], "stdout": stdout},
            {"name": "shim", "argv": ["/bin/true"], "stdout": stdout, "memory_max": "64M"},
            with(sh_group("ok", 1, POLITE), json!({"readiness": "notify"})),
        ])
        .to_string(),
    )
    .unwrap();
    // A group that started: its worker's cgroup is found, so the search below looks where the
    // failed ones' would be.
    sup.start_groups(&["ok"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    assert_eq!(worker_cgroups("ok").len(), 1, "{:?}", worker_cgroups("ok"));
    for group in ["born", "shim"] {
        let err = sup.start_groups(&[group]).unwrap_err();
        assert!(err.to_string().contains("missing/out"), "{group}: {err}");
        assert_eq!(
            worker_cgroups(group),
            Vec::<std::path::PathBuf>::new(),
            "{group}"
        );
    }
    sup.stop_groups(HANG, true).unwrap();
}

/// A worker that exits on its own leaves a descendant that called `setsid` (out of reach of its
/// process group): with its cgroup, that descendant dies when the worker is reaped.
#[test]
fn what_an_exited_worker_left_in_its_cgroup_dies_at_its_reap() {
    if !cgroups_here() {
        return;
    }
    let dir = TempDir::new("born-in-left");
    let pid_file = dir.join("escaped");
    let script = format!(
        "setsid sleep 1000 & echo $! > {}; echo READY >&\"$MPSUP_CONTROL_FD\"; exec sleep 0.2",
        pid_file.display()
    );
    let sup = cgroup_supervisor();
    let workers = start_ready(&sup, "g", 1, &script);
    let escaped: i64 = read(&pid_file).trim().parse().unwrap();
    // The escaped sleeper is killed here whatever happens below.
    struct Kill(i64);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SAFETY: a signal to a process this test started.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
    let _kill = Kill(escaped);
    assert_ne!(proc_state(escaped), None);
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        l.iter()
            .any(|e| e["kind"] == "worker_stopped" || e["kind"] == "worker_failed")
    });
    assert_gone(workers[0]);
    let deadline = std::time::Instant::now() + HANG;
    while !matches!(proc_state(escaped), None | Some('Z')) {
        assert!(
            std::time::Instant::now() < deadline,
            "the setsid sleeper lives on"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    sup.force_terminate_groups(&["g"]).unwrap();
}
