//! The cgroup limits of a group's workers: which hierarchy holds each controller on this host
//! (cgroup v2 where the unified hierarchy has it, else its v1 hierarchy, as on hybrid hosts),
//! and which files of a worker's cgroup say each limit there.
//!
//! In cgroup v2 a controller reaches a cgroup only when every ancestor below the one that has it
//! lists it in `cgroup.subtree_control`; the library writes `+memory` (and so on) to its own
//! cgroup's, its supervisor cgroup's and each group cgroup's. The kernel refuses the first where
//! the host's own cgroup holds processes and is not the root (the "no internal processes" rule):
//! that host is told `Unsupported`, and can run itself in a leaf of a delegated subtree.

use std::path::{Path, PathBuf};

use crate::config::{CpuMax, Limits, MemorySize};
use crate::os::cgroup::{self, Place};
use crate::status::LimitsMechanism;

/// The three controllers the limit keys use.
pub(super) const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Where each controller is on this host (found once, when the supervisor is made).
#[derive(Debug, Clone, Default)]
pub(super) struct Controllers {
    memory: Option<Place>,
    pids: Option<Place>,
    cpu: Option<Place>,
}

impl Controllers {
    pub(super) fn find() -> Controllers {
        Controllers {
            memory: cgroup::controller_place("memory"),
            pids: cgroup::controller_place("pids"),
            cpu: cgroup::controller_place("cpu"),
        }
    }

    /// This process's cgroup in the memory controller's hierarchy, where there is one.
    pub(super) fn memory_dir(&self) -> Option<&Path> {
        self.memory.as_ref().map(Place::dir)
    }

    /// The places of the controllers found, each once.
    pub(super) fn places(&self) -> Vec<&Place> {
        let mut out: Vec<&Place> = Vec::new();
        for place in CONTROLLERS.iter().filter_map(|c| self.of(c)) {
            if !out.contains(&place) {
                out.push(place);
            }
        }
        out
    }

    fn of(&self, controller: &str) -> Option<&Place> {
        match controller {
            "memory" => self.memory.as_ref(),
            "pids" => self.pids.as_ref(),
            _ => self.cpu.as_ref(),
        }
    }

    /// What `guarantees.limits` says: the hierarchy whose cgroups this process may make (v2
    /// only when all three controllers are there).
    pub(super) fn mechanism(&self) -> LimitsMechanism {
        let writable: Vec<&Place> = CONTROLLERS
            .iter()
            .filter_map(|c| self.of(c))
            .filter(|p| nix::unistd::access(p.dir(), nix::unistd::AccessFlags::W_OK).is_ok())
            .collect();
        if writable.is_empty() {
            LimitsMechanism::None
        } else if writable.len() == CONTROLLERS.len()
            && writable.iter().all(|p| matches!(p, Place::V2(_)))
        {
            LimitsMechanism::Cgroup2
        } else {
            LimitsMechanism::Cgroup1
        }
    }

    /// The cgroup files of `limits`, per hierarchy: each controller's place with the files to
    /// write in a worker's cgroup there, in order; or the key that cannot be had and why.
    pub(super) fn files(&self, limits: &Limits) -> Result<Vec<Setting>, (String, String)> {
        let mut out: Vec<Setting> = Vec::new();
        for (key, controller, value) in wanted(limits) {
            let place = self.of(controller).ok_or_else(|| {
                (
                    key.to_string(),
                    format!("no cgroup hierarchy on this host has the {controller} controller"),
                )
            })?;
            let files =
                file_values(key, value, matches!(place, Place::V2(_))).ok_or_else(|| {
                    (
                        key.to_string(),
                        format!(
                        "{key} exists only in cgroup v2, and the {controller} controller here is \
                         a cgroup v1 hierarchy ({})",
                        place.dir().display()
                    ),
                    )
                })?;
            match out.iter_mut().find(|s| s.place == *place) {
                Some(s) => s.files.extend(files),
                None => out.push(Setting {
                    place: place.clone(),
                    controllers: Vec::new(),
                    files,
                    keys: Vec::new(),
                }),
            }
            let s = out
                .iter_mut()
                .find(|s| s.place == *place)
                .expect("just added");
            if !s.controllers.contains(&controller) {
                s.controllers.push(controller);
            }
            s.keys.push(key);
        }
        Ok(out)
    }
}

