//! The host hands its workers to its next version (API.md part 9): `handover_prepare` writes
//! the whole state into a memfd and leaves it and every descriptor the next image needs open
//! across `exec`; `adopt`, in the new image, rebuilds the supervisor from it. A host that `exec`s
//! keeps its pid, so the workers stay its children and the keeper (which watches that pid)
//! keeps watching: a host that dies between the two still takes every worker with it.
//!
//! Between prepare and the `exec` nothing changes: host calls fail, the monitor and the reaper
//! threads are stopped (an exit meanwhile stays unreaped, and so is seen by the next image),
//! nothing is spawned (the spawns in flight landed first). Changes in progress (rollouts,
//! stops, reloads, replacements, groups waiting for dependencies) cross (`changes.rs`).
//! `handover_abort` undoes it all (an `exec` that failed).
//!
//! `state.rs` is the format, `prepare.rs` writes it, `adopt.rs` reads it; `carry.rs` carries
//! captured output and the event fd.

mod adopt;
mod carry;
mod changes;
mod prepare;
mod state;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Weak};

use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::options::Options;
use crate::os::handover::{memfd_with, read_all, set_cloexec_raw, take_inherited};
use crate::os::{self, ChildState};
use crate::runtime::child::{self, Child};
use crate::runtime::engine::Shared;
use crate::runtime::lifeline::Lifeline;
use crate::runtime::listen::Listeners;
use crate::sync::lock;

use super::{start_monitor, Supervisor};
use state::{Clock, Handover, OptionsState, FORMAT};

/// The library's version, written into the state and named when one is refused.
const LIBRARY: &str = env!("CARGO_PKG_VERSION");

/// What every format keeps: enough to name the versions of a state this library cannot read.
#[derive(serde::Deserialize)]
struct Envelope {
    format: Option<u64>,
    library: Option<String>,
}

/// A prepared handover: the memfd, and the descriptors left open across `exec`.
pub(super) struct Prepared {
    memfd: OwnedFd,
    open: Vec<RawFd>,
}

impl Supervisor {
    /// Prepares handing this supervisor's workers to the next image of the host: stops all
    /// change, writes the whole state into a memfd, leaves it and every descriptor the next
    /// image needs open across `exec`, and returns the memfd's number, to pass to
    /// `Supervisor::adopt` in the new image (by convention in `MPSUP_HANDOVER_FD`). Until
    /// `handover_abort`, every other call fails with `Error::InvalidHandle`.
    ///
    /// Changes in progress (rollouts, stops, reloads, replacements, groups waiting for their
    /// dependencies) cross and go on in the next image (`changes.rs`); spawns in flight are
    /// waited for. `Error::NotReady` only when a spawn has not arrived within 2 s or a control
    /// line is still on its way (try again). Everything else crosses too: captured output
    /// (pipes, tails, rotating files), listen sockets (`reuse_port` too), the sd_notify socket,
    /// the workers' cgroups, and the event fd at its number if the host has it.
    pub fn handover_prepare(&self) -> Result<RawFd> {
        let _op = lock(&self.ops);
        {
            let mut engine = self.shared.lock();
            engine.core.check_open()?;
            engine.core.handed_over = true;
        }
        self.pause_threads();
        // Changes in progress (`changes.rs`): the spawns in flight land first, then the files
        // of captured output are written out (`carry.rs`).
        let fd = self.land_spawns().and_then(|_| {
            carry::flush_files(&self.shared);
            self.write_state()
        });
        let fd = fd.inspect_err(|_| {
            self.shared.lock().core.handed_over = false;
            let _ = self.resume_threads();
        })?;
        self.flush_logger();
        Ok(fd)
    }

    /// Ends the log writer once it has written every record (the next image starts its own
    /// from the same settings): none is lost at the `exec`.
    fn flush_logger(&self) {
        let logger = {
            let mut engine = self.shared.lock();
            lock(&engine.io.captures).logger = None;
            engine.io.out.logger.take()
        };
        // The last hold: dropping it waits for the writer, never under a lock.
        drop(logger);
    }

    /// Undoes `handover_prepare` (for an `exec` that failed): the memfd is closed, every
    /// descriptor is close-on-exec again, and the supervisor works on as before; what happened
    /// meanwhile (exits, lines) is handled now. `Error::InvalidArgument` when no handover is
    /// prepared.
    pub fn handover_abort(&self) -> Result<()> {
        let _op = lock(&self.ops);
        let Some(prepared) = lock(&self.handover).take() else {
            return Err(Error::InvalidArgument("no handover is prepared".into()));
        };
        for fd in prepared.open {
            let _ = set_cloexec_raw(fd, true);
        }
        drop(prepared.memfd);
        self.shared.lock().core.handed_over = false;
        self.resume_threads()?;
        // Its writer ended at the prepare: a new one, from the same settings.
        let logging = lock(&self.logging).clone();
        match logging {
            Some(json) => self.configure_logging_json(&json),
            None => Ok(()),
        }
    }

