//! Lifecycle logging: every event also becomes one JSON log record, written to each exporter.
//!
//! Writing must never block the supervisor, so `Logger::log` only formats the record and hands it
//! to one writer thread through a bounded queue; when the queue is full the record is dropped and
//! counted, and the writer reports the count as a `bootstrap.log_records_dropped` record.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::events::Event;
use crate::threads::Drainer;

mod console;
mod record;
mod settings;
#[cfg(test)]
mod tests;

pub(crate) use record::OutputLine;
use record::{dropped_record, fields_of, output_record, Record};
#[cfg(test)]
use record::{level_of, record_for};
pub use settings::{parse_settings, Exporter, Level, LifecycleEvents, LogSettings};

/// How many records may wait for the writer before new ones are dropped.
const QUEUE_CAPACITY: usize = 4096;

/// What waits for the writer thread: records are formatted there, off the monitor.
enum Item {
    Event(Box<Event>),
    Output(OutputLine),
}

/// An open exporter, owned by the writer thread.
enum Sink {
    Stdout,
    Stderr,
    /// The console exporter, on stdout or stderr.
    Console {
        stderr: bool,
        format: console::Console,
    },
    /// A jsonl file (or, in tests, any writer); flushed whenever the queue runs empty.
    Writer(BufWriter<Box<dyn Write + Send>>),
}

impl Sink {
    /// Writes one line (ending in `\n`). Errors are ignored: there is nowhere to report them, and
    /// one broken exporter must not stop the others.
    fn write_line(&mut self, line: &[u8]) {
        let _ = match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(line).and_then(|()| out.flush())
            }
            Sink::Stderr | Sink::Console { stderr: true, .. } => {
                let mut out = io::stderr().lock();
                out.write_all(line).and_then(|()| out.flush())
            }
            Sink::Console { stderr: false, .. } => {
                let mut out = io::stdout().lock();
                out.write_all(line).and_then(|()| out.flush())
            }
            Sink::Writer(w) => w.write_all(line),
        };
    }

    fn flush(&mut self) {
        if let Sink::Writer(w) = self {
            let _ = w.flush();
        }
    }
}

#[derive(Default)]
struct Counters {
    /// Dropped since the writer last reported them.
    pending: AtomicU64,
    /// Dropped over the logger's life.
    total: AtomicU64,
}

/// Writes lifecycle records to the exporters from one background thread.
///
/// Dropping the logger closes the queue and joins the writer, so every record queued before is
/// written first; a writer stuck on an exporter (say stdout is a pipe nobody reads) is left
/// behind after `DRAIN_TIMEOUT`.
pub(crate) struct Logger {
    settings: LifecycleEvents,
    tx: Option<SyncSender<Item>>,
    writer: Drainer,
    counters: Arc<Counters>,
}

/// How long dropping a logger waits for its writer to write out what is queued. A writer stuck
/// on an exporter that never drains (a full pipe nobody reads) is left behind after that, so
/// that freeing or reconfiguring a supervisor never hangs.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Opens a jsonl exporter for appending (created if missing, close-on-exec). The open itself
/// never blocks: a FIFO nobody reads fails at once with ENXIO instead of waiting for a reader.
/// The descriptor is blocking afterwards, for the writer thread.
fn open_jsonl(path: &str) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // std opens with O_CLOEXEC, so workers never inherit the log file.
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| {
            let what = if e.raw_os_error() == Some(nix::errno::Errno::ENXIO as i32) {
                format!("opening log file '{path}' (a FIFO without a reader?)")
            } else {
                format!("opening log file '{path}'")
            };
            Error::os(what, e)
        })?;
    let file = crate::os::above_stdio(file.into())
        .map(std::fs::File::from)
        .map_err(|e| Error::os(format!("opening log file '{path}'"), e))?;
    crate::os::set_blocking(&file)
        .map_err(|e| Error::os(format!("making log file '{path}' blocking"), e))?;
    Ok(file)
}

impl Logger {
    /// Opens every jsonl file (append, create, close-on-exec) and starts the writer thread.
    pub fn start(settings: LogSettings) -> Result<Logger> {
        let mut sinks = Vec::with_capacity(settings.exporters.len());
        for exporter in &settings.exporters {
            sinks.push(match exporter {
                Exporter::Stdout => Sink::Stdout,
                Exporter::Stderr => Sink::Stderr,
                Exporter::Jsonl { path } => {
                    Sink::Writer(BufWriter::new(Box::new(open_jsonl(path)?)))
                }
                Exporter::Console { stderr } => {
                    let tty = if *stderr {
                        std::io::stderr().is_terminal()
                    } else {
                        std::io::stdout().is_terminal()
                    };
                    Sink::Console {
                        stderr: *stderr,
                        format: console::Console::new(tty),
                    }
                }
            });
        }
        Self::with_sinks(settings.lifecycle_events, sinks)
    }

