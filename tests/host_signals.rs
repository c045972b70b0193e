//! A C host that blocks SIGTERM in its own thread after creating its supervisor, and takes it with
//! sigwaitinfo, as event loops do: a process-directed SIGTERM must always reach it, never a
//! library thread (where its default action would kill the host). Every library thread blocks
//! every signal.

mod common;
mod hosts;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use hosts::*;

const CYCLES: usize = 20;

#[test]
fn sigterm_sent_to_the_host_always_reaches_its_sigwaitinfo() {
    let host = build_c("signal_host", &["tests/programs/signal_host.c"], true, &[]);
    let dir = Scratch::new("host-signals");
    let log = dir.join("events.jsonl");
    let mut child = Guard::new(
        Command::new(&host)
            .arg(CYCLES.to_string())
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.pid();
    let mut lines = Lines::new(child.child().stdout.take().unwrap());
    let mut stdin = child.child().stdin.take().unwrap();
    for i in 0..CYCLES {
        let line = lines.next_within(HANG);
        if line.as_deref() != Some(&format!("cycle {i}")) {
            let status = child.wait_within(HANG);
            panic!("cycle {i}: the host said {line:?}, then ended with {status:?}");
        }
        // Workers run and logging is on: the library's threads (the host has none of its own:
        // at least the monitor and the log writer, which may not have named itself yet) all
        // block every signal.
        let threads = other_threads(pid);
        assert!(threads.len() >= 2, "{threads:?}");
        for (tid, name) in &threads {
            let blocked =
                status_hex(&format!("/proc/{pid}/task/{tid}/status"), "SigBlk").expect("SigBlk");
            assert_eq!(
                blocked & all_blockable(),
                all_blockable(),
                "thread {tid} ({name}) leaves signals unblocked: SigBlk {blocked:016x}"
            );
        }
        // The host's own thread blocks SIGTERM only: the library left its mask alone.
        assert_eq!(
            status_hex(&format!("/proc/{pid}/task/{pid}/status"), "SigBlk"),
            Some(bit(libc::SIGTERM))
        );
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        // The kill has been delivered (or has killed the host) once it returned.
        let _ = stdin.write_all(b"sent\n");
        let line = lines.next_within(HANG);
        let me = std::process::id();
        if line.as_deref() != Some(&format!("got {i} from {me}")) {
            let status = child.wait_within(HANG);
            panic!("cycle {i}: the host said {line:?}, then ended with {status:?}");
        }
    }
    drop(stdin);
    let status = child.wait_within(HANG).expect("the host ends");
    assert!(status.success(), "{status:?}: {}", lines.rest());
}
