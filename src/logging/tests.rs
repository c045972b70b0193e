use super::*;
use crate::events::tests::ready;
use crate::events::{EventKind, StopMode};
use serde::Serialize;
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

fn failed() -> EventKind {
    EventKind::WorkerFailed {
        group_name: "g".into(),
        worker_id: "g#0".into(),
        pid: 9,
        generation: 1,
        reason: crate::events::ExitReason::Exited,
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
        r#"{"ts_ms":1700000000123,"level":"info","message":"bootstrap.worker_stopped","#.to_owned()
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
