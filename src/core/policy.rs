//! The restart policy: when a worker that ended unasked is respawned, after what delay, and when
//! its group has failed too often. A pure function of what happened and a clock, so it is tested
//! without processes or sleeps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use crate::config::Restart;

/// The restart settings of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartSpec {
    pub restart: Restart,
    pub delay: Duration,
    pub delay_max: Duration,
    pub backoff_reset: Duration,
    pub max_restarts: u32,
    pub window: Duration,
}

/// How a worker ended, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Exit status 0.
    Clean,
    /// A non-zero exit, a signal, a timeout, or an unknown status.
    Failure,
}

/// What to do about a worker that ended unasked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Leave it failed.
    Leave,
    /// Respawn it after `delay`; `attempt` counts consecutive failures of this worker from 1.
    Restart { attempt: u32, delay: Duration },
    /// Too many respawns in the window: fail the whole group.
    FailGroup { restarts: u32 },
}

/// Per-worker memory: consecutive failures and when it last became ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    pub consecutive: u32,
    pub ready_at: Option<Instant>,
}

/// Per-group memory: when its recent respawns happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intensity {
    respawns: VecDeque<Instant>,
}

impl Intensity {
    /// When the recent respawns happened, oldest first (what a handover carries).
    pub fn times(&self) -> Vec<Instant> {
        self.respawns.iter().copied().collect()
    }

    /// The memory of respawns at `times` (oldest first).
    pub fn from_times(times: Vec<Instant>) -> Intensity {
        Intensity {
            respawns: times.into(),
        }
    }

    /// Respawns counted inside the window ending at `now`.
    pub fn recent(&mut self, window: Duration, now: Instant) -> u32 {
        while let Some(&first) = self.respawns.front() {
            if now.saturating_duration_since(first) >= window {
                self.respawns.pop_front();
            } else {
                break;
            }
        }
        self.respawns.len() as u32
    }
}

