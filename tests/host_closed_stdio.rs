//! A C host that closes its descriptors 0, 1 and 2, as daemons do, before `mpsup_supervisor_new`
//! or between it and the start: the start succeeds, the library never holds 0, 1 or 2 (neither
//! in the host nor, through it, in a worker), and the worker gets /dev/null there. With the
//! spawner threads in a table of their own and in the fallback that shares the host's.

mod common;
mod hosts;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use hosts::*;

fn run(when: &str, shared_table: bool) {
    let host = build_c(
        "closed_stdio_host",
        &["tests/programs/closed_stdio_host.c"],
        true,
        &[],
    );
    let dir = TempDir::new("closed-stdio");
    let mut cmd = Command::new(&host);
    cmd.arg(when)
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if shared_table {
        cmd.env("MPSUP_SHARED_FD_TABLE", "1");
    }
    let mut child = Guard::new(cmd.spawn().unwrap());
    let status = child.wait_within(Duration::from_secs(60));
    let case = format!("closed {when} new, shared table: {shared_table}");
    let said = std::fs::read_to_string(dir.join("host")).unwrap_or_default();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{case}: the host said:\n{said}"
    );
    assert_eq!(
        read(&dir.join("worker")),
        "fd 0 /dev/null\nfd 1 /dev/null\nfd 2 /dev/null\n",
        "{case}"
    );
    // The host's own 0, 1 and 2 stay closed: the library took none of them.
    assert_eq!(
        said, "started\nhost fd 0 closed\nhost fd 1 closed\nhost fd 2 closed\n",
        "{case}"
    );
}

#[test]
fn closed_before_new_the_worker_gets_dev_null_and_no_library_descriptor() {
    run("before", false);
    run("before", true);
}

#[test]
fn closed_after_new_the_start_succeeds_and_the_worker_gets_dev_null() {
    run("after", false);
    run("after", true);
}
