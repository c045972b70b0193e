//! Lifecycle logging: every event also becomes one JSON log record, written to each exporter.
//!
//! Writing must never block the supervisor, so `Logger::log` only formats the record and hands it
//! to one writer thread through a bounded queue; when the queue is full the record is dropped and
//! counted, and the writer reports the count as a `bootstrap.log_records_dropped` record.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::events::Event;

/// How many records may wait for the writer before new ones are dropped.
const QUEUE_CAPACITY: usize = 4096;

/// Severity of a record; the order of the variants is the order of the levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// The `lifecycle_events` object of the settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleEvents {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "info")]
    pub level: Level,
}

impl Default for LifecycleEvents {
    fn default() -> Self {
        LifecycleEvents {
            enabled: true,
            level: Level::Info,
        }
    }
}

fn yes() -> bool {
    true
}
fn info() -> Level {
    Level::Info
}

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exporter {
    Stdout,
    Stderr,
    /// Appends to the file at `path`.
    Jsonl {
        path: String,
    },
    /// Lines for people on stdout (or stderr), coloured on a terminal.
    Console {
        stderr: bool,
    },
}

/// The validated settings of `configure_lifecycle_logging`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    pub lifecycle_events: LifecycleEvents,
    pub exporters: Vec<Exporter>,
}

/// A `T` that must be written as a JSON object: serde's derive would also build a struct from an
/// array of its fields in order, which a strict parser must not accept.
struct Object<T>(T);

