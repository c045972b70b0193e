//! systemd's notify protocol as the core sees it: one datagram parsed into a message (pure, no
//! system call), and the transition a message makes for its worker.

use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::Readiness;
use crate::core::state::State;
use crate::core::worker::Key;
use crate::events::EventKind;

/// The longest `STATUS=` text kept; longer ones are cut (on a character boundary).
pub(crate) const MAX_STATUS: usize = 4096;

/// What one datagram says. Unknown keys are ignored, as systemd does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyMessage {
    pub ready: bool,
    pub reloading: bool,
    pub stopping: bool,
    pub watchdog: bool,
    pub status: Option<String>,
    pub extend_timeout_us: Option<u64>,
    pub errno: Option<i32>,
    pub exit_status: Option<String>,
}

/// Why a datagram is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Empty,
    Nul,
    NotUtf8,
    NoEquals,
}

impl NotifyMessage {
    /// Parses newline-separated `KEY=VALUE` assignments.
    pub fn parse(data: &[u8]) -> Result<NotifyMessage, Malformed> {
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(Malformed::Empty);
        }
        if data.contains(&0) {
            return Err(Malformed::Nul);
        }
        let text = std::str::from_utf8(data).map_err(|_| Malformed::NotUtf8)?;
        let mut m = NotifyMessage::default();
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=').ok_or(Malformed::NoEquals)?;
            match key {
                "READY" => m.ready |= value == "1",
                "RELOADING" => m.reloading |= value == "1",
                "STOPPING" => m.stopping |= value == "1",
                "WATCHDOG" => m.watchdog |= value == "1",
                "STATUS" => m.status = Some(cut(value, MAX_STATUS).to_string()),
                "EXTEND_TIMEOUT_USEC" => {
                    if let Ok(us) = value.parse::<u64>() {
                        m.extend_timeout_us = Some(us);
                    }
                }
                "ERRNO" => {
                    if let Ok(e) = value.parse::<i32>() {
                        m.errno = Some(e);
                    }
                }
                "EXIT_STATUS" => m.exit_status = Some(cut(value, 256).to_string()),
                _ => {}
            }
        }
        Ok(m)
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What an `sd_notify` worker said of itself, for the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotifyFacts {
    /// It sent `STOPPING=1`: it is stopping on its own.
    pub stopping: bool,
    /// It sent `RELOADING=1` and no `READY=1` since.
    pub reloading: bool,
    /// The last `ERRNO=` it sent.
    pub errno: Option<i32>,
    /// The last `EXIT_STATUS=` it sent.
    pub exit_status: Option<String>,
}

