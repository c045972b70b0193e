//! Dependencies between groups (API.md part 8) in the core: groups waiting for theirs, started
//! when every condition holds, failed when one of them fails; a group's completion; the order
//! of stops; `on_dependency_restart`'s `"stop"` and `"restart"`.
//!
//! `settle` calls `advance_dependencies` after every transition, so a waiting group starts in
//! the same lock hold that made its last condition true.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{DependsCondition, OnDependencyRestart};
use crate::core::effects::Effect;
use crate::core::group::{Group, RolloutOptions};
use crate::core::plan::Plan;
use crate::core::state::{Readiness, State};
use crate::core::worker::{Phase, Worker};
use crate::error::Result;
use crate::events::{EventKind, ExitReason, GroupFailReason};

/// Where a dependency stands for one condition.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    Holds,
    Pending,
    Failed,
}

/// Exited 0 unasked and was left so by its restart policy.
fn clean_exit(w: &Worker) -> bool {
    w.phase == Phase::Failed
        && w.last_exit
            .as_ref()
            .is_some_and(|l| l.reason == ExitReason::Exited && l.exit_code == Some(0))
}

impl State {
    /// The named groups and, transitively, what they depend on that is neither started nor
    /// waiting already (a running dependency is used as it is, not restarted); dependencies
    /// before their dependents.
    pub fn with_dependencies(&self, names: &[&str]) -> Result<Vec<String>> {
        self.specs_of(names)?;
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for &name in names {
            self.visit(name, true, &mut seen, &mut order);
        }
        Ok(order)
    }

    fn visit(&self, name: &str, named: bool, seen: &mut BTreeSet<String>, out: &mut Vec<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        let Some(spec) = self.config.get(name) else {
            return;
        };
        if !named && self.dependency_running(name) {
            return;
        }
        for dep in spec.depends_on.keys() {
            self.visit(dep, false, seen, out);
        }
        out.push(name.to_string());
    }

    fn dependency_running(&self, name: &str) -> bool {
        self.waiting.contains_key(name)
            || self
                .groups
                .get(name)
                .is_some_and(|g| g.started && !g.failed && g.dependency_failed.is_none())
    }

    /// Whether every dependency of `name` holds now (true for a group without any).
    pub fn dependencies_hold(&self, name: &str) -> bool {
        self.config.get(name).is_none_or(|s| {
            s.depends_on
                .iter()
                .all(|(d, &c)| self.standing(d, c) == Standing::Holds)
        })
    }

    /// Makes the given groups wait for their dependencies (`group_waiting`); they start in a
    /// later `advance_dependencies` (perhaps the next one).
    pub fn begin_waiting(&mut self, plans: Vec<Arc<Plan>>) {
        for plan in plans {
            let name = plan.spec.name.clone();
            let waiting_for = self.waiting_for_deps(&plan.spec.depends_on);
            self.waiting.insert(name.clone(), plan);
            self.events.push(EventKind::GroupWaiting {
                group_name: name,
                waiting_for,
            });
        }
    }

    /// The dependencies of a waiting group whose conditions do not hold yet (empty for any
    /// other group).
    pub fn waiting_for(&self, name: &str) -> Vec<String> {
        self.waiting
            .get(name)
            .map(|p| self.waiting_for_deps(&p.spec.depends_on))
            .unwrap_or_default()
    }