    fn with_sinks(settings: LifecycleEvents, sinks: Vec<Sink>) -> Result<Logger> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        // The notice is a `warn` record, so it obeys the level like every other record.
        let report = Level::Warn >= settings.level;
        let writer = {
            let counters = Arc::clone(&counters);
            // Every signal blocked there: a reader-less pipe gives EPIPE, never SIGPIPE to the host.
            let level = settings.level;
            Drainer::spawn("mpsup-log", move || {
                write_loop(rx, sinks, &counters, report, level)
            })
            .map_err(|e| Error::os("starting the log writer thread", e))?
        };
        Ok(Logger {
            settings,
            tx: Some(tx),
            writer,
            counters,
        })
    }

    /// Queues the record of `event` unless it is filtered out. Never blocks: when the queue is
    /// full the record is dropped and counted.
    pub fn log(&self, event: &Event) {
        if !self.settings.enabled {
            return;
        }
        self.send(Item::Event(Box::new(event.clone())));
    }

    /// Queues a `worker.output` record of a line a worker wrote. Never blocks; false when the
    /// record was dropped (the queue was full).
    pub fn output(
        &self,
        group: &Arc<str>,
        worker_id: &Arc<str>,
        pid: i32,
        stream: &'static str,
        line: &str,
    ) -> bool {
        if !self.settings.enabled || Level::Info < self.settings.level {
            return true;
        }
        self.send(Item::Output(OutputLine {
            ts_ms: crate::clock::now_ms(),
            group: Arc::clone(group),
            worker_id: Arc::clone(worker_id),
            pid,
            stream,
            line: line.to_string(),
        }))
    }

    fn send(&self, item: Item) -> bool {
        if let Some(tx) = &self.tx {
            match tx.try_send(item) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    self.counters.pending.fetch_add(1, Ordering::Relaxed);
                    self.counters.total.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            }
        }
        true
    }

    /// How many records were dropped because the queue was full, over the logger's life.
    pub fn dropped_total(&self) -> u64 {
        self.counters.total.load(Ordering::Relaxed)
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        drop(self.tx.take());
        // A writer still stuck then ends once its exporter lets it.
        self.writer.join_within(DRAIN_TIMEOUT);
    }
}

/// The writer thread: runs until every sender is gone and the queue is empty.
fn write_loop(
    rx: Receiver<Item>,
    mut sinks: Vec<Sink>,
    counters: &Counters,
    report: bool,
    level: Level,
) {
    loop {
        let item = match rx.try_recv() {
            Ok(line) => line,
            Err(TryRecvError::Empty) => {
                // Flush while idle so a reader sees records promptly, then wait.
                sinks.iter_mut().for_each(Sink::flush);
                match rx.recv() {
                    Ok(line) => line,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        report_dropped(&mut sinks, counters, report);
        write_item(&mut sinks, &item, level);
    }
    // Drops after the last record are reported too.
    report_dropped(&mut sinks, counters, report);
    sinks.iter_mut().for_each(Sink::flush);
}

/// Formats `item` for each sink (JSON once, console lines per console) and writes it.
fn write_item(sinks: &mut [Sink], item: &Item, min_level: Level) {
    let mut json: Option<String> = None;
    match item {
        Item::Event(event) => {
            let Some((kind, level, fields)) = fields_of(event, min_level) else {
                return;
            };
            for sink in sinks {
                let line = match sink {
                    Sink::Console { format, .. } => {
                        format.event(event.ts_ms, &kind, level, &fields)
                    }
                    _ => json
                        .get_or_insert_with(|| {
                            let mut line = serde_json::to_string(&Record {
                                ts_ms: event.ts_ms,
                                level,
                                message: &format!("bootstrap.{kind}"),
                                fields: &fields,
                            })
                            .unwrap_or_default();
                            line.push('\n');
                            line
                        })
                        .clone(),
                };
                sink.write_line(line.as_bytes());
            }
        }
        Item::Output(o) => {
            for sink in sinks {
                let line = match sink {
                    Sink::Console { format, .. } => {
                        format.output(o.ts_ms, &o.worker_id, o.stream, &o.line)
                    }
                    _ => json.get_or_insert_with(|| output_record(o) + "\n").clone(),
                };
                sink.write_line(line.as_bytes());
            }
        }
    }
}

fn write_all(sinks: &mut [Sink], line: &str) {
    for sink in sinks {
        sink.write_line(line.as_bytes());
    }
}

/// Writes the drop notice, placed before the first record written after the loss.
fn report_dropped(sinks: &mut [Sink], counters: &Counters, report: bool) {
    let count = counters.pending.swap(0, Ordering::Relaxed);
    if count > 0 && report {
        write_all(sinks, &(dropped_record(count) + "\n"));
    }
}