/// What a worker's cgroup in one hierarchy gets.
#[derive(Debug, Clone)]
pub(super) struct Setting {
    pub(super) place: Place,
    /// The controllers used there (v2 enables them down to the worker's cgroup).
    pub(super) controllers: Vec<&'static str>,
    /// File name and value, written in this order.
    pub(super) files: Vec<(&'static str, String)>,
    /// The keys it holds (for error messages).
    pub(super) keys: Vec<&'static str>,
}

/// A limit key's value, as it is to be written.
enum Value {
    Memory(MemorySize),
    Text(String),
    Cpu(CpuMax),
}

/// The keys set in `limits`, with their controllers.
fn wanted(limits: &Limits) -> Vec<(&'static str, &'static str, Value)> {
    let mut out = Vec::new();
    if let Some(m) = limits.memory_max {
        out.push(("memory_max", "memory", Value::Memory(m)));
    }
    if let Some(m) = limits.memory_high {
        out.push(("memory_high", "memory", Value::Memory(m)));
    }
    if let Some(p) = limits.pids_max {
        out.push(("pids_max", "pids", Value::Text(p.value())));
    }
    if let Some(c) = limits.cpu_max {
        out.push(("cpu_max", "cpu", Value::Cpu(c)));
    }
    out
}

/// The files a key is written to, v2 or v1; None where the hierarchy has no such limit.
fn file_values(key: &str, value: Value, v2: bool) -> Option<Vec<(&'static str, String)>> {
    Some(match (value, v2) {
        (Value::Memory(m), true) => {
            let file = if key == "memory_max" {
                "memory.max"
            } else {
                "memory.high"
            };
            vec![(file, m.value())]
        }
        (Value::Memory(_), false) if key == "memory_high" => return None,
        // v1 says "no limit" as -1.
        (Value::Memory(m), false) => vec![(
            "memory.limit_in_bytes",
            match m {
                MemorySize::Max => "-1".into(),
                MemorySize::Bytes(n) => n.to_string(),
            },
        )],
        (Value::Text(t), _) => vec![("pids.max", t)],
        (Value::Cpu(c), true) => vec![(
            "cpu.max",
            match c {
                CpuMax::Max => "max".into(),
                CpuMax::Quota {
                    quota_us,
                    period_us,
                } => format!("{quota_us} {period_us}"),
            },
        )],
        // The period first: the kernel checks the quota against it.
        (Value::Cpu(CpuMax::Max), false) => vec![("cpu.cfs_quota_us", "-1".into())],
        (
            Value::Cpu(CpuMax::Quota {
                quota_us,
                period_us,
            }),
            false,
        ) => vec![
            ("cpu.cfs_period_us", period_us.to_string()),
            ("cpu.cfs_quota_us", quota_us.to_string()),
        ],
    })
}

/// Makes `dir` (EEXIST is fine) in a hierarchy, and in v2 enables `controllers` for its
/// children.
pub(super) fn make_level(dir: &Path, place: &Place, controllers: &[&str]) -> std::io::Result<()> {
    cgroup::make(dir).map_err(|e| cgroup::error_at(e, dir))?;
    if let Place::V2(_) = place {
        enable(dir, controllers)?;
    }
    Ok(())
}

/// Writes `+controller` to `dir`'s `cgroup.subtree_control`.
pub(super) fn enable(dir: &Path, controllers: &[&str]) -> std::io::Result<()> {
    let file: PathBuf = dir.join("cgroup.subtree_control");
    for c in controllers {
        crate::os::write_text(&file, &format!("+{c}")).map_err(|e| cgroup::error_at(e, &file))?;
    }
    Ok(())
}

/// Writes each file of a worker's cgroup.
pub(super) fn write_files(dir: &Path, files: &[(&'static str, String)]) -> std::io::Result<()> {
    for (name, value) in files {
        let path = dir.join(name);
        crate::os::write_text(&path, value).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("writing {value} to {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}