    fn waiting_for_deps(&self, deps: &BTreeMap<String, DependsCondition>) -> Vec<String> {
        deps.iter()
            .filter(|(d, &c)| self.standing(d, c) != Standing::Holds)
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// Starts every waiting group whose conditions all hold, and fails every one with a failed
    /// dependency, until nothing changes.
    pub fn advance_dependencies(&mut self) {
        while !self.waiting.is_empty() {
            let mut changed = false;
            let names: Vec<String> = self.waiting.keys().cloned().collect();
            for name in names {
                let deps = self.waiting[&name].spec.depends_on.clone();
                let failed = deps
                    .iter()
                    .find(|(d, &c)| self.standing(d, c) == Standing::Failed);
                if let Some((dep, _)) = failed {
                    let plan = self.waiting.remove(&name).expect("listed");
                    self.fail_dependent(plan, dep.clone());
                    changed = true;
                } else if self.waiting_for_deps(&deps).is_empty() {
                    let plan = self.waiting.remove(&name).expect("listed");
                    for job in self.begin_start(vec![plan]) {
                        self.effect(Effect::Spawn(job));
                    }
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// A waiting group whose dependency failed: failed itself, without workers, until it is
    /// started again.
    fn fail_dependent(&mut self, plan: Arc<Plan>, dependency: String) {
        let name = plan.spec.name.clone();
        let generation = self.groups.get(&name).map_or(0, |g| g.generation);
        let mut group = Group::new(plan, generation);
        group.started = false;
        group.failed = true;
        group.dependency_failed = Some(dependency.clone());
        self.groups.insert(name.clone(), group);
        self.events.push(EventKind::GroupFailed {
            group_name: name,
            restarts: 0,
            window_ms: 0,
            reason: GroupFailReason::DependencyFailed,
            dependency: Some(dependency),
        });
    }

    /// Where dependency `dep` stands for condition `cond`. A completed group satisfies every
    /// condition; a worker left failed (not a clean exit) fails every one.
    fn standing(&self, dep: &str, cond: DependsCondition) -> Standing {
        if self.waiting.contains_key(dep) {
            return Standing::Pending;
        }
        let Some(g) = self.groups.get(dep) else {
            return Standing::Pending;
        };
        if g.failed || g.dependency_failed.is_some() {
            return Standing::Failed;
        }
        if g.completed {
            return Standing::Holds;
        }
        if !g.started {
            return Standing::Pending;
        }
        let workers: Vec<&Worker> = g
            .keys
            .iter()
            .filter_map(|(_, k)| self.workers.get(k))
            .collect();
        if workers
            .iter()
            .any(|w| w.phase == Phase::Failed && !clean_exit(w))
        {
            return Standing::Failed;
        }
        let holds = match cond {
            DependsCondition::Started => {
                !workers.is_empty() && workers.iter().all(|w| w.phase != Phase::Spawning)
            }
            DependsCondition::Ready => {
                g.target > 0 && workers.iter().filter(|w| w.ready()).count() >= g.target as usize
            }
            DependsCondition::Completed => false,
        };
        if holds {
            Standing::Holds
        } else {
            Standing::Pending
        }
    }

    /// A worker of `name` exited 0 and stays so: once every worker has, the group is completed
    /// (`group_completed`), and counts as ready.
    pub(crate) fn check_completed(&mut self, name: &str) {
        let Some(g) = self.groups.get(name) else {
            return;
        };
        if !g.started || g.failed || g.completed || g.running_rollout().is_some() {
            return;
        }
        // Only a group another waits for as "completed" ends on purpose; for any other, a
        // worker that ended (with 0 too) stays a failure for `wait_ready`, as without
        // dependencies.
        let awaited = self
            .config
            .values()
            .any(|s| s.depends_on.get(name) == Some(&DependsCondition::Completed));
        if !awaited {
            return;
        }
        let all_clean = g.keys.len() == g.target as usize
            && g.keys
                .iter()
                .all(|(_, k)| self.workers.get(k).is_some_and(clean_exit));
        if !all_clean {
            return;
        }
        let workers = g.target;
        self.groups.get_mut(name).expect("checked").completed = true;
        self.events.push(EventKind::GroupCompleted {
            group_name: name.to_string(),
            workers,
        });
    }

    /// What dependencies add to `wait_ready`'s answer: a group failed for its dependency fails
    /// it, a waiting group keeps it pending.
    pub(crate) fn dependency_readiness(&self) -> Option<Readiness> {
        if self.groups.values().any(|g| g.dependency_failed.is_some()) {
            return Some(Readiness::Failed);
        }
        (!self.waiting.is_empty()).then_some(Readiness::Pending)
    }

    /// Whether worker `w` belongs to a completed group (its clean exit is no failure).
    pub(crate) fn in_completed_group(&self, w: &Worker) -> bool {
        self.groups.get(&w.group).is_some_and(|g| g.completed)
    }

    /// The named groups (every group when `None`) stop no longer waiting.
    pub(crate) fn forget_waiting(&mut self, names: Option<&[String]>) {
        match names {
            None => self.waiting.clear(),
            Some(names) => {
                for n in names {
                    self.waiting.remove(n);
                }
            }
        }
    }

    /// The stages of a stop of `names` (every group when `None`): each stage holds the groups
    /// nothing left to stop depends on, so dependents stop before their dependencies.
    pub fn stop_stages(&self, names: Option<&[String]>) -> Vec<Vec<String>> {
        let mut left: BTreeSet<String> = match names {
            Some(n) => n.iter().cloned().collect(),
            None => self
                .groups
                .keys()
                .chain(self.waiting.keys())
                .cloned()
                .collect(),
        };
        let deps_of = |n: &str| self.config.get(n).map(|s| &s.depends_on);
        let mut stages = Vec::new();
        while !left.is_empty() {
            let stage: Vec<String> = left
                .iter()
                .filter(|n| {
                    !left
                        .iter()
                        .any(|m| deps_of(m).is_some_and(|d| d.contains_key(n.as_str())))
                })
                .cloned()
                .collect();
            // No cycle passes the configuration's checks; if one did, stop the rest together.
            let stage = if stage.is_empty() {
                left.iter().cloned().collect()
            } else {
                stage
            };
            for n in &stage {
                left.remove(n);
            }
            stages.push(stage);
        }
        stages
    }

    /// The started groups with `on_dependency_restart: on` that depend on `name` as `"started"`
    /// or `"ready"` (a `"completed"` dependency is expected to end: its end binds nothing).
    fn bound_to(&self, name: &str, on: OnDependencyRestart) -> Vec<String> {
        self.config
            .iter()
            .filter(|(_, s)| {
                s.on_dependency_restart == on
                    && s.depends_on
                        .get(name)
                        .is_some_and(|&c| c != DependsCondition::Completed)
            })
            .map(|(n, _)| n.clone())
            .filter(|n| self.groups.get(n).is_some_and(|g| g.started))
            .collect()
    }

    /// A worker of `name` ended unasked: each started group that depends on it with
    /// `on_dependency_restart: "stop"` stops (gracefully, killed after its `stop_timeout_ms`);
    /// each with `"restart"` is marked, to be rolled out once `name` is ready again.
    pub(crate) fn dependency_ended(&mut self, name: &str, now: Instant) {
        for dependent in self.bound_to(name, OnDependencyRestart::Stop) {
            self.forget_waiting(Some(std::slice::from_ref(&dependent)));
            if let Some(g) = self.groups.get_mut(&dependent) {
                g.started = false;
                g.rollout = None;
                g.restart_pending = false;
            }
            let keys = self.keys_of(&dependent);
            self.forget_dead(&keys);
            for key in self.keys_of(&dependent) {
                self.stop_for_good(key, now);
            }
            // Bound to a group that stops: its own bound dependents stop too, as in systemd.
            self.dependency_ended(&dependent, now);
        }
        self.mark_for_restart(name);
    }

    /// Marks the groups restarted with `name` (`"restart"`), and theirs in turn: each is rolled
    /// out after what it depends on, as OTP's `rest_for_one` restarts the children after one.
    fn mark_for_restart(&mut self, name: &str) {
        for dependent in self.bound_to(name, OnDependencyRestart::Restart) {
            if let Some(g) = self.groups.get_mut(&dependent) {
                g.restart_pending = true;
            }
            self.mark_for_restart(&dependent);
        }
    }

    /// Whether a group waits to be rolled out for a dependency's restart.
    pub fn dependency_restarts_pending(&self) -> bool {
        self.groups.values().any(|g| g.restart_pending)
    }

    /// Rolls out (as `restart_groups` with its default options, to the group's running plan)
    /// each marked group whose dependencies all hold again, none of them marked or being rolled
    /// out itself; a marked group that stopped or failed is no longer marked.
    pub fn advance_dependency_restarts(&mut self, now: Instant) {
        let marked: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.restart_pending)
            .map(|(n, _)| n.clone())
            .collect();
        for name in marked {
            let g = &self.groups[&name];
            let gone = !g.started || g.failed;
            if !gone && (g.running_rollout().is_some() || !self.restart_may_begin(&name)) {
                continue;
            }
            let plan = Arc::clone(&g.plan);
            self.groups.get_mut(&name).expect("listed").restart_pending = false;
            if !gone {
                // Checked above: started, not failed, not being rolled out; cannot fail.
                let _ = self.begin_rollout(&name, plan, RolloutOptions::default(), now);
            }
        }
    }

    /// Every dependency of `name` holds, and none is marked or being rolled out.
    fn restart_may_begin(&self, name: &str) -> bool {
        let deps = self.config.get(name).map(|s| &s.depends_on);
        let settled = deps.into_iter().flatten().all(|(d, _)| {
            self.groups
                .get(d)
                .is_none_or(|g| !g.restart_pending && g.running_rollout().is_none())
        });
        settled && self.dependencies_hold(name)
    }
}

#[cfg(test)]
#[path = "depends_tests.rs"]
mod tests;
