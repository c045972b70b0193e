//! Starting groups: the plans, the listen sockets, one batch of spawns adopted together.

use super::*;

impl Supervisor {
    /// Starts the named groups in order, force-terminating any of their running workers first,
    /// with the groups they depend on (`depends_on`) that are not started. Returns once every
    /// worker of the groups that can start now is spawned (on the spawner's threads, in
    /// parallel); the others wait for their dependencies and start when those hold.
    pub fn start_groups(&self, names: &[&str]) -> Result<()> {
        let _op = lock(&self.ops);
        let specs = {
            let engine = self.shared.lock();
            engine.core.check_open()?;
            let all = engine.core.with_dependencies(names)?;
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            engine.core.specs_of(&all)?
        };
        let notify = self.notify_socket(&specs)?;
        let plans = prepare_all(&specs, notify.as_deref(), self.lifeline.has_shim())?;
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        self.check_shim(&specs)?;
        self.lifeline
            .check_limits(&specs)
            .map_err(Error::Unsupported)?;
        // A group started again keeps the sockets it has; the others get theirs now.
        let opened = self
            .listeners
            .open(&specs)
            .map_err(|e| Error::os("opening listen sockets", e))?;
        // The running workers of every named group go first (the original's restart).
        if let Err(e) = self.force_kill(Some(&names)) {
            self.listeners.close(&opened);
            return Err(e);
        }
        // A group whose dependencies are all there (none of them among those started now)
        // starts at once; the others wait.
        let (jobs, later) = {
            let mut engine = self.shared.lock();
            let (now, later): (Vec<_>, Vec<_>) = plans.into_iter().partition(|p| {
                p.spec.depends_on.keys().all(|d| !names.contains(d))
                    && engine.core.dependencies_hold(&p.spec.name)
            });
            (engine.core.begin_start(now), later)
        };
        let order: Vec<Key> = jobs.iter().map(|j| j.key).collect();
        let (tx, rx) = mpsc::channel();
        let carried = self.listeners.carried(names.iter().map(String::as_str));
        self.shared.spawner.submit(jobs, Reply::Batch(tx), carried);
        // Every job answers (a panic in the spawner too); a lost one ends the loop early.
        let outcomes: HashMap<Key, SpawnOutcome> = rx.iter().map(|o| (o.key, o)).collect();
        let (adopted, failure) = self.adopt_all(&names, &order, outcomes, later)?;
        if let Some(e) = failure {
            let keys = self.shared.lock().core.begin_force_keys(&adopted);
            let _ = self.wait_killed(&keys);
            self.listeners.close(&opened);
            return Err(e);
        }
        Ok(())
    }

    /// Listen sockets need the exec shim, which sets `LISTEN_PID`.
    fn check_shim(&self, specs: &[GroupSpec]) -> Result<()> {
        if specs.iter().all(|s| s.listen.is_empty()) || self.lifeline.has_shim() {
            return Ok(());
        }
        Err(Error::Spawn {
            context: "listen sockets".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "setting LISTEN_PID needs the {} helper next to the library",
                    crate::runtime::lifeline::SHIM_NAME
                ),
            ),
        })
    }

    /// Adopts the spawned workers of a start (`order`: its jobs), all under one lock together
    /// with the `supervisor_start_groups` event, so no event of the new workers comes before it;
    /// then the groups of `later` wait for their dependencies.
    /// Returns those adopted, and the first failure (whose worker is removed).
    fn adopt_all(
        &self,
        names: &[String],
        order: &[Key],
        mut outcomes: HashMap<Key, SpawnOutcome>,
        later: Vec<Arc<Plan>>,
    ) -> Result<(Vec<Key>, Option<Error>)> {
        let mut adopted = Vec::with_capacity(order.len());
        let mut failure = None;
        let mut engine = self.shared.lock();
        if engine.core.closed {
            // Freed meanwhile: dropping the outcomes kills their children.
            for &key in order {
                engine.core.remove(key);
            }
            return Err(Error::InvalidHandle("the supervisor has been freed".into()));
        }
        let now = Instant::now();
        for &key in order {
            match outcomes.remove(&key) {
                Some(SpawnOutcome {
                    result: Err(source),
                    ..
                }) => {
                    if let Some(w) = engine.core.remove(key) {
                        failure.get_or_insert(Error::Spawn {
                            context: format!("group '{}' worker '{}'", w.group, w.id),
                            source,
                        });
                    }
                }
                Some(outcome) => {
                    engine.take_outcome(outcome, now);
                    adopted.push(key);
                }
                None => {
                    engine.core.remove(key);
                    failure.get_or_insert(Error::Spawn {
                        context: "starting workers".into(),
                        source: std::io::Error::other("the spawner gave no answer"),
                    });
                }
            }
        }
        engine
            .core
            .finish_start(names, adopted.len(), failure.is_none());
        if failure.is_none() {
            engine.core.begin_waiting(later);
        }
        Ok((adopted, failure))
    }

    /// The sd_notify socket's address when one of `specs` needs it (made the first time).
    pub(super) fn notify_socket(&self, specs: &[GroupSpec]) -> Result<Option<String>> {
        if !specs
            .iter()
            .any(|s| s.readiness == config::Readiness::SdNotify)
        {
            return Ok(None);
        }
        let mut engine = self.shared.lock();
        engine
            .io
            .notify
            .open()
            .map(Some)
            .map_err(|e| Error::os("making the sd_notify socket", e))
    }
}

/// The plans of `specs`: environment, program, and the attributes the exec shim sets (names
/// resolved, privilege checked: `has_shim` says whether the shim is there to set them); every
/// `env_files` entry without `-` is read once here, so a missing one fails the start.
pub(super) fn prepare_all(
    specs: &[GroupSpec],
    notify: Option<&str>,
    has_shim: bool,
) -> Result<Vec<Arc<Plan>>> {
    specs
        .iter()
        .map(|spec| {
            let attrs = crate::runtime::identity::resolve(spec)?;
            if let (Some(key), false) = (attrs.first_key(), has_shim) {
                return Err(Error::Unsupported(format!(
                    "group '{}': {key}: needs the {} helper next to the library, which is missing",
                    spec.name,
                    crate::runtime::lifeline::SHIM_NAME
                )));
            }
            // Named after the first worker, which is the one that could not be spawned.
            let spawn_error = |source| Error::Spawn {
                context: format!("group '{}' worker '{}#1'", spec.name, spec.name),
                source,
            };
            for file in &spec.env_files {
                crate::env_file::read(file).map_err(spawn_error)?;
            }
            let mut plan = plan::prepare(spec, notify).map_err(spawn_error)?;
            plan.attrs = attrs;
            Ok(Arc::new(plan))
        })
        .collect()
}