impl State {
    /// A datagram from worker `key` (or, with `notify_access: all`, from its process group).
    pub fn notify(&mut self, key: Key, m: NotifyMessage, now: Instant, now_ms: u64) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        if !w.alive() {
            return;
        }
        let facts = w.notify.get_or_insert_with(NotifyFacts::default);
        if m.reloading {
            facts.reloading = true;
        }
        if m.stopping {
            facts.stopping = true;
        }
        if let Some(e) = m.errno {
            facts.errno = Some(e);
        }
        if let Some(s) = m.exit_status {
            facts.exit_status = Some(s);
        }
        if m.ready {
            facts.reloading = false;
        }
        if let Some(us) = m.extend_timeout_us {
            let until = now + Duration::from_micros(us.min(crate::config::MAX_MS * 1000));
            w.extend_until = Some(w.extend_until.map_or(until, |u| u.max(until)));
        }
        if m.watchdog {
            w.last_heartbeat_ms = Some(now_ms);
            if let crate::core::worker::Phase::Ready { last_heartbeat } = &mut w.phase {
                *last_heartbeat = now;
            }
        }
        if let Some(status) = m.status {
            w.status = Some(status.clone());
            let event = EventKind::WorkerStatus {
                group_name: w.group.clone(),
                worker_id: w.id.clone(),
                pid: w.pid,
                generation: w.generation,
                status,
            };
            self.events.push(event);
        }
        let w = &self.workers[&key];
        if m.ready && w.readiness == Readiness::SdNotify {
            self.mark_ready(key, now);
        }
        self.reload_notified(key, m.reloading, m.ready, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_parse_and_unknown_keys_are_ignored() {
        let m = NotifyMessage::parse(
            b"READY=1\nSTATUS=Processes active: 0, idle: 2\nMAINPID=7\nWATCHDOG=1\n\
              EXTEND_TIMEOUT_USEC=5000000\nERRNO=2\nEXIT_STATUS=3\nX_FOO=bar=baz",
        )
        .unwrap();
        assert!(m.ready && m.watchdog && !m.reloading && !m.stopping);
        assert_eq!(m.status.as_deref(), Some("Processes active: 0, idle: 2"));
        assert_eq!(m.extend_timeout_us, Some(5_000_000));
        assert_eq!((m.errno, m.exit_status.as_deref()), (Some(2), Some("3")));
        let m = NotifyMessage::parse(b"RELOADING=1\nMONOTONIC_USEC=123").unwrap();
        assert!(m.reloading && !m.ready);
        assert!(!NotifyMessage::parse(b"READY=0").unwrap().ready);
        assert_eq!(
            NotifyMessage::parse(b"STATUS=").unwrap().status.as_deref(),
            Some("")
        );
    }

    #[test]
    fn malformed_datagrams_are_refused() {
        assert_eq!(NotifyMessage::parse(b""), Err(Malformed::Empty));
        assert_eq!(NotifyMessage::parse(b"\n\n"), Err(Malformed::Empty));
        assert_eq!(NotifyMessage::parse(b"READY=1\0"), Err(Malformed::Nul));
        assert_eq!(
            NotifyMessage::parse(b"READY=1\n\xff"),
            Err(Malformed::NotUtf8)
        );
        assert_eq!(NotifyMessage::parse(b"READY"), Err(Malformed::NoEquals));
        assert_eq!(
            NotifyMessage::parse(b"READY=1\nhello"),
            Err(Malformed::NoEquals)
        );
    }

    use crate::config::parse_groups;
    use crate::core::test_support::{plan_of, spawned};
    use crate::core::timers::Timer;
    use crate::core::Line;

    /// A started group of one worker of `readiness`, spawned without a control channel.
    fn started(readiness: &str, extra: &str) -> (State, Key, Instant) {
        let json = format!(
            r#"[{{"name": "d", "argv": ["/bin/true"], "readiness": "{readiness}"{extra}}}]"#
        );
        let spec = parse_groups(&json).unwrap().remove(0);
        let plan = plan_of(spec);
        let mut state = State::new(64);
        let key = state.begin_start(vec![plan])[0].key;
        let now = Instant::now();
        assert!(state.adopt(key, spawned(42, now)));
        state.events.drain(0);
        (state, key, now)
    }

    fn kinds(state: &mut State) -> Vec<&'static str> {
        state
            .events
            .drain(0)
            .into_iter()
            .map(|e| match e.kind {
                EventKind::WorkerStatus { .. } => "worker_status",
                EventKind::WorkerReady { .. } => "worker_ready",
                EventKind::WorkerFailed { .. } => "worker_failed",
                _ => "other",
            })
            .collect()
    }