/// Decides what happens to a worker that ended unasked at `now`, and updates the memories.
pub fn decide(
    spec: &RestartSpec,
    ending: Ending,
    backoff: &mut Backoff,
    group: &mut Intensity,
    now: Instant,
) -> Decision {
    let wanted = match spec.restart {
        Restart::Never => false,
        Restart::OnFailure => ending == Ending::Failure,
        Restart::Always => true,
    };
    if !wanted {
        return Decision::Leave;
    }
    // A worker that stayed up long enough after becoming ready starts its backoff afresh.
    if let Some(ready_at) = backoff.ready_at.take() {
        if now.saturating_duration_since(ready_at) >= spec.backoff_reset {
            backoff.consecutive = 0;
        }
    }
    let recent = group.recent(spec.window, now);
    if recent >= spec.max_restarts {
        return Decision::FailGroup { restarts: recent };
    }
    group.respawns.push_back(now);
    let doublings = backoff.consecutive.min(32);
    let delay = spec
        .delay
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(spec.delay_max)
        .min(spec.delay_max);
    backoff.consecutive += 1;
    Decision::Restart {
        attempt: backoff.consecutive,
        delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(restart: Restart) -> RestartSpec {
        RestartSpec {
            restart,
            delay: Duration::from_millis(100),
            delay_max: Duration::from_millis(1000),
            backoff_reset: Duration::from_millis(10_000),
            max_restarts: 5,
            window: Duration::from_millis(60_000),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn never_leaves_and_on_failure_ignores_clean_exits() {
        let (mut b, mut g, t0) = (Backoff::default(), Intensity::default(), Instant::now());
        assert_eq!(
            decide(&spec(Restart::Never), Ending::Failure, &mut b, &mut g, t0),
            Decision::Leave
        );
        assert_eq!(
            decide(&spec(Restart::OnFailure), Ending::Clean, &mut b, &mut g, t0),
            Decision::Leave
        );
        assert!(matches!(
            decide(
                &spec(Restart::OnFailure),
                Ending::Failure,
                &mut b,
                &mut g,
                t0
            ),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            decide(&spec(Restart::Always), Ending::Clean, &mut b, &mut g, t0),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn delay_doubles_per_consecutive_failure_up_to_the_cap() {
        let mut s = spec(Restart::Always);
        s.max_restarts = 100;
        let (mut b, mut g, t0) = (Backoff::default(), Intensity::default(), Instant::now());
        let delays: Vec<(u32, Duration)> = (0..7)
            .map(
                |i| match decide(&s, Ending::Failure, &mut b, &mut g, t0 + ms(i)) {
                    Decision::Restart { attempt, delay } => (attempt, delay),
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(
            delays,
            [
                (1, ms(100)),
                (2, ms(200)),
                (3, ms(400)),
                (4, ms(800)),
                (5, ms(1000)),
                (6, ms(1000)),
                (7, ms(1000))
            ]
        );
    }

    #[test]
    fn staying_up_after_ready_resets_the_backoff() {
        let mut s = spec(Restart::OnFailure);
        s.max_restarts = 100;
        let (mut b, mut g, t0) = (Backoff::default(), Intensity::default(), Instant::now());
        decide(&s, Ending::Failure, &mut b, &mut g, t0);
        decide(&s, Ending::Failure, &mut b, &mut g, t0);
        // Ready, but not for long enough: the backoff goes on.
        b.ready_at = Some(t0 + ms(1_000));
        assert_eq!(
            decide(&s, Ending::Failure, &mut b, &mut g, t0 + ms(2_000)),
            Decision::Restart {
                attempt: 3,
                delay: ms(400)
            }
        );
        // Ready and up for backoff_reset: it starts again from the first delay.
        b.ready_at = Some(t0 + ms(3_000));
        assert_eq!(
            decide(&s, Ending::Failure, &mut b, &mut g, t0 + ms(13_000)),
            Decision::Restart {
                attempt: 1,
                delay: ms(100)
            }
        );
    }

    #[test]
    fn more_respawns_than_the_intensity_in_the_window_fail_the_group() {
        let s = spec(Restart::Always);
        let (mut g, t0) = (Intensity::default(), Instant::now());
        // Five different workers of one group each fail once: five respawns are allowed.
        for i in 0..5 {
            let mut b = Backoff::default();
            assert!(matches!(
                decide(&s, Ending::Failure, &mut b, &mut g, t0 + ms(i)),
                Decision::Restart { .. }
            ));
        }
        let mut b = Backoff::default();
        assert_eq!(
            decide(&s, Ending::Failure, &mut b, &mut g, t0 + ms(10)),
            Decision::FailGroup { restarts: 5 }
        );
        // Once the window has passed, the old respawns no longer count.
        let mut g2 = g.clone();
        assert!(matches!(
            decide(&s, Ending::Failure, &mut b, &mut g2, t0 + ms(60_005)),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn the_memory_of_respawns_is_carried_as_it_is_and_ages_out_at_the_window() {
        let t0 = Instant::now();
        let times = vec![t0, t0 + ms(5)];
        let mut g = Intensity::from_times(times.clone());
        assert_eq!(g.times(), times);
        assert_eq!(g.recent(ms(60_000), t0 + ms(10)), 2);
        // A respawn exactly a window old no longer counts.
        assert_eq!(g.recent(ms(60_000), t0 + ms(60_000)), 1);
        assert_eq!(g.times(), [t0 + ms(5)]);
    }

    #[test]
    fn zero_max_restarts_fails_at_the_first_failure() {
        let mut s = spec(Restart::Always);
        s.max_restarts = 0;
        let (mut b, mut g) = (Backoff::default(), Intensity::default());
        assert_eq!(
            decide(&s, Ending::Failure, &mut b, &mut g, Instant::now()),
            Decision::FailGroup { restarts: 0 }
        );
    }
}
