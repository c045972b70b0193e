//! A jsonl log exporter whose path is a FIFO: without a reader, configuring fails at once with
//! an error naming the path (ENXIO) instead of blocking forever in open(); with a reader, records
//! arrive as with a file.

mod common;

mod hosts;

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::os::fd::FromRawFd;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use hosts::*;
use mpsupervisor::{Error, Supervisor};
use serde_json::json;

fn settings(path: &std::path::Path) -> String {
    json!({"exporters": [{"kind": "jsonl", "settings": {"path": path}}]}).to_string()
}

#[test]
fn a_fifo_without_a_reader_fails_at_once_instead_of_blocking() {
    let dir = Scratch::new("log-fifo-noreader");
    let fifo = dir.join("log.fifo");
    mkfifo(&fifo);
    let (tx, rx) = mpsc::channel();
    let text = settings(&fifo);
    let caller = std::thread::spawn(move || {
        let sup = Supervisor::new().unwrap();
        let _ = tx.send(sup.configure_logging_json(&text));
    });
    let got = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(got) => got,
        Err(_) => {
            // Stuck in open(): a reader lets it through, so that the thread ends.
            let c = CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: open and close on our own FIFO.
            unsafe { libc::close(libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK)) };
            caller.join().unwrap();
            panic!("configure_lifecycle_logging blocked on a FIFO without a reader");
        }
    };
    caller.join().unwrap();
    match got {
        Err(Error::Os { context, source }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ENXIO));
            assert!(context.contains(fifo.to_str().unwrap()), "{context}");
        }
        other => panic!("expected an OS error, got {other:?}"),
    }
}

#[test]
fn a_fifo_with_a_reader_gets_the_records() {
    let dir = Scratch::new("log-fifo-reader");
    let fifo = dir.join("log.fifo");
    let reader = fifo_with_idle_reader(&fifo);
    // SAFETY: the descriptor is ours, owned by the File from now on.
    let mut lines = BufReader::new(unsafe { std::fs::File::from_raw_fd(reader) });
    let sup = supervisor(&[sh_group("g", 1, POLITE)]);
    sup.configure_logging_json(&settings(&fifo)).unwrap();
    sup.start_groups(&["g"]).unwrap();
    // The reader was opened non-blocking: wait for the first record with poll.
    let mut p = libc::pollfd {
        fd: reader,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut p, 1, HANG.as_millis() as i32) }, 1);
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["message"], "bootstrap.worker_spawned", "{line}");
    sup.force_terminate_groups(&["g"]).unwrap();
}