    fn message(text: &str) -> NotifyMessage {
        NotifyMessage::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn ready_needs_no_channel_and_reloading_does_not_hold_it_back() {
        let (mut state, key, now) = started("sd_notify", "");
        assert_eq!(state.workers[&key].readiness, Readiness::SdNotify);
        state.notify(key, message("RELOADING=1"), now, 0);
        assert!(state.workers[&key].notify.as_ref().unwrap().reloading);
        state.notify(key, message("READY=1\nSTATUS=up"), now, 0);
        assert_eq!(kinds(&mut state), ["worker_status", "worker_ready"]);
        let w = &state.workers[&key];
        assert!(w.ready() && !w.notify.as_ref().unwrap().reloading);
        assert_eq!(w.status.as_deref(), Some("up"));
        // Once ready, READY=1 again changes nothing.
        state.notify(key, message("READY=1"), now, 0);
        assert!(kinds(&mut state).is_empty());
    }

    #[test]
    fn ready_1_counts_only_for_sd_notify_workers() {
        let (mut state, key, now) = started("warmup", r#", "warmup_ms": 100000"#);
        state.notify(key, message("READY=1\nSTOPPING=1\nERRNO=5"), now, 0);
        assert!(!state.workers[&key].ready());
        let facts = state.workers[&key].notify.clone().unwrap();
        assert!(facts.stopping);
        assert_eq!(facts.errno, Some(5));
    }

    #[test]
    fn extend_timeout_usec_moves_the_ready_timeout_on() {
        let (mut state, key, now) = started("sd_notify", r#", "ready_timeout_ms": 100"#);
        state.notify(key, message("EXTEND_TIMEOUT_USEC=1000000"), now, 0);
        let at = now + Duration::from_millis(100);
        state.timer(key, Timer::ReadyTimeout, at);
        assert!(
            state.take_effects().is_empty(),
            "killed despite the extension"
        );
        // The deadline is re-armed at the extension's end, where it holds.
        let due = state.timers.pop_due(now + Duration::from_secs(1));
        assert!(due.contains(&(key, Timer::ReadyTimeout)), "{due:?}");
        state.timer(key, Timer::ReadyTimeout, now + Duration::from_secs(1));
        assert!(matches!(
            state.take_effects()[..],
            [crate::core::effects::Effect::Signal {
                signal: libc::SIGKILL,
                ..
            }]
        ));
    }

    #[test]
    fn watchdog_1_is_a_heartbeat_and_a_line_heartbeat_too() {
        let (mut state, key, now) = started("sd_notify", r#", "heartbeat_timeout_ms": 100"#);
        state.notify(key, message("READY=1"), now, 0);
        let later = now + Duration::from_millis(80);
        state.notify(key, message("WATCHDOG=1"), later, 7);
        assert_eq!(state.workers[&key].last_heartbeat_ms, Some(7));
        state.timer(key, Timer::Heartbeat, now + Duration::from_millis(100));
        assert!(state.take_effects().is_empty());
        state.line(key, Line::Heartbeat, now + Duration::from_millis(150), 9);
        state.timer(key, Timer::Heartbeat, now + Duration::from_millis(249));
        assert!(state.take_effects().is_empty());
        state.timer(key, Timer::Heartbeat, now + Duration::from_millis(250));
        assert_eq!(
            state.take_effects().len(),
            1,
            "not killed after the timeout"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused_without_a_panic(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..9000)
        ) {
            if let Ok(m) = NotifyMessage::parse(&data) {
                proptest::prop_assert!(!data.contains(&0));
                proptest::prop_assert!(m.status.is_none_or(|s| s.len() <= MAX_STATUS));
            }
        }
    }

    #[test]
    fn a_long_status_is_cut_to_the_whole_characters_that_fit() {
        // After "a", each two-byte "é" ends at an odd offset: the limit falls inside one.
        let text = format!(
            "STATUS=a{}\nEXIT_STATUS=a{}",
            "é".repeat(MAX_STATUS),
            "é".repeat(256)
        );
        let m = NotifyMessage::parse(text.as_bytes()).unwrap();
        let status = m.status.unwrap();
        assert_eq!(status.len(), MAX_STATUS - 1);
        assert_eq!(status, format!("a{}", "é".repeat(MAX_STATUS / 2 - 1)));
        assert_eq!(m.exit_status.unwrap(), format!("a{}", "é".repeat(127)));
        // Where the limit falls between two characters, all of it is kept.
        let text = format!("STATUS={}", "é".repeat(MAX_STATUS));
        let status = NotifyMessage::parse(text.as_bytes()).unwrap().status;
        assert_eq!(status.unwrap().len(), MAX_STATUS);
    }

    #[test]
    fn extend_timeout_usec_holds_for_days_and_for_a_year_at_most() {
        let ten_days = Duration::from_secs(10 * 86_400);
        let year = Duration::from_millis(crate::config::MAX_MS);
        for (usec, lasts) in [(ten_days.as_micros() as u64, ten_days), (u64::MAX, year)] {
            let (mut state, key, now) = started("sd_notify", r#", "ready_timeout_ms": 100"#);
            state.notify(key, message(&format!("EXTEND_TIMEOUT_USEC={usec}")), now, 0);
            let before = now + lasts - Duration::from_millis(1);
            state.timer(key, Timer::ReadyTimeout, before);
            assert!(state.take_effects().is_empty(), "killed before {lasts:?}");
            state.timer(key, Timer::ReadyTimeout, now + lasts);
            assert_eq!(state.take_effects().len(), 1, "alive after {lasts:?}");
        }
    }
}
