//! Captured output: a pipe per captured stream of a worker, read by the monitor without ever
//! blocking and without the engine's lock (see `Captures`). Lines (cut at 4,096 bytes) become `worker.output` log records, the last few of each
//! stream are kept per worker, and a rotating file gets the bytes through its own writer thread.
//!
//! Bounded everywhere: one read of at most `READ_CHUNK` bytes per descriptor per wakeup
//! (level-triggered epoll brings the monitor back for the rest), a bounded tail, a bounded queue
//! to the file writer whose overflow is dropped and counted. A worker's pipe is drained briefly
//! and closed when the worker is reaped, so a grandchild that keeps it open delays nothing.
//!
//! A handover carries the pipes by number with what was read of them (`export`, `resume`),
//! after the file writer has written everything (`take_files`).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{GroupSpec, Output};
use crate::core::worker::Key;
use crate::lines::{Overlong, Splitter, MAX_LINE};
use crate::logging::Logger;
use crate::os::{self, ReadResult};
use crate::runtime::rotate::{FileWriter, RotateSpec};
use crate::runtime::tokens::{Source, Tokens};

/// The most bytes read from one pipe per wakeup.
const READ_CHUNK: usize = 64 * 1024;
/// The most bytes read from a pipe when its worker is reaped.
const DRAIN_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Where the bytes of a captured stream go besides its tail.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Each line is a `worker.output` log record.
    Log,
    /// Written to a rotating file.
    File(Arc<RotateSpec>),
}

/// The read ends of a process's captured streams, made by the spawner with its pipes.
#[derive(Debug)]
pub struct Captured {
    pub pipes: Vec<(Stream, OwnedFd, Sink)>,
    pub worker_id: Arc<str>,
    pub group: Arc<str>,
    pub tail_lines: usize,
}

/// The pipes of `spec`'s captured streams: what the supervisor keeps, and the write ends for
/// the child's stdout and stderr (dropped by the caller once the child is spawned).
pub fn pipes(
    spec: &GroupSpec,
    worker_id: &str,
) -> io::Result<(Option<Captured>, [Option<OwnedFd>; 2])> {
    let mut writes = [None, None];
    let mut kept = Vec::new();
    for (i, (stream, output)) in [
        (Stream::Stdout, &spec.stdout),
        (Stream::Stderr, &spec.stderr),
    ]
    .into_iter()
    .enumerate()
    {
        let sink = match output {
            Output::Capture => Sink::Log,
            Output::Rotate {
                path,
                max_bytes,
                keep,
            } => Sink::File(Arc::new(RotateSpec {
                path: PathBuf::from(path),
                max_bytes: *max_bytes,
                keep: *keep,
            })),
            _ => continue,
        };
        let (read, write) = os::notify::output_pipe()?;
        kept.push((stream, read, sink));
        writes[i] = Some(write);
    }
    if kept.is_empty() {
        return Ok((None, writes));
    }
    Ok((
        Some(Captured {
            pipes: kept,
            worker_id: worker_id.into(),
            group: spec.name.as_str().into(),
            tail_lines: spec.output_tail_lines as usize,
        }),
        writes,
    ))
}

/// What one read of a pipe brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    Data,
    Nothing,
    Closed,
}

struct Pipe {
    stream: Stream,
    fd: Option<(OwnedFd, u64)>,
    cutter: Splitter,
    tail: VecDeque<String>,
    sink: Sink,
}

struct Watched {
    pid: i32,
    worker_id: Arc<str>,
    group: Arc<str>,
    tail_lines: usize,
    pipes: Vec<Pipe>,
}

