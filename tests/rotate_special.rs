//! A rotating output (`{"file": PATH, "max_bytes": N, "keep": K}`) rotates only a regular file:
//! a device node or a FIFO at PATH is written to as it is, never renamed, removed or replaced.
//! The device node and the FIFO are the test's own, made in its temporary folder.

mod common;

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::json;

const MAX_BYTES: u64 = 1000;
/// 100 lines of 100 bytes: ten times `MAX_BYTES`.
const WRITTEN: u64 = 10_000;
const WRITER: &str = r#"import sys
for i in range(100):
    sys.stdout.write("%099d\n" % i)
"#;

/// Runs one worker writing `WRITTEN` bytes to a rotating output at `path`, and frees the
/// supervisor, which waits for its file writer.
fn write_through(path: &Path, keep: u32) {
    let sup = supervisor(&[json!({"name": "r", "argv": ["python3", "-c", WRITER],
        "control_channel": "off",
        "stdout": {"file": path, "max_bytes": MAX_BYTES, "keep": keep}})]);
    sup.start_groups(&["r"]).unwrap();
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "worker_failed") == 1);
    assert_eq!(of_kind(&log, "worker_failed")[0]["exit_code"], 0);
    drop(sup);
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_device_node_is_written_to_and_never_replaced() {
    let dir = TempDir::new("rotate-dev");
    let node = dir.join("null");
    let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    // SAFETY: mknod on a NUL-terminated path inside the test's own folder: a node like /dev/null.
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(made, 0, "mknod: {}", std::io::Error::last_os_error());
    // keep 0 is the case that removed PATH and created a regular file in its place.
    write_through(&node, 0);
    let meta = std::fs::symlink_metadata(&node).unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "{} is now {:?}, {} bytes",
        node.display(),
        meta.file_type(),
        meta.len()
    );
    assert_eq!(meta.rdev(), libc::makedev(1, 3));
    assert_eq!(names(&dir), ["null"]);
}

#[test]
fn a_fifo_is_written_to_and_never_renamed() {
    let dir = TempDir::new("rotate-fifo");
    let fifo = dir.join("out.fifo");
    mkfifo(&fifo);
    // The reader drains the FIFO until the supervisor's writer closes it (at free).
    let read = Arc::new(AtomicU64::new(0));
    let reader = {
        let (fifo, read) = (fifo.clone(), Arc::clone(&read));
        std::thread::spawn(move || {
            let mut file = std::fs::File::open(fifo).unwrap();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = file.read(&mut buf) {
                read.fetch_add(n as u64, Ordering::Relaxed);
            }
        })
    };
    write_through(&fifo, 1);
    // A writer that renamed the FIFO away has closed it too: the reader ends either way.
    reader.join().unwrap();
    let meta = std::fs::symlink_metadata(&fifo).unwrap();
    assert!(meta.file_type().is_fifo(), "now {:?}", meta.file_type());
    assert_eq!(names(&dir), ["out.fifo"]);
    assert_eq!(read.load(Ordering::Relaxed), WRITTEN);
}