    /// In the host's new image: the supervisor that `handover_prepare` wrote into memfd `fd`,
    /// with the same workers (their pids, control sockets, listen sockets, output pipes and
    /// cgroups), and the event fd at its number if the host had it.
    /// The memfd is closed; every descriptor is close-on-exec again; exits that happened during
    /// the `exec` are handled now; event `supervisor_adopted`.
    ///
    /// A state written by a library that writes another format is refused with
    /// `Error::InvalidArgument` naming both versions, and its workers are killed (as at the
    /// host's death), never left without a supervisor.
    pub fn adopt(fd: RawFd) -> Result<Supervisor> {
        let memfd = take_inherited(fd)
            .map_err(|e| Error::InvalidArgument(format!("handover memfd {fd}: {e}")))?;
        let bytes = read_all(&memfd).map_err(|e| Error::os("reading the handover memfd", e))?;
        drop(memfd);
        // The version first (a state of another format may not read as this one's); the
        // whole text as a `Value` only for a state that is refused.
        let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidArgument(format!("handover memfd {fd}: not a state: {e}"))
        })?;
        let refuse = |close: bool| {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                adopt::refuse(&value, close);
            }
        };
        if envelope.format != Some(FORMAT as u64) {
            refuse(true);
            let library = envelope.library.as_deref().unwrap_or("?");
            let format = envelope
                .format
                .map_or("none".to_string(), |f| f.to_string());
            return Err(Error::InvalidArgument(format!(
                "handover: the state was written by mpsupervisor {library} (state format \
                 {format}); this is mpsupervisor {LIBRARY} (state format {FORMAT}), which cannot \
                 read it: its workers were killed"
            )));
        }
        let state: Handover = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                refuse(true);
                return Err(Error::InvalidArgument(format!(
                    "handover: a state of mpsupervisor {LIBRARY} that does not read: {e}; its \
                     workers were killed"
                )));
            }
        };
        Self::rebuild(state).inspect_err(|_| refuse(false))
    }

    /// The supervisor of a state of this format.
    fn rebuild(state: Handover) -> Result<Supervisor> {
        let take = |fd: RawFd| take_inherited(fd).map_err(|e| Error::os("handover", e));
        let keeper_sock = state.lifeline.keeper.map(|(_, fd)| take(fd)).transpose()?;
        let lifeline = Lifeline::resume(state.lifeline, keeper_sock);
        let listeners = Listeners::default();
        listeners
            .import(state.listen, take_inherited)
            .map_err(|e| Error::os("handover: listen sockets", e))?;
        let sup = Supervisor::assemble(options_of(&state.options), lifeline, listeners, None)?;
        if let Some(json) = &state.logging {
            sup.configure_logging_json(json)?;
        }
        let clock = Clock::reading(state.written_ns);
        let mut children = Vec::new();
        for p in &state.procs {
            let mut c = Child::new(p.pid, clock.instant(0), 0);
            c.pidfd = p.pidfd.map(take).transpose()?;
            c.control = p.control.map(take).transpose()?;
            children.push((p.key, c));
        }
        let mut engine = sup.shared.lock();
        if let Some((fd, address)) = state.notify {
            let fd = take(fd)?;
            engine
                .io
                .notify
                .resume(fd, address)
                .map_err(|e| Error::os("handover: the sd_notify socket", e))?;
        }
        carry::resume(&mut engine, state.outputs, state.event_fd)?;
        adopt::restore_core(&mut engine.core, state.core, &clock)?;
        let workers = children.len();
        let mut exited_meanwhile = 0;
        for (key, c) in children {
            if os::peek_exit(c.pid) != ChildState::Running {
                exited_meanwhile += 1;
            }
            let pid = c.pid;
            engine.io.register(key, c);
            let spec = engine.core.workers.get(&key).map(|w| &w.plan.spec);
            if let Some(spec) = spec.filter(|s| s.readiness == crate::config::Readiness::SdNotify) {
                let access = spec.notify_access;
                engine.io.notify.track(key, pid, access);
            }
        }
        engine.core.events.push(EventKind::SupervisorAdopted {
            workers,
            exited_meanwhile,
        });
        engine.core.resume_probes(std::time::Instant::now());
        // Letting go settles: the probe jobs go to the probe thread.
        drop(engine);
        for pid in state.orphans {
            child::orphan(pid);
        }
        Ok(sup)
    }

    /// Stops the monitor, the reaper (which first finishes the exits handed to it) and the probe
    /// thread (whose exec probes are killed and reaped: no probe crosses the `exec`).
    fn pause_threads(&self) {
        use std::sync::atomic::Ordering;
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.to_monitor.wake.set();
        if let Some(handle) = lock(&self.monitor).take() {
            let _ = handle.join();
        }
        self.reaper.shutdown();
        // Not under the engine's lock, which the probe thread may be waiting for.
        let prober = Arc::clone(&self.shared.lock().io.prober);
        prober.pause();
    }

    /// Starts the reaper and the monitor again, and probes every probed worker again.
    fn resume_threads(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        self.shared.shutdown.store(false, Ordering::Release);
        let told: Weak<Shared> = Arc::downgrade(&self.shared);
        self.reaper
            .start(told)
            .map_err(|e| Error::os("spawning the reaper thread", e))?;
        *lock(&self.monitor) = Some(start_monitor(&self.shared)?);
        // Letting go of the lock settles: the probe jobs go to the probe thread.
        self.shared
            .lock()
            .core
            .resume_probes(std::time::Instant::now());
        Ok(())
    }

    /// With the threads stopped: the state into a memfd, and every descriptor it names left
    /// open across `exec`. Returns the memfd's number.
    fn write_state(&self) -> Result<RawFd> {
        let engine = self.shared.lock();
        // Changes in progress (`changes.rs`): none may be a spawn in flight.
        let outcomes_pending = !lock(&self.shared.to_monitor.outcomes).is_empty();
        changes::check_landed(&engine, outcomes_pending)?;
        let procs = engine
            .io
            .export_procs()
            .map_err(|e| Error::NotReady(format!("cannot hand over while {e}")))?;
        let (outputs, event_fd) = carry::export(&engine);
        let (clock, written_ns) = Clock::writing();
        let state = Handover {
            format: FORMAT,
            library: LIBRARY.to_string(),
            written_ns,
            pids: procs.iter().map(|p| p.pid).collect(),
            orphans: child::orphans(),
            options: options_state(&self.options),
            logging: lock(&self.logging).clone(),
            core: prepare::core_state(&engine.core, &clock),
            lifeline: self.lifeline.export(),
            notify: engine.io.notify.export(),
            procs,
            listen: self.listeners.export(),
            outputs,
            event_fd,
        };
        drop(engine);
        let mut open: Vec<RawFd> = state.lifeline.keeper.iter().map(|k| k.1).collect();
        open.extend(state.notify.iter().map(|n| n.0));
        for p in &state.procs {
            open.extend(p.pidfd.iter().chain(p.control.iter()));
        }
        for g in &state.listen {
            open.extend(g.sockets.iter().map(|s| s.fd));
        }
        open.extend(carry::descriptors(&state));
        let bytes = serde_json::to_vec(&state)
            .map_err(|e| Error::InvalidArgument(format!("handover state: {e}")))?;
        let memfd = memfd_with(&bytes).map_err(|e| Error::os("memfd_create", e))?;
        let cleared = open
            .iter()
            .chain(Some(&memfd.as_raw_fd()))
            .try_for_each(|&fd| set_cloexec_raw(fd, false));
        if let Err(e) = cleared {
            for &fd in &open {
                let _ = set_cloexec_raw(fd, true);
            }
            return Err(Error::os("fcntl(F_SETFD)", e));
        }
        let raw = memfd.as_raw_fd();
        *lock(&self.handover) = Some(Prepared { memfd, open });
        Ok(raw)
    }
}

fn options_state(o: &Options) -> OptionsState {
    OptionsState {
        event_capacity: o.event_capacity,
        use_pidfd: o.use_pidfd,
        keeper: o.keeper,
        cgroup: o.cgroup,
        spawn_threads: o.spawn_threads,
        private_fd_table: o.private_fd_table,
    }
}

fn options_of(s: &OptionsState) -> Options {
    Options {
        event_capacity: s.event_capacity,
        use_pidfd: s.use_pidfd,
        keeper: s.keeper,
        cgroup: s.cgroup,
        spawn_threads: s.spawn_threads,
        private_fd_table: s.private_fd_table,
        ..Options::default()
    }
}