impl<T: Default> Default for Object<T> {
    fn default() -> Self {
        Object(T::default())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> std::result::Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        de.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

/// The settings as written; `settings` is kept raw so its errors can name their path per kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    lifecycle_events: Object<LifecycleEvents>,
    #[serde(default)]
    exporters: Vec<Object<RawExporter>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExporter {
    kind: ExporterKind,
    /// `Some(Null)` for an explicit `null`, so only an absent key means "no settings".
    #[serde(default, deserialize_with = "present")]
    settings: Option<serde_json::Value>,
}

fn present<'de, D: Deserializer<'de>>(
    de: D,
) -> std::result::Result<Option<serde_json::Value>, D::Error> {
    crate::config::bounded_value(de).map(Some)
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ExporterKind {
    Stdout,
    Stderr,
    Jsonl,
    Console,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleSettings {
    #[serde(default = "stdout_stream")]
    stream: ConsoleStream,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ConsoleStream {
    Stdout,
    Stderr,
}

fn stdout_stream() -> ConsoleStream {
    ConsoleStream::Stdout
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlSettings {
    path: String,
}

/// Deserializes a `T` written as an object, naming the failing path under `prefix`.
fn deserialize_at<'de, T, D>(prefix: &str, de: D) -> Result<T>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
    D::Error: fmt::Display,
{
    serde_path_to_error::deserialize(de)
        .map(|Object(t)| t)
        .map_err(|e| {
            let path = e.path().to_string();
            let mut path = match path.as_str() {
                "." => prefix.to_string(),
                p if p.starts_with('[') => format!("{prefix}{p}"),
                p => format!("{prefix}.{p}"),
            };
            let inner = e.inner().to_string();
            if inner.starts_with(crate::config::TOO_DEEP) {
                // The path goes down to the level past the bound: name the key that holds it.
                if let Some(at) = path.find("].settings") {
                    path.truncate(at + "].settings".len());
                }
            }
            Error::InvalidConfig(format!("{path}: {inner}"))
        })
}

/// Parses and validates the settings JSON; each error names its JSON path, such as
/// `settings.exporters[1].kind`. Like the groups, the supervisor runs it on a thread with a large
/// stack.
pub fn parse_settings(json: &str) -> Result<LogSettings> {
    let de = &mut serde_json::Deserializer::from_str(json);
    let raw: RawSettings = deserialize_at("settings", &mut *de)?;
    // Only whitespace may follow the object: `{} garbage` is not a setting.
    de.end()
        .map_err(|e| Error::InvalidConfig(format!("settings: after the object: {e}")))?;
    let mut exporters = Vec::with_capacity(raw.exporters.len());
    for (i, Object(e)) in raw.exporters.into_iter().enumerate() {
        let at = format!("settings.exporters[{i}].settings");
        exporters.push(match (e.kind, e.settings) {
            (ExporterKind::Stdout, None) => Exporter::Stdout,
            (ExporterKind::Stderr, None) => Exporter::Stderr,
            (ExporterKind::Stdout | ExporterKind::Stderr, Some(_)) => {
                return Err(Error::InvalidConfig(format!(
                    "{at}: stdout and stderr take no settings"
                )));
            }
            (ExporterKind::Console, None) => Exporter::Console { stderr: false },
            (ExporterKind::Console, Some(value)) => {
                let s: ConsoleSettings = deserialize_at(&at, value)?;
                Exporter::Console {
                    stderr: s.stream == ConsoleStream::Stderr,
                }
            }
            (ExporterKind::Jsonl, None) => {
                return Err(Error::InvalidConfig(format!(
                    "{at}: jsonl requires settings with a path"
                )));
            }
            (ExporterKind::Jsonl, Some(value)) => {
                let s: JsonlSettings = deserialize_at(&at, value)?;
                if s.path.is_empty() || s.path.contains('\0') {
                    return Err(Error::InvalidConfig(format!(
                        "{at}.path: must be a non-empty path without NUL"
                    )));
                }
                Exporter::Jsonl { path: s.path }
            }
        });
    }
    Ok(LogSettings {
        lifecycle_events: raw.lifecycle_events.0,
        exporters,
    })
}

/// The fixed level of an event kind: failures `warn`, `group_failed` `error`, the rest `info`.
pub fn level_of(kind: &str) -> Level {
    match kind {
        "worker_failed" | "worker_protocol_error" | "stop_event_unavailable" | "events_dropped" => {
            Level::Warn
        }
        "group_failed" => Level::Error,
        _ => Level::Info,
    }
}

/// One log line. A struct rather than a `json!` map so the keys keep this order.
#[derive(Serialize)]
struct Record<'a> {
    ts_ms: u64,
    level: Level,
    message: &'a str,
    fields: &'a serde_json::Map<String, serde_json::Value>,
}

/// The log line (without newline) for `event`, or `None` when its level is below `min_level`.
pub fn record_for(event: &Event, min_level: Level) -> Option<String> {
    let (kind, level, fields) = fields_of(event, min_level)?;
    serde_json::to_string(&Record {
        ts_ms: event.ts_ms,
        level,
        message: &format!("bootstrap.{kind}"),
        fields: &fields,
    })
    .ok()
}

/// The kind, level and fields of `event`'s record, or `None` when its level is below
/// `min_level`.
fn fields_of(
    event: &Event,
    min_level: Level,
) -> Option<(String, Level, serde_json::Map<String, serde_json::Value>)> {
    // The event serializes as one flat object; seq, ts_ms and kind go to the envelope (or away).
    // Taking the kind from serde keeps its name from drifting away from `events.rs`.
    let serde_json::Value::Object(mut fields) = serde_json::to_value(event).ok()? else {
        return None;
    };
    let kind = fields.remove("kind")?;
    let kind = kind.as_str()?;
    let level = level_of(kind);
    if level < min_level {
        return None;
    }
    let kind = kind.to_string();
    fields.remove("seq");
    fields.remove("ts_ms");
    Some((kind, level, fields))
}

/// A line a worker wrote to a captured stream.
#[derive(Debug)]
pub struct OutputLine {
    pub ts_ms: u64,
    pub group: Arc<str>,
    pub worker_id: Arc<str>,
    pub pid: i32,
    pub stream: &'static str,
    pub line: String,
}

fn output_record(o: &OutputLine) -> String {
    let mut fields = serde_json::Map::new();
    fields.insert("group_name".into(), (*o.group).into());
    fields.insert("line".into(), o.line.as_str().into());
    fields.insert("pid".into(), o.pid.into());
    fields.insert("stream".into(), o.stream.into());
    fields.insert("worker_id".into(), (*o.worker_id).into());
    serde_json::to_string(&Record {
        ts_ms: o.ts_ms,
        level: Level::Info,
        message: "worker.output",
        fields: &fields,
    })
    .expect("a map of strings serializes")
}

/// What waits for the writer thread: records are formatted there, off the monitor.
enum Item {
    Event(Box<Event>),
    Output(OutputLine),
}

fn dropped_record(count: u64) -> String {
    let mut fields = serde_json::Map::new();
    fields.insert("count".into(), count.into());
    serde_json::to_string(&Record {
        ts_ms: crate::clock::now_ms(),
        level: Level::Warn,
        message: "bootstrap.log_records_dropped",
        fields: &fields,
    })
    .expect("a map of a number serializes")
}

/// An open exporter, owned by the writer thread.
enum Sink {
    Stdout,
    Stderr,
    /// The console exporter, on stdout or stderr.
    Console {
        stderr: bool,
        format: crate::console::Console,
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
/// written first. If an exporter blocks (say stdout is a pipe nobody reads), drop blocks with it.
pub struct Logger {
    settings: LifecycleEvents,
    tx: Option<SyncSender<Item>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    /// Set by the writer when it has written everything and is about to end.
    finished: Arc<(Mutex<bool>, Condvar)>,
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
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // std opens with O_CLOEXEC, so workers never inherit the log file.
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            let what = if e.raw_os_error() == Some(libc::ENXIO) {
                format!("opening log file '{path}' (a FIFO without a reader?)")
            } else {
                format!("opening log file '{path}'")
            };
            Error::os(what, e)
        })?;
    // SAFETY: plain fcntl calls on a descriptor we own.
    let cleared = unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        flags >= 0 && libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !cleared {
        return Err(Error::last_os(format!("making log file '{path}' blocking")));
    }
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
                    // SAFETY: isatty has no preconditions.
                    let tty = unsafe { libc::isatty(if *stderr { 2 } else { 1 }) } == 1;
                    Sink::Console {
                        stderr: *stderr,
                        format: crate::console::Console::new(tty),
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
        let finished = Arc::new((Mutex::new(false), Condvar::new()));
        let writer = {
            let counters = Arc::clone(&counters);
            let finished = Arc::clone(&finished);
            // Every signal blocked there: a reader-less pipe gives EPIPE, never SIGPIPE to the host.
            let level = settings.level;
            crate::threads::spawn_named("mpsup-log", None, move || {
                write_loop(rx, sinks, &counters, report, level);
                let (done, cv) = &*finished;
                *crate::sync::lock(done) = true;
                cv.notify_all();
            })
            .map_err(|e| Error::os("starting the log writer thread", e))?
        };
        Ok(Logger {
            settings,
            tx: Some(tx),
            writer: Some(writer),
            counters,
            finished,
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
        let (done, cv) = &*self.finished;
        let guard = crate::sync::lock(done);
        let (guard, _) = cv
            .wait_timeout_while(guard, DRAIN_TIMEOUT, |finished| !*finished)
            .unwrap_or_else(|p| p.into_inner());
        let finished = *guard;
        drop(guard);
        if let Some(writer) = self.writer.take() {
            if finished {
                let _ = writer.join();
            }
            // Otherwise the writer is detached: it ends once its exporter lets it.
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, StopMode};
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};

    fn err(json: &str) -> String {
        match parse_settings(json) {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            ts_ms: 1_700_000_000_000 + seq,
            kind,
        }
    }

    fn ready(i: i32) -> EventKind {
        EventKind::WorkerReady {
            group_name: "g".into(),
            worker_id: format!("g#{i}"),
            pid: i,
            generation: 1,
        }
    }

    fn failed() -> EventKind {
        EventKind::WorkerFailed {
            group_name: "g".into(),
            worker_id: "g#0".into(),
            pid: 9,
            generation: 1,
            reason: "exited",
            exit_code: Some(3),
            signal: None,
            status_unavailable: false,
            stderr_tail: vec![],
        }
    }

    /// A path under the temporary directory whose file is removed when the guard drops, so a
    /// failing test leaves nothing behind either.
    struct TempPath(std::path::PathBuf);

    impl std::ops::Deref for TempPath {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl AsRef<std::path::Path> for TempPath {
        fn as_ref(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Serialize for TempPath {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            self.0.serialize(s)
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn temp_path(tag: &str) -> TempPath {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        TempPath(std::env::temp_dir().join(format!(
            "mpsup-log-{tag}-{}-{nanos}.jsonl",
            std::process::id()
        )))
    }

    #[test]
    fn defaults_match_the_contract() {
        assert_eq!(parse_settings("{}").unwrap(), LogSettings::default());
        let s = parse_settings("{}").unwrap();
        assert!(s.lifecycle_events.enabled);
        assert_eq!(s.lifecycle_events.level, Level::Info);
        assert!(s.exporters.is_empty());
        let s = parse_settings(r#"{"lifecycle_events": {"level": "warn"}}"#).unwrap();
        assert!(s.lifecycle_events.enabled);
    }

    #[test]
    fn full_settings_parse() {
        let s = parse_settings(
            r#"{"lifecycle_events": {"enabled": false, "level": "debug"},
                "exporters": [{"kind": "stdout"}, {"kind": "stderr"},
                              {"kind": "jsonl", "settings": {"path": "/var/log/sup.jsonl"}}]}"#,
        )
        .unwrap();
        assert!(!s.lifecycle_events.enabled);
        assert_eq!(s.lifecycle_events.level, Level::Debug);
        assert_eq!(
            s.exporters,
            vec![
                Exporter::Stdout,
                Exporter::Stderr,
                Exporter::Jsonl {
                    path: "/var/log/sup.jsonl".into()
                }
            ]
        );
    }

    #[test]
    fn errors_name_the_json_path() {
        let cases = [
            ("[]", "settings: invalid type"),
            (
                r#"{"lifecycle_events": 1}"#,
                "settings.lifecycle_events: invalid type",
            ),
            (
                r#"{"lifecycle_events": {"level": "verbose"}}"#,
                "settings.lifecycle_events.level: unknown variant `verbose`",
            ),
            (
                r#"{"lifecycle_events": {"enabled": 1}}"#,
                "settings.lifecycle_events.enabled: invalid type",
            ),
            (
                r#"{"lifecycle_events": [false, "info"]}"#,
                "settings.lifecycle_events: invalid type: sequence, expected an object",
            ),
            (r#"{"exporters": {}}"#, "settings.exporters: invalid type"),
            (
                r#"{"exporters": [["stdout"]]}"#,
                "settings.exporters[0]: invalid type: sequence, expected an object",
            ),
            (
                r#"{"exporters": [{"kind": "stdout"}, {"kind": "syslog"}]}"#,
                "settings.exporters[1].kind: unknown variant `syslog`",
            ),
            (
                r#"{"exporters": [{}]}"#,
                "settings.exporters[0]: missing field `kind`",
            ),
            (
                r#"{"exporters": [{"kind": "stdout", "settings": {}}]}"#,
                "settings.exporters[0].settings: stdout and stderr take no settings",
            ),
            (
                r#"{"exporters": [{"kind": "stderr", "settings": {"path": "/x"}}]}"#,
                "settings.exporters[0].settings: stdout and stderr take no settings",
            ),
            (
                r#"{"exporters": [{"kind": "stdout", "settings": null}]}"#,
                "settings.exporters[0].settings: stdout and stderr take no settings",
            ),
            (
                r#"{"exporters": [{"kind": "jsonl", "settings": null}]}"#,
                "settings.exporters[0].settings: invalid type: null, expected an object",
            ),
            (
                r#"{"exporters": [{"kind": "stdout"}, {"kind": "jsonl"}]}"#,
                "settings.exporters[1].settings: jsonl requires settings",
            ),
            (
                r#"{"exporters": [{"kind": "jsonl", "settings": {}}]}"#,
                "settings.exporters[0].settings: missing field `path`",
            ),
            (
                r#"{"exporters": [{"kind": "jsonl", "settings": ["/x"]}]}"#,
                "settings.exporters[0].settings: invalid type",
            ),
            (
                r#"{"exporters": [{"kind": "jsonl", "settings": {"path": 7}}]}"#,
                "settings.exporters[0].settings.path: invalid type",
            ),
            (
                r#"{"exporters": [{"kind": "jsonl", "settings": {"path": ""}}]}"#,
                "settings.exporters[0].settings.path: must be a non-empty path",
            ),
            (
                r#"{"exporters": [{"kind": "jsonl", "settings": {"path": "/x\u0000"}}]}"#,
                "settings.exporters[0].settings.path: must be a non-empty path",
            ),
            (r#"{"exporters": ["#, "settings"),
        ];
        for (json, expected) in cases {
            let m = err(json);
            assert!(m.starts_with(expected), "{json}: {m}");
        }
        // Unknown keys are errors at every level.
        for (json, path) in [
            (r#"{"colour": 1}"#, "settings"),
            (
                r#"{"lifecycle_events": {"colour": 1}}"#,
                "settings.lifecycle_events",
            ),
            (
                r#"{"exporters": [{"kind": "stdout", "colour": 1}]}"#,
                "settings.exporters[0]",
            ),
            (
                r#"{"exporters": [{"kind": "jsonl", "settings": {"path": "/x", "colour": 1}}]}"#,
                "settings.exporters[0].settings",
            ),
        ] {
            let m = err(json);
            assert!(
                m.starts_with(path) && m.contains("unknown field `colour`"),
                "{json}: {m}"
            );
        }
    }

    #[test]
    fn each_kind_has_its_level() {
        assert!(Level::Debug < Level::Info && Level::Info < Level::Warn);
        assert!(Level::Warn < Level::Error);
        for kind in [
            "worker_failed",
            "worker_protocol_error",
            "stop_event_unavailable",
            "events_dropped",
        ] {
            assert_eq!(level_of(kind), Level::Warn, "{kind}");
        }
        assert_eq!(level_of("group_failed"), Level::Error);
        for kind in [
            "worker_spawned",
            "worker_ready",
            "worker_stopping",
            "worker_stopped",
            "worker_restarting",
            "supervisor_start_groups",
            "supervisor_start_work",
        ] {
            assert_eq!(level_of(kind), Level::Info, "{kind}");
        }
    }

    #[test]
    fn records_below_the_level_are_filtered() {
        let ready = event(1, ready(1));
        let failed = event(2, failed());
        assert!(record_for(&ready, Level::Debug).is_some());
        assert!(record_for(&ready, Level::Info).is_some());
        assert!(record_for(&ready, Level::Warn).is_none());
        assert!(record_for(&failed, Level::Warn).is_some());
        assert!(record_for(&failed, Level::Error).is_none());
        let json: serde_json::Value =
            serde_json::from_str(&record_for(&failed, Level::Info).unwrap()).unwrap();
        assert_eq!(json["level"], "warn");
    }

    #[test]
    fn record_format_is_exact() {
        let e = Event {
            seq: 5,
            ts_ms: 1_700_000_000_123,
            kind: EventKind::WorkerStopped {
                group_name: "ingest".into(),
                worker_id: "ingest#0".into(),
                pid: 42,
                generation: 1,
                mode: StopMode::Graceful,
                exit_code: Some(0),
                signal: None,
                status_unavailable: false,
            },
        };
        assert_eq!(
            record_for(&e, Level::Info).unwrap(),
            r#"{"ts_ms":1700000000123,"level":"info","message":"bootstrap.worker_stopped","#
                .to_owned()
                + r#""fields":{"exit_code":0,"generation":1,"group_name":"ingest","mode":"graceful","#
                + r#""pid":42,"#
                + r#""signal":null,"worker_id":"ingest#0"}}"#
        );
        let dropped: serde_json::Value = serde_json::from_str(&dropped_record(7)).unwrap();
        assert_eq!(dropped["level"], "warn");
        assert_eq!(dropped["message"], "bootstrap.log_records_dropped");
        assert_eq!(dropped["fields"], serde_json::json!({"count": 7}));
        assert!(dropped["ts_ms"].as_u64().unwrap() > 1_600_000_000_000);
    }

    #[test]
    fn jsonl_exporter_appends_lines() {
        let path = temp_path("append");
        std::fs::write(&path, "earlier\n").unwrap();
        let settings = parse_settings(
            &serde_json::json!({
                "lifecycle_events": {"level": "info"},
                "exporters": [{"kind": "jsonl", "settings": {"path": path}}]
            })
            .to_string(),
        )
        .unwrap();
        let logger = Logger::start(settings).unwrap();
        logger.log(&event(1, ready(1)));
        logger.log(&event(2, failed()));
        logger.log(&event(3, ready(3)));
        assert_eq!(logger.dropped_total(), 0);
        drop(logger);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], "earlier");
        assert_eq!(
            lines[1],
            record_for(&event(1, ready(1)), Level::Info).unwrap()
        );
        let second: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(second["message"], "bootstrap.worker_failed");
        assert_eq!(second["fields"]["exit_code"], 3);
        assert_eq!(second["ts_ms"], 1_700_000_000_002u64);
    }

    #[test]
    fn level_and_enabled_filter_what_reaches_the_file() {
        let path = temp_path("filter");
        let jsonl = Exporter::Jsonl {
            path: path.to_str().unwrap().into(),
        };
        let warn_only = LogSettings {
            lifecycle_events: LifecycleEvents {
                enabled: true,
                level: Level::Warn,
            },
            exporters: vec![jsonl.clone()],
        };
        let logger = Logger::start(warn_only).unwrap();
        logger.log(&event(1, ready(1)));
        logger.log(&event(2, failed()));
        drop(logger);
        let disabled = LogSettings {
            lifecycle_events: LifecycleEvents {
                enabled: false,
                level: Level::Debug,
            },
            exporters: vec![jsonl],
        };
        let logger = Logger::start(disabled).unwrap();
        logger.log(&event(3, failed()));
        drop(logger);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("bootstrap.worker_failed"));
    }

    #[test]
    fn unopenable_file_is_an_os_error_naming_the_path() {
        let path = temp_path("missing-dir").join("x.jsonl");
        let settings = LogSettings {
            exporters: vec![Exporter::Jsonl {
                path: path.to_str().unwrap().into(),
            }],
            ..LogSettings::default()
        };
        match Logger::start(settings) {
            Err(Error::Os { context, source }) => {
                assert!(context.contains(path.to_str().unwrap()), "{context}");
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            Err(other) => panic!("expected Os, got {other:?}"),
            Ok(_) => panic!("expected Os, got a logger"),
        }
    }

    #[test]
    fn a_blocked_exporter_never_blocks_log() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Nobody reads the pipe yet, so the writer blocks once it holds ~64 KiB.
        let pipe: Box<dyn Write + Send> = Box::new(std::fs::File::from(write_end));
        let logger = Logger::with_sinks(
            LifecycleEvents::default(),
            vec![Sink::Writer(BufWriter::new(pipe))],
        )
        .unwrap();
        const N: u64 = 100_000;
        for seq in 1..=N {
            logger.log(&event(seq, ready(seq as i32)));
        }
        // Every call returned; far more records than the pipe and the queue hold were dropped.
        let dropped = logger.dropped_total();
        assert!(dropped > 0);
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::from(read_end)
                .read_to_string(&mut text)
                .unwrap();
            text
        });
        drop(logger);
        let text = reader.join().unwrap();
        let (mut records, mut reported) = (0, 0);
        for line in text.lines() {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            if json["message"] == "bootstrap.log_records_dropped" {
                reported += json["fields"]["count"].as_u64().unwrap();
            } else {
                assert_eq!(json["message"], "bootstrap.worker_ready");
                records += 1;
            }
        }
        assert_eq!(records + dropped, N);
        assert_eq!(reported, dropped);
    }
}
