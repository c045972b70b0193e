//! Handles: generation-checked ids into a process-wide table of supervisors.
//!
//! An id is `generation << 32 | (slot + 1)`, so 0 is never valid, and an id whose slot was freed
//! (and perhaps reused) no longer matches the slot's generation.

use std::sync::{Arc, Mutex};

use once_cell::sync::Lazy;

use crate::error::Error;
use crate::supervisor::Supervisor;
use crate::sync::lock;

struct Slot {
    generation: u32,
    supervisor: Option<Arc<Supervisor>>,
}

#[derive(Default)]
struct Registry {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

static REGISTRY: Lazy<Mutex<Registry>> = Lazy::new(|| Mutex::new(Registry::default()));

fn split(id: u64) -> Option<(usize, u32)> {
    let slot = (id & 0xffff_ffff) as usize;
    let generation = (id >> 32) as u32;
    (slot != 0 && generation != 0).then(|| (slot - 1, generation))
}

fn invalid(id: u64) -> Error {
    Error::InvalidHandle(format!(
        "invalid supervisor handle {id:#x} (zero, freed or never issued)"
    ))
}

/// Stores a supervisor and returns its id.
pub fn insert(supervisor: Supervisor) -> u64 {
    let mut reg = lock(&REGISTRY);
    let supervisor = Some(Arc::new(supervisor));
    let index = match reg.free.pop() {
        Some(index) => {
            reg.slots[index].supervisor = supervisor;
            index
        }
        None => {
            reg.slots.push(Slot {
                generation: 1,
                supervisor,
            });
            reg.slots.len() - 1
        }
    };
    (reg.slots[index].generation as u64) << 32 | (index as u64 + 1)
}

/// The supervisor behind `id`; the caller's clone keeps it alive through a concurrent free.
pub fn get(id: u64) -> Result<Arc<Supervisor>, Error> {
    let reg = lock(&REGISTRY);
    let (index, generation) = split(id).ok_or_else(|| invalid(id))?;
    match reg.slots.get(index) {
        Some(Slot {
            generation: g,
            supervisor: Some(s),
        }) if *g == generation => {
            if !s.owned_by_this_process() {
                return Err(foreign(id));
            }
            Ok(Arc::clone(s))
        }
        _ => Err(invalid(id)),
    }
}

fn foreign(id: u64) -> Error {
    Error::InvalidHandle(format!(
        "supervisor handle {id:#x} belongs to the process that made it, not to this forked child"
    ))
}

/// Takes the supervisor out of the table; its id (and every copy of it) is invalid from now on.
pub fn remove(id: u64) -> Result<Arc<Supervisor>, Error> {
    let mut reg = lock(&REGISTRY);
    let (index, generation) = split(id).ok_or_else(|| invalid(id))?;
    let slot = reg.slots.get_mut(index).ok_or_else(|| invalid(id))?;
    if slot.generation != generation || slot.supervisor.is_none() {
        return Err(invalid(id));
    }
    let supervisor = slot.supervisor.take().expect("checked above");
    slot.generation = slot.generation.wrapping_add(1).max(1);
    reg.free.push(index);
    if !supervisor.owned_by_this_process() {
        // Forgotten in this child, untouched: dropping it is harmless (Drop checks the owner).
        return Err(foreign(id));
    }
    Ok(supervisor)
}
