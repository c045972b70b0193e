//! Handles: generation-checked ids into a process-wide table of supervisors.
//!
//! An id is `generation << 32 | (slot + 1)`, so 0 is never valid. Generations come from one
//! process-wide counter, so an id whose slot was freed (and perhaps reused) no longer matches.
//!
//! A child the host forks must never wait on the table's lock: another thread of the parent may
//! have held it at the moment of the fork, and in the child nobody would ever release it. So the
//! table belongs to the process that made it; the first call in a forked child finds the pid
//! changed and starts a table of its own, without touching (or freeing) the parent's. Ids of
//! the parent are unknown there, and the counter the child inherited keeps its own ids distinct.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::supervisor::Supervisor;
use crate::sync::{lock, PerProcess};

struct Slot {
    generation: u32,
    supervisor: Option<Arc<Supervisor>>,
}

#[derive(Default)]
struct Registry {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

/// The table of one process (`PerProcess`: a forked child makes its own).
struct Table {
    /// Ids with a lower generation were issued before this process forked from its parent.
    first_generation: u32,
    registry: Mutex<Registry>,
}

static TABLE: PerProcess<Table> = PerProcess::new();
static NEXT_GENERATION: AtomicU32 = AtomicU32::new(1);

/// This process's table, checked by pid before any lock is taken.
fn table() -> &'static Table {
    TABLE
        .get_or_make(|| {
            Some(Table {
                first_generation: NEXT_GENERATION.load(Ordering::Relaxed),
                registry: Mutex::new(Registry::default()),
            })
        })
        .expect("always made")
}

fn next_generation() -> u32 {
    loop {
        let g = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        if g != 0 {
            return g;
        }
    }
}

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
    let mut reg = lock(&table().registry);
    let slot = Slot {
        generation: next_generation(),
        supervisor: Some(Arc::new(supervisor)),
    };
    let index = match reg.free.pop() {
        Some(index) => {
            reg.slots[index] = slot;
            index
        }
        None => {
            reg.slots.push(slot);
            reg.slots.len() - 1
        }
    };
    (reg.slots[index].generation as u64) << 32 | (index as u64 + 1)
}

/// The error for an id this process's table does not hold.
fn unknown(table: &Table, id: u64) -> Error {
    match split(id) {
        Some((_, generation)) if generation < table.first_generation => foreign(id),
        _ => invalid(id),
    }
}

/// The supervisor behind `id`; the caller's clone keeps it alive through a concurrent free.
pub fn get(id: u64) -> Result<Arc<Supervisor>, Error> {
    let table = table();
    let reg = lock(&table.registry);
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
        _ => Err(unknown(table, id)),
    }
}

fn foreign(id: u64) -> Error {
    Error::InvalidHandle(format!(
        "supervisor handle {id:#x} belongs to the process that made it, not to this forked child"
    ))
}

/// Takes the supervisor out of the table; its id (and every copy of it) is invalid from now on.
pub fn remove(id: u64) -> Result<Arc<Supervisor>, Error> {
    let table = table();
    let mut reg = lock(&table.registry);
    let (index, generation) = split(id).ok_or_else(|| invalid(id))?;
    let slot = reg.slots.get_mut(index).ok_or_else(|| unknown(table, id))?;
    if slot.generation != generation || slot.supervisor.is_none() {
        return Err(unknown(table, id));
    }
    let supervisor = slot.supervisor.take().expect("checked above");
    reg.free.push(index);
    if !supervisor.owned_by_this_process() {
        // Forgotten in this child, untouched: dropping it is harmless (Drop checks the owner).
        return Err(foreign(id));
    }
    Ok(supervisor)
}
