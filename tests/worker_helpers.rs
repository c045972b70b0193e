//! The worker-side helpers, with this test process as the worker: several threads may wait on
//! the channel at once, each for its own line, and none holds up another. One binary of its
//! own, because the helpers read the process-wide MPSUP_CONTROL_FD.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use mpsupervisor::worker_side::{self, StopRequest};

#[test]
fn threads_wait_for_stop_start_and_bootstrap_at_once() {
    let (mut supervisor, worker) = UnixStream::pair().unwrap();
    std::env::set_var("MPSUP_CONTROL_FD", worker.as_raw_fd().to_string());

    // One thread waits for STOP without a limit, reading the channel.
    let stopper = std::thread::spawn(|| worker_side::wait_stop(-1.0).unwrap());
    // Meanwhile another thread's wait for START and BOOTSTRAP must be served.
    supervisor
        .write_all(b"BOOTSTRAP {\"k\":\"v\"}\nSTART\n")
        .unwrap();
    assert!(worker_side::wait_start(60.0).unwrap());
    assert_eq!(
        worker_side::bootstrap(60.0).unwrap().as_deref(),
        Some("{\"k\":\"v\"}")
    );
    // A wait with nothing to come times out instead of waiting behind the stopper.
    assert_eq!(worker_side::wait_stop(0.05).unwrap(), StopRequest::None);
    assert!(!stopper.is_finished());

    supervisor.write_all(b"NOISE\nSTOP DRAIN\n").unwrap();
    assert_eq!(stopper.join().unwrap(), StopRequest::Drain);

    worker_side::heartbeat().unwrap();
    worker_side::notify_ready().unwrap();
    let mut got = [0u8; 16];
    let n = std::io::Read::read(&mut supervisor, &mut got).unwrap();
    assert_eq!(&got[..n], b"HEARTBEAT\nREADY\n"[..n].as_ref());

    drop(supervisor);
    assert_eq!(
        worker_side::wait_stop(60.0).unwrap(),
        StopRequest::SupervisorGone
    );
}
