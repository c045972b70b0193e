//! What the results of probes decide (API.md part 8), as Kubernetes defines it: consecutive
//! successes and failures against `success_threshold` and `failure_threshold`. A readiness
//! probe makes a `"probe"` worker ready, and any ready worker unready (and ready again); a
//! liveness probe kills. The probe thread (`runtime/probes/`) runs the probes and reports here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Placeholders, Probe, Readiness, Target};
use crate::core::effects::Effect;
use crate::core::plan::Plan;
use crate::core::state::State;
use crate::core::worker::{Key, Phase};
use crate::events::{EventKind, ExitReason, ProbeKind};

/// One probe of one worker process, for the probe thread: its target with the placeholders
/// substituted (or why it has none), and its timing.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    pub which: ProbeKind,
    pub target: Result<Target, String>,
    pub period: Duration,
    pub timeout: Duration,
    /// When the first run is due.
    pub first_at: Instant,
}

/// The probes of one worker process, handed to the probe thread when it is adopted.
#[derive(Debug, Clone)]
pub struct ProbeJob {
    pub key: Key,
    /// Its plan: an exec probe runs with the worker's environment and working directory.
    pub plan: Arc<Plan>,
    pub probes: Vec<ProbeRun>,
}

/// Consecutive results of one probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Streak {
    pub successes: u32,
    pub failures: u32,
}

/// What the probes of a worker's current process have shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeState {
    pub readiness: Streak,
    pub liveness: Streak,
    /// Ready, but its readiness probe has failed `failure_threshold` times since.
    pub unready: bool,
}

impl ProbeState {
    fn streak(&mut self, which: ProbeKind) -> &mut Streak {
        match which {
            ProbeKind::Readiness => &mut self.readiness,
            ProbeKind::Liveness => &mut self.liveness,
        }
    }
}

/// The probe job of a process `pid` of worker `index` of `plan`, None when its group has no
/// probe.
pub(crate) fn job(
    plan: &Arc<Plan>,
    key: Key,
    index: u32,
    pid: i32,
    at: Instant,
) -> Option<ProbeJob> {
    let spec = &plan.spec;
    let places = Placeholders::of(spec, index, Some(pid));
    let run = |which, p: &Probe| ProbeRun {
        which,
        target: p.target(&places),
        period: Duration::from_millis(p.period_ms),
        timeout: Duration::from_millis(p.timeout_ms),
        first_at: at + Duration::from_millis(p.initial_delay_ms),
    };
    let probes: Vec<ProbeRun> = [
        (ProbeKind::Readiness, &spec.readiness_probe),
        (ProbeKind::Liveness, &spec.liveness_probe),
    ]
    .into_iter()
    .filter_map(|(which, p)| p.as_ref().map(|p| run(which, p)))
    .collect();
    (!probes.is_empty()).then(|| ProbeJob {
        key,
        plan: Arc::clone(plan),
        probes,
    })
}

impl State {
    /// Hands the probes of a just adopted process to the probe thread.
    pub(crate) fn start_probes(&mut self, key: Key, at: Instant) {
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        w.probes = ProbeState::default();
        // Between a handover's prepare and its end no probe runs: `resume_probes` submits this
        // worker's with every other's once the supervisor resumes (adopted or aborted).
        if self.handed_over {
            return;
        }
        if let Some(job) = job(&w.plan, key, w.index, w.pid, at) {
            self.effect(Effect::Probe(job));
        }
    }

    /// After a handover (or its abort): every live worker process is probed again, its first
    /// runs due now (its initial delay has passed), what its probes showed so far kept.
    pub fn resume_probes(&mut self, now: Instant) {
        let mut jobs = Vec::new();
        for (&key, w) in &self.workers {
            if !matches!(w.phase, Phase::Starting | Phase::Ready { .. }) || w.pid <= 0 {
                continue;
            }
            if let Some(mut job) = job(&w.plan, key, w.index, w.pid, now) {
                for run in &mut job.probes {
                    run.first_at = now;
                }
                jobs.push(job);
            }
        }
        for job in jobs {
            self.effect(Effect::Probe(job));
        }
    }

    /// One run of probe `which` of worker `key` ended: `Err` says why it failed. Returns
    /// whether the worker's process is still to be probed (it runs and was not asked to stop).
    pub fn probe_result(
        &mut self,
        key: Key,
        which: ProbeKind,
        result: Result<(), String>,
        now: Instant,
    ) -> bool {
        let Some(w) = self.workers.get_mut(&key) else {
            return false;
        };
        if !matches!(w.phase, Phase::Starting | Phase::Ready { .. }) {
            return false;
        }
        let spec = &w.plan.spec;
        let Some(probe) = (match which {
            ProbeKind::Readiness => &spec.readiness_probe,
            ProbeKind::Liveness => &spec.liveness_probe,
        }) else {
            return false;
        };
        let (needed_successes, threshold) = (probe.success_threshold, probe.failure_threshold);
        let streak = w.probes.streak(which);
        let detail = match result {
            Ok(()) => {
                streak.successes = streak.successes.saturating_add(1);
                streak.failures = 0;
                if which == ProbeKind::Readiness && streak.successes >= needed_successes {
                    self.readiness_passed(key, now);
                }
                return true;
            }
            Err(detail) => detail,
        };
        streak.successes = 0;
        streak.failures = streak.failures.saturating_add(1);
        let failures = streak.failures;
        // The first failure changes the probe's state; the threshold is crossed once.
        if failures == 1 || failures == threshold {
            self.events.push(EventKind::ProbeFailed {
                group_name: w.group.clone(),
                worker_id: w.id.clone(),
                pid: w.pid,
                generation: w.generation,
                probe: which,
                detail,
                failures,
            });
        }
        if failures >= threshold {
            match which {
                ProbeKind::Readiness => self.readiness_failed(key),
                ProbeKind::Liveness => self.fail_for(key, ExitReason::LivenessFailed),
            }
        }
        true
    }

    /// The readiness probe passed `success_threshold` times in a row: a `"probe"` worker
    /// becomes ready, an unready one ready again.
    fn readiness_passed(&mut self, key: Key, now: Instant) {
        let w = self.workers.get_mut(&key).expect("looked up by the caller");
        match w.phase {
            Phase::Starting if w.readiness == Readiness::Probe => self.mark_ready(key, now),
            Phase::Ready { .. } if w.probes.unready => {
                w.probes.unready = false;
                let event = w.ready_event();
                self.events.push(event);
            }
            _ => {}
        }
    }

    /// The readiness probe of a ready worker reached `failure_threshold`: it is unready.
    fn readiness_failed(&mut self, key: Key) {
        let w = self.workers.get_mut(&key).expect("looked up by the caller");
        if !matches!(w.phase, Phase::Ready { .. }) || w.probes.unready {
            return;
        }
        w.probes.unready = true;
        let event = EventKind::WorkerUnready {
            group_name: w.group.clone(),
            worker_id: w.id.clone(),
            pid: w.pid,
            generation: w.generation,
        };
        self.events.push(event);
    }
}
