//! Rotating files for captured output: `{"file": PATH, "max_bytes": N, "keep": K}`. One thread
//! writes them, fed through a queue bounded in bytes; what does not fit is dropped and counted,
//! so a worker that writes faster than the disk never slows the monitor. Disk use stays within
//! `(K + 1) × N`: the file is rotated before a write would pass `max_bytes`.

use crate::threads::Drainer;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

/// The most bytes that may wait for the file writer; past that, output is dropped and counted.
const FILE_QUEUE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub struct RotateSpec {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub keep: u32,
}

/// The thread that writes rotating files, fed through a bounded queue.
pub(crate) struct FileWriter {
    tx: Option<Sender<(Arc<RotateSpec>, Vec<u8>)>>,
    pub(crate) dropped: Arc<AtomicU64>,
    /// Bytes sent and not yet written.
    queued: Arc<AtomicU64>,
    thread: Option<Drainer>,
}

impl FileWriter {
    pub(crate) fn start() -> FileWriter {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicU64::new(0));
        let written = Arc::clone(&queued);
        let thread = Drainer::spawn("mpsup-output", move || write_files(rx, &written)).ok();
        FileWriter {
            // Without a thread nothing is queued: every chunk counts as dropped.
            tx: thread.as_ref().map(|_| tx),
            dropped: Arc::new(AtomicU64::new(0)),
            queued,
            thread,
        }
    }

    pub(crate) fn write(&self, spec: &Arc<RotateSpec>, data: &[u8]) {
        let len = data.len() as u64;
        let room = self.queued.load(Ordering::Relaxed) + len <= FILE_QUEUE_BYTES;
        let sent = room
            && self.tx.as_ref().is_some_and(|tx| {
                self.queued.fetch_add(len, Ordering::Relaxed);
                tx.send((Arc::clone(spec), data.to_vec())).is_ok()
            });
        if !sent {
            self.dropped.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    }
}

/// How long freeing a supervisor waits for its file writer to write what is queued.
const FILE_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for FileWriter {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = &mut self.thread {
            thread.join_within(FILE_DRAIN_TIMEOUT);
        }
    }
}

struct Rotating {
    file: Option<File>,
    size: u64,
    /// Only a regular file rotates: a device, FIFO or socket at `PATH` is written to as it is,
    /// never renamed, removed or replaced (that would destroy what the path points at).
    regular: bool,
}

impl Rotating {
    fn open(path: &std::path::Path) -> Rotating {
        let file = open_append(path);
        let meta = file.as_ref().and_then(|f| f.metadata().ok());
        Rotating {
            file,
            size: meta.as_ref().map_or(0, |m| m.len()),
            // Nothing opened: rotating would create a regular file, as before.
            regular: meta.is_none_or(|m| m.file_type().is_file()),
        }
    }
}

fn write_files(rx: Receiver<(Arc<RotateSpec>, Vec<u8>)>, queued: &AtomicU64) {
    let mut files: HashMap<PathBuf, Rotating> = HashMap::new();
    for (spec, data) in rx {
        let f = files
            .entry(spec.path.clone())
            .or_insert_with(|| Rotating::open(&spec.path));
        write_rotating(&spec, f, &data);
        queued.fetch_sub(data.len() as u64, Ordering::Relaxed);
    }
}

fn open_append(path: &std::path::Path) -> Option<File> {
    // std opens close-on-exec.
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .ok()?;
    crate::os::above_stdio(file.into()).ok().map(File::from)
}

/// Writes `data`, rotating whenever the file would grow past `max_bytes`; lines are kept whole
/// when they fit in a file.
fn write_rotating(spec: &RotateSpec, f: &mut Rotating, mut data: &[u8]) {
    if !f.regular {
        if let Some(file) = &mut f.file {
            let _ = file.write_all(data);
        }
        return;
    }
    while !data.is_empty() {
        let room = spec.max_bytes.saturating_sub(f.size);
        let mut n = (room.min(data.len() as u64)) as usize;
        if n < data.len() {
            // Cut after the last full line that fits; with none, rotate first when the file
            // holds something, else cut the line.
            match data[..n].iter().rposition(|&b| b == b'\n') {
                Some(i) => n = i + 1,
                None if f.size > 0 => n = 0,
                None => {}
            }
        }
        if n == 0 {
            rotate(spec, f);
            continue;
        }
        if let Some(file) = &mut f.file {
            let _ = file.write_all(&data[..n]);
        }
        f.size += n as u64;
        data = &data[n..];
    }
}

fn rotate(spec: &RotateSpec, f: &mut Rotating) {
    f.file = None;
    // Something else put at PATH since it was opened is not ours to rename either.
    if std::fs::metadata(&spec.path).is_ok_and(|m| !m.is_file()) {
        *f = Rotating::open(&spec.path);
        return;
    }
    let numbered = |i: u32| {
        let mut p = spec.path.clone().into_os_string();
        p.push(format!(".{i}"));
        PathBuf::from(p)
    };
    if spec.keep > 0 {
        for i in (1..spec.keep).rev() {
            let _ = std::fs::rename(numbered(i), numbered(i + 1));
        }
        let _ = std::fs::rename(&spec.path, numbered(1));
    } else {
        let _ = std::fs::remove_file(&spec.path);
    }
    *f = Rotating::open(&spec.path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_disk_use_bounded() {
        let dir = std::env::temp_dir().join(format!("mpsup-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let spec = RotateSpec {
            path: dir.join("out.log"),
            max_bytes: 1000,
            keep: 2,
        };
        let mut f = Rotating::open(&spec.path);
        for i in 0..500 {
            write_rotating(&spec, &mut f, format!("line {i:05}\n").as_bytes());
        }
        drop(f);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let sizes: Vec<u64> = names
            .iter()
            .map(|n| std::fs::metadata(dir.join(n)).unwrap().len())
            .collect();
        let last = std::fs::read_to_string(&spec.path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names, ["out.log", "out.log.1", "out.log.2"]);
        assert!(sizes.iter().all(|&s| s <= 1000), "{sizes:?}");
        assert!(last.ends_with("line 00499\n"));
        assert!(last.lines().all(|l| l.len() == 10));
    }
}
