//! cgroup v2: where the hierarchy is mounted, which cgroup this process is in, and the few file
//! operations tree kill needs (make, place, kill, remove).
//!
//! The unified hierarchy is found through /proc/self/mountinfo, not assumed at /sys/fs/cgroup:
//! on a hybrid set-up it is mounted at /sys/fs/cgroup/unified. Only a hierarchy with
//! `cgroup.kill` (Linux 5.14) is used.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cgroup v2 mount point and the root of the hierarchy it shows, from a mountinfo text.
fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        // id parent major:minor root mount-point ...
        let root = fields.get(3)?;
        let point = fields.get(4)?;
        Some((PathBuf::from(unescape(point)), unescape(root)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// This process's cgroup v2 path (the `0::` line of /proc/self/cgroup).
fn own_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// The directory of this process's own cgroup v2, when the hierarchy is mounted (whoever kills
/// through it checks for `cgroup.kill`).
pub fn own_cgroup_dir() -> Option<PathBuf> {
    let mountinfo = super::read_text("/proc/self/mountinfo").ok()?;
    let (point, root) = cgroup2_mount(&mountinfo)?;
    let own = own_path(&super::read_text("/proc/self/cgroup").ok()?)?;
    // The mount shows the hierarchy from `root` down; our path must be below it.
    let rel = own.strip_prefix(root.trim_end_matches('/'))?;
    let dir = point.join(rel.trim_start_matches('/'));
    dir.join("cgroup.procs").exists().then_some(dir)
}

/// The cgroup v1 hierarchy whose mount has `controller` (`memory`, `pids`, `cpu`) among its
/// options, and this process's cgroup in it, from mountinfo and /proc/self/cgroup texts.
fn v1_dir(mountinfo: &str, proc_cgroup: &str, controller: &str) -> Option<PathBuf> {
    let has = |list: &str| list.split(',').any(|c| c == controller);
    let (point, root) = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        if right.next()? != "cgroup" || !has(right.nth(1)?) {
            return None;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        Some((
            PathBuf::from(unescape(fields.get(4)?)),
            unescape(fields.get(3)?),
        ))
    })?;
    let own = proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        has(list).then_some(path)
    })?;
    let rel = own.strip_prefix(root.trim_end_matches('/'))?;
    Some(point.join(rel.trim_start_matches('/')))
}

/// Where a controller can be had: this process's cgroup in the hierarchy that has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// cgroup v2: this process's cgroup lists it in `cgroup.controllers`.
    V2(PathBuf),
    /// A cgroup v1 hierarchy of its own (or shared with others, such as `cpu,cpuacct`).
    V1(PathBuf),
}

impl Place {
    /// This process's cgroup in that hierarchy.
    pub fn dir(&self) -> &Path {
        match self {
            Place::V2(d) | Place::V1(d) => d,
        }
    }
}

/// Where `controller` is on this host: v2 where the unified hierarchy has it, else its v1
/// hierarchy; None where neither is mounted.
pub fn controller_place(controller: &str) -> Option<Place> {
    if let Some(own) = own_cgroup_dir() {
        let listed = super::read_text(own.join("cgroup.controllers")).unwrap_or_default();
        if listed.split_whitespace().any(|c| c == controller) {
            return Some(Place::V2(own));
        }
    }
    let mountinfo = super::read_text("/proc/self/mountinfo").ok()?;
    let own = super::read_text("/proc/self/cgroup").ok()?;
    v1_dir(&mountinfo, &own, controller)
        .filter(|d| d.join("cgroup.procs").exists())
        .map(Place::V1)
}

/// How many times the OOM killer killed a process of the cgroup: v2 `memory.events`, v1
/// `memory.oom_control` (both have an `oom_kill N` line).
pub fn oom_kills(dir: &Path) -> u64 {
    ["memory.events", "memory.oom_control"]
        .iter()
        .find_map(|f| super::read_text(dir.join(f)).ok())
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A cgroup failure, with the cgroup's path.
pub fn error_at(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cgroup {}: {e}", path.display()))
}

/// Makes a cgroup (EEXIST is fine).
pub fn make(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Kills every process in the cgroup and below it: v2's `cgroup.kill`; a v1 cgroup has none,
/// its processes are sent SIGKILL one by one (those of the cgroup itself: the library's v1
/// cgroups have no children with processes).
pub fn kill(dir: &Path) -> io::Result<()> {
    match super::write_text(dir.join("cgroup.kill"), "1") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let procs = super::read_text(dir.join("cgroup.procs"))?;
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                super::kill_pid(pid, libc::SIGKILL)?;
            }
            Ok(())
        }
        other => other,
    }
}

/// Removes a cgroup and everything below it, once their processes are gone; kills them first.
/// Bounded: gives up at `until` (what is left stays, empty cgroups cost nothing).
pub fn remove_tree(dir: &Path, until: Instant) -> bool {
    let _ = kill(dir);
    remove_tree_inner(dir, until)
}

fn remove_tree_inner(dir: &Path, until: Instant) -> bool {
    loop {
        if let Ok(entries) = super::list_dir(dir) {
            for (name, is_dir) in entries {
                if is_dir {
                    remove_tree_inner(&dir.join(name), until);
                }
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            Err(_) if Instant::now() < until => {
                let _ = kill(dir);
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unified_mount_of_a_hybrid_setup() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(info),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".to_string()))
        );
        assert_eq!(
            cgroup2_mount("35 31 0:32 / /x rw - cgroup cgroup rw\n"),
            None
        );
        assert_eq!(unescape(r"/a\040b"), "/a b");
    }

    #[test]
    fn finds_a_v1_controller_and_our_cgroup_in_it() {
        let info = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                    35 31 0:32 /a /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let own = "4:memory:/a/b\n2:cpu,cpuacct:/\n0::/\n";
        assert_eq!(
            v1_dir(info, own, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/b"))
        );
        assert_eq!(
            v1_dir(info, own, "cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(v1_dir(info, own, "pids"), None);
    }

    #[test]
    fn reads_the_v2_line_of_proc_self_cgroup() {
        assert_eq!(
            own_path("4:memory:/x\n0::/user.slice/a.scope\n"),
            Some("/user.slice/a.scope".to_string())
        );
        assert_eq!(own_path("4:memory:/x\n"), None);
    }
}