/// The captured streams of every worker, and the file writer. Behind a lock of its own, taken
/// after the engine's when both are held, so that reading output never holds up the host's calls.
pub struct Captures {
    /// Where each pipe registers (`Source::Output`): the monitor reads them under the lock of
    /// `Captures` alone.
    tokens: Arc<Tokens>,
    watched: HashMap<Key, Watched>,
    /// The stderr tail of each worker reaped since the engine last asked.
    ended: HashMap<Key, Option<Vec<String>>>,
    files: Option<FileWriter>,
    /// Where `worker.output` records go (a copy of the engine's).
    pub logger: Option<Arc<Logger>>,
    /// Lines that did not reach the log writer (its queue was full).
    pub lines_dropped: u64,
    /// Bytes dropped by file writers that ended (at a handover), counted on.
    file_bytes_dropped_before: u64,
    buf: Vec<u8>,
}

/// A worker's captured streams as they cross an `exec` of the host (`handover`): the pipes by
/// number, with what was read of them and not yet a whole line, and the tails.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputState {
    pub key: Key,
    pub pid: i32,
    pub worker_id: String,
    pub group: String,
    pub tail_lines: usize,
    pub pipes: Vec<PipeState>,
}

/// One captured stream of `OutputState`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipeState {
    pub stream: Stream,
    /// None once the pipe ended.
    pub fd: Option<RawFd>,
    /// The bytes of an unfinished line, and whether the rest of a cut line is being dropped.
    pub partial: Vec<u8>,
    pub skipping: bool,
    pub tail: Vec<String>,
    /// The rotating file (path, max_bytes, keep); None: log records.
    pub file: Option<(PathBuf, u64, u32)>,
}

/// Every worker's captured streams, and the counters `status_json` shows (`handover`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CapturesState {
    pub watched: Vec<OutputState>,
    pub lines_dropped: u64,
    pub file_bytes_dropped: u64,
}

impl Captures {
    pub fn new(tokens: Arc<Tokens>) -> Captures {
        Captures {
            tokens,
            watched: HashMap::new(),
            ended: HashMap::new(),
            files: None,
            logger: None,
            lines_dropped: 0,
            file_bytes_dropped_before: 0,
            buf: Vec::new(),
        }
    }

    /// Bytes of rotating-file output dropped because the file writer fell behind.
    pub fn file_bytes_dropped(&self) -> u64 {
        self.file_bytes_dropped_before
            + self
                .files
                .as_ref()
                .map_or(0, |f| f.dropped.load(Ordering::Relaxed))
    }

    /// The stderr tail of worker `key`, reaped just now (None when stderr was not captured).
    pub fn take_ended(&mut self, key: Key) -> Option<Vec<String>> {
        self.ended.remove(&key).flatten()
    }

    /// Ends the rotating-file writer, which first writes every byte queued to it (bounded, as
    /// at free): before a handover, so that what was read of the pipes is in the files when the
    /// next image opens them again (and goes on at their size). It is started again by the next
    /// write. Returned to be dropped outside the lock, which waits for the writer.
    pub(crate) fn take_files(&mut self) -> Option<FileWriter> {
        let files = self.files.take()?;
        self.file_bytes_dropped_before += files.dropped.load(Ordering::Relaxed);
        Some(files)
    }

    /// Every worker's captured streams by number, for the next image of the host (with the
    /// monitor stopped: nothing is read meanwhile, what the workers write waits in the pipes).
    pub(crate) fn export(&self) -> CapturesState {
        let watched = self.watched.iter().map(|(&key, w)| OutputState {
            key,
            pid: w.pid,
            worker_id: w.worker_id.to_string(),
            group: w.group.to_string(),
            tail_lines: w.tail_lines,
            pipes: w.pipes.iter().map(pipe_state).collect(),
        });
        CapturesState {
            watched: watched.collect(),
            lines_dropped: self.lines_dropped,
            file_bytes_dropped: self.file_bytes_dropped(),
        }
    }

