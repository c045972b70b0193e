//! A C host keeps SIGPIPE at its default action; Rust test binaries and Python ignore it, so
//! only a separate C host shows a control-socket write that raises it. 200 workers that exit at
//! once, each sent a BOOTSTRAP line, must not kill the host with SIGPIPE (status 141).

mod common;
mod hosts;

use std::process::{Command, Stdio};

use common::*;
use hosts::*;

#[test]
fn short_lived_workers_with_a_bootstrap_line_never_raise_sigpipe_in_a_c_host() {
    let host = build_c(
        "sigpipe_host",
        &["tests/programs/sigpipe_host.c"],
        true,
        &[],
    );
    let mut child = Guard::new(Command::new(&host).stdout(Stdio::piped()).spawn().unwrap());
    let mut lines = Lines::new(child.child().stdout.take().unwrap());
    let status = child.wait_within(HANG).expect("the host ends");
    let out = lines.rest();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        None,
        "the host was killed by a signal: {status:?}"
    );
    assert!(status.success() && out == "ok\n", "{status:?}: {out}");
}
