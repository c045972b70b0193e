//! The console exporter's lines, for people: `12:00:01.234 web#2     | GET / 200` for a line
//! of output, and one aligned line per lifecycle event. Times are UTC (the writer thread never
//! reads the host's environment, where the time zone lives). Colour only on a terminal.

use serde_json::{Map, Value};

use crate::logging::Level;

/// The narrowest name column; it widens to the longest name seen.
const MIN_WIDTH: usize = 12;
/// The width of an event's kind column.
const KIND_WIDTH: usize = 24;

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const NAME_COLOURS: [&str; 6] = [
    "\x1b[36m", "\x1b[32m", "\x1b[35m", "\x1b[34m", "\x1b[33m", "\x1b[96m",
];

/// Formats records; keeps the width of the name column.
#[derive(Debug)]
pub struct Console {
    colour: bool,
    width: usize,
}

impl Console {
    pub fn new(colour: bool) -> Console {
        Console {
            colour,
            width: MIN_WIDTH,
        }
    }

    /// `HH:MM:SS.mmm` of a wall-clock time in ms, UTC.
    pub fn time(ts_ms: u64) -> String {
        let day_ms = ts_ms % 86_400_000;
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            day_ms / 3_600_000,
            day_ms / 60_000 % 60,
            day_ms / 1000 % 60,
            day_ms % 1000
        )
    }

    fn prefix(&mut self, out: &mut String, ts_ms: u64, who: &str) {
        self.width = self.width.max(who.chars().count());
        let pad = self.width - who.chars().count();
        if self.colour {
            let hash = who
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31) + b as usize);
            let colour = NAME_COLOURS[hash % NAME_COLOURS.len()];
            out.push_str(&format!(
                "{DIM}{}{RESET} {colour}{who}{RESET}{:pad$} ",
                Self::time(ts_ms),
                ""
            ));
        } else {
            out.push_str(&format!("{} {who}{:pad$} ", Self::time(ts_ms), ""));
        }
    }

    /// A line a worker wrote (ends in `\n`).
    pub fn output(&mut self, ts_ms: u64, worker_id: &str, stream: &str, line: &str) -> String {
        let mut out = String::with_capacity(line.len() + 32);
        self.prefix(&mut out, ts_ms, worker_id);
        let marker = if stream == "stderr" && self.colour {
            "\x1b[31m|\x1b[0m"
        } else {
            "|"
        };
        out.push_str(marker);
        out.push(' ');
        out.push_str(line);
        out.push('\n');
        out
    }

    /// A lifecycle event, as the fields of its JSON record (`kind` is its name); a failed
    /// worker's stderr tail follows on lines of its own.
    pub fn event(
        &mut self,
        ts_ms: u64,
        kind: &str,
        level: Level,
        fields: &Map<String, Value>,
    ) -> String {
        let who = fields
            .get("worker_id")
            .or_else(|| fields.get("group_name"))
            .and_then(Value::as_str)
            .unwrap_or("supervisor")
            .to_string();
        let mut details = Vec::new();
        for (key, value) in fields {
            if matches!(key.as_str(), "worker_id" | "group_name" | "stderr_tail") || value.is_null()
            {
                continue;
            }
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            details.push(format!("{key}={text}"));
        }
        let mut out = String::new();
        self.prefix(&mut out, ts_ms, &who);
        let (on, off) = match (self.colour, level) {
            (true, Level::Error) => ("\x1b[1;31m", RESET),
            (true, Level::Warn) => ("\x1b[33m", RESET),
            (true, _) => ("\x1b[1m", RESET),
            (false, _) => ("", ""),
        };
        if details.is_empty() {
            out.push_str(&format!("= {on}{kind}{off}"));
        } else {
            out.push_str(&format!(
                "= {on}{kind:<KIND_WIDTH$}{off} {}",
                details.join(" ")
            ));
        }
        out.push('\n');
        if let Some(Value::Array(tail)) = fields.get("stderr_tail") {
            for line in tail.iter().filter_map(Value::as_str) {
                self.prefix(&mut out, ts_ms, &who);
                out.push_str("! ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_aligned_and_plain_without_a_terminal() {
        let mut c = Console::new(false);
        let ts = 12 * 3_600_000 + 60_000 + 1234;
        assert_eq!(Console::time(20_000 * 86_400_000 + ts), "12:01:01.234");
        assert_eq!(
            c.output(ts, "web#2", "stdout", "GET / 200"),
            "12:01:01.234 web#2        | GET / 200\n"
        );
        let fields: Map<String, Value> = serde_json::from_str(
            r#"{"group_name":"web","worker_id":"web#2","pid":42,"generation":1,
                "reason":"exited","exit_code":3,"signal":null,"stderr_tail":["boom"]}"#,
        )
        .unwrap();
        let text = c.event(ts, "worker_failed", Level::Warn, &fields);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0]
                .starts_with("12:01:01.234 web#2        = worker_failed            exit_code=3 "),
            "{text}"
        );
        assert!(lines[0].contains("reason=exited") && !lines[0].contains("null"));
        assert_eq!(lines[1], "12:01:01.234 web#2        ! boom");
        let group: Map<String, Value> =
            serde_json::from_str(r#"{"group_name":"web","restarts":5,"window_ms":1000}"#).unwrap();
        let text = c.event(ts, "group_failed", Level::Error, &group);
        assert!(
            text.starts_with("12:01:01.234 web          = group_failed             restarts=5"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
        let mut coloured = Console::new(true);
        assert!(coloured.output(ts, "web#2", "stderr", "x").contains('\x1b'));
    }
}