    /// Takes over the captured streams the previous image of the host left open (`export`);
    /// `take` turns each number into the descriptor it names. The pipes are watched again.
    pub(crate) fn resume(
        &mut self,
        state: CapturesState,
        take: impl Fn(RawFd) -> io::Result<OwnedFd>,
    ) -> io::Result<()> {
        self.lines_dropped = state.lines_dropped;
        self.file_bytes_dropped_before = state.file_bytes_dropped;
        for w in state.watched {
            let mut fds = Vec::new();
            let mut pipes = Vec::new();
            for p in w.pipes {
                let sink = match p.file {
                    Some((path, max_bytes, keep)) => Sink::File(Arc::new(RotateSpec {
                        path,
                        max_bytes,
                        keep,
                    })),
                    None => Sink::Log,
                };
                fds.push(p.fd.map(&take).transpose()?);
                pipes.push(Pipe {
                    stream: p.stream,
                    fd: None,
                    cutter: Splitter::resume(MAX_LINE, Overlong::Cut, p.partial, p.skipping),
                    tail: p.tail.into(),
                    sink,
                });
            }
            for (i, fd) in fds.into_iter().enumerate() {
                let fd = fd.and_then(|fd| {
                    let token = self.tokens.watch(fd.as_fd(), Source::Output(w.key, i));
                    token.ok().map(|t| (fd, t))
                });
                pipes[i].fd = fd;
            }
            let watched = Watched {
                pid: w.pid,
                worker_id: w.worker_id.into(),
                group: w.group.into(),
                tail_lines: w.tail_lines,
                pipes,
            };
            self.watched.insert(w.key, watched);
        }
        Ok(())
    }

    /// Watches the captured streams of worker `key` (process `pid`). A pipe the epoll set
    /// refuses is closed: the worker then gets EPIPE, which is what a closed stream means.
    pub(crate) fn watch(&mut self, key: Key, pid: i32, captured: Captured) {
        let mut pipes = Vec::with_capacity(captured.pipes.len());
        for (i, (stream, fd, sink)) in captured.pipes.into_iter().enumerate() {
            let fd = match self.tokens.watch(fd.as_fd(), Source::Output(key, i)) {
                Ok(token) => Some((fd, token)),
                Err(_) => None,
            };
            pipes.push(Pipe {
                stream,
                fd,
                cutter: Splitter::new(MAX_LINE, Overlong::Cut),
                tail: VecDeque::new(),
                sink,
            });
        }
        self.watched.insert(
            key,
            Watched {
                pid,
                worker_id: captured.worker_id,
                group: captured.group,
                tail_lines: captured.tail_lines,
                pipes,
            },
        );
    }

    /// Reads what pipe `i` of worker `key` holds now, at most `READ_CHUNK` bytes. A pipe that is
    /// gone (an epoll batch read before its worker was reaped) is left alone.
    pub(crate) fn read(&mut self, key: Key, i: usize) {
        let open = self
            .watched
            .get(&key)
            .and_then(|w| w.pipes.get(i))
            .is_some_and(|p| p.fd.is_some());
        if open && self.read_pipe(key, i) == Got::Closed {
            self.close_pipe(key, i);
        }
    }

