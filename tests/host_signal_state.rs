//! A full lifecycle leaves the host's own signal state as it was: the calling thread's mask, the
//! process's ignored and caught signals (/proc SigIgn, SigCgt), and every disposition. The
//! library installs no handler (not even for SIGCHLD, with pidfds or without) and restores the
//! mask of a thread it spawns from. One binary of its own: dispositions are process-wide.

mod common;
mod hosts;

use common::*;
use hosts::*;
use mpsupervisor::{Options, Supervisor};
use serde_json::json;

#[derive(Debug, PartialEq, Eq)]
struct SignalState {
    thread_blocked: u64,
    ignored: u64,
    caught: u64,
    /// (signal, handler, flags, mask as /proc-style bits of the first 64 signals)
    actions: Vec<(i32, usize, i32, u64)>,
}

fn mask_bits(set: &libc::sigset_t) -> u64 {
    (1..=64)
        // SAFETY: reading an initialised set.
        .filter(|&s| unsafe { libc::sigismember(set, s) } == 1)
        .fold(0, |m, s| m | bit(s))
}

fn signal_state() -> SignalState {
    let mut actions = Vec::new();
    for sig in 1..=64 {
        // SAFETY: querying only; glibc refuses its internal signals, which are skipped.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == 0 {
            actions.push((sig, old.sa_sigaction, old.sa_flags, mask_bits(&old.sa_mask)));
        }
    }
    SignalState {
        thread_blocked: status_hex("/proc/thread-self/status", "SigBlk").unwrap(),
        ignored: status_hex("/proc/self/status", "SigIgn").unwrap(),
        caught: status_hex("/proc/self/status", "SigCgt").unwrap(),
        actions,
    }
}

fn lifecycle(sup: Supervisor, dir: &Scratch) {
    let settings =
        json!({"exporters": [{"kind": "jsonl", "settings": {"path": dir.join("log.jsonl")}}]});
    sup.configure_logging_json(&settings.to_string()).unwrap();
    let groups = json!([
        with(
            sh_group("g", 3, POLITE),
            json!({"readiness": "notify", "restart": "on-failure", "restart_delay_ms": 1,
                   "bootstrap": {"k": [1, 2]}, "heartbeat_timeout_ms": 600000})
        ),
        with(
            sh_group("plain", 1, "exec sleep 1000000"),
            json!({"control_channel": "off", "warmup_ms": 1})
        ),
        with(sh_group("quits", 1, "exit 3"), json!({"warmup_ms": 1}))
    ]);
    sup.configure_json(&groups.to_string()).unwrap();
    sup.start_groups(&["g", "plain", "quits"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    let pid = pids(&sup.snapshot_value(), "g")[0];
    // SAFETY: signalling our own worker; it is restarted.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    wait_events(&sup, &mut log, |l| count(l, "worker_restarting") == 1);
    sup.start_groups(&["g"]).unwrap();
    assert!(
        !sup.wait_ready(secs(60.0)).unwrap(),
        "a worker of 'quits' failed"
    );
    sup.stop_groups(secs(30.0), true).unwrap();
    sup.start_groups(&["plain"]).unwrap();
    sup.force_terminate_groups(&["plain"]).unwrap();
    sup.configure_json("[]").unwrap();
    drop(sup);
}

#[test]
fn a_full_lifecycle_leaves_the_hosts_signal_state_alone() {
    // A host state worth keeping: some signals blocked in this thread, one ignored.
    // SAFETY: this binary's only test changes its own mask and one disposition.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGUSR2, libc::SIG_IGN);
    }
    let before = signal_state();
    assert_eq!(before.thread_blocked & bit(libc::SIGCHLD), 0);
    let dir = Scratch::new("signal-state");
    lifecycle(Supervisor::new().unwrap(), &dir);
    assert_eq!(signal_state(), before);
    lifecycle(
        Supervisor::with_options(Options {
            use_pidfd: false,
            ..Options::default()
        })
        .unwrap(),
        &dir,
    );
    assert_eq!(signal_state(), before);
    assert_eq!(
        signal_state().caught & bit(libc::SIGCHLD),
        0,
        "a SIGCHLD handler"
    );
}