    /// One read of at most `READ_CHUNK` bytes from pipe `i` of worker `key`.
    fn read_pipe(&mut self, key: Key, i: usize) -> Got {
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(READ_CHUNK, 0);
        let Some(w) = self.watched.get_mut(&key) else {
            self.buf = buf;
            return Got::Closed;
        };
        let pipe = &mut w.pipes[i];
        let Some((fd, _)) = &pipe.fd else {
            self.buf = buf;
            return Got::Closed;
        };
        let got = match os::read_some(fd, &mut buf) {
            ReadResult::Data(n) => {
                let data = &buf[..n];
                if let Sink::File(spec) = &pipe.sink {
                    let writer = self.files.get_or_insert_with(FileWriter::start);
                    writer.write(spec, data);
                }
                let logger = match pipe.sink {
                    Sink::Log => self.logger.as_deref(),
                    Sink::File(_) => None,
                };
                let (worker_id, group, pid, tail_lines) =
                    (&w.worker_id, &w.group, w.pid, w.tail_lines);
                let (stream, tail) = (pipe.stream, &mut pipe.tail);
                let dropped = &mut self.lines_dropped;
                // Without records to make, only the last lines matter (for the tail): skip to
                // the start of the last `tail_lines` complete ones and what follows them.
                let data = match logger {
                    Some(_) => data,
                    None => {
                        let start = data
                            .iter()
                            .enumerate()
                            .rev()
                            .filter(|(_, &b)| b == b'\n')
                            .nth(tail_lines)
                            .map_or(0, |(i, _)| i + 1);
                        if start > 0 {
                            pipe.cutter = Splitter::new(MAX_LINE, Overlong::Cut);
                        }
                        &data[start..]
                    }
                };
                // Cutting never fails.
                let _ = pipe.cutter.feed(data, &mut |line| {
                    take_line(line, tail, tail_lines, |text| {
                        if let Some(logger) = logger {
                            if !logger.output(group, worker_id, pid, stream.as_str(), text) {
                                *dropped += 1;
                            }
                        }
                    })
                });
                Got::Data
            }
            ReadResult::WouldBlock => Got::Nothing,
            ReadResult::Closed => Got::Closed,
        };
        self.buf = buf;
        got
    }

    fn close_pipe(&mut self, key: Key, i: usize) {
        let Some(w) = self.watched.get_mut(&key) else {
            return;
        };
        let pipe = &mut w.pipes[i];
        if let Some((fd, token)) = pipe.fd.take() {
            self.tokens.unwatch(fd.as_fd(), token);
        }
        let (stream, tail, tail_lines) = (pipe.stream, &mut pipe.tail, w.tail_lines);
        let logger = match pipe.sink {
            Sink::Log => self.logger.as_deref(),
            Sink::File(_) => None,
        };
        let (worker_id, group, pid) = (&w.worker_id, &w.group, w.pid);
        pipe.cutter.finish(&mut |line| {
            take_line(line, tail, tail_lines, |text| {
                if let Some(logger) = logger {
                    logger.output(group, worker_id, pid, stream.as_str(), text);
                }
            })
        });
    }

    /// Worker `key` was reaped: reads what its pipes still hold (bounded, never waiting for a
    /// grandchild that keeps them open), closes them and keeps its stderr tail for the engine.
    pub(crate) fn release(&mut self, key: Key) {
        let Some(n) = self.watched.get(&key).map(|w| w.pipes.len()) else {
            return;
        };
        for i in 0..n {
            for _ in 0..DRAIN_LIMIT / READ_CHUNK {
                if self.read_pipe(key, i) != Got::Data {
                    break;
                }
            }
            self.close_pipe(key, i);
        }
        let w = self.watched.remove(&key).expect("checked");
        let stderr = w
            .pipes
            .into_iter()
            .find(|p| p.stream == Stream::Stderr)
            .map(|p| p.tail.into_iter().collect());
        self.ended.insert(key, stderr);
    }
}

fn pipe_state(p: &Pipe) -> PipeState {
    let (partial, skipping) = p.cutter.pending();
    PipeState {
        stream: p.stream,
        fd: p.fd.as_ref().map(|(fd, _)| fd.as_raw_fd()),
        partial: partial.to_vec(),
        skipping,
        tail: p.tail.iter().cloned().collect(),
        file: match &p.sink {
            Sink::File(spec) => Some((spec.path.clone(), spec.max_bytes, spec.keep)),
            Sink::Log => None,
        },
    }
}

/// A line of a stream: to `log`, and into the tail (bounded).
fn take_line(line: &[u8], tail: &mut VecDeque<String>, tail_lines: usize, log: impl FnOnce(&str)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    log(&text);
    if tail_lines > 0 {
        if tail.len() >= tail_lines {
            tail.pop_front();
        }
        tail.push_back(text.into_owned());
    }
}
