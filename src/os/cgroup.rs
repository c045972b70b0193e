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

/// The directory of this process's own cgroup v2, when the hierarchy is mounted and has
/// `cgroup.kill`.
pub fn own_cgroup_dir() -> Option<PathBuf> {
    let mountinfo = super::read_text("/proc/self/mountinfo").ok()?;
    let (point, root) = cgroup2_mount(&mountinfo)?;
    let own = own_path(&super::read_text("/proc/self/cgroup").ok()?)?;
    // The mount shows the hierarchy from `root` down; our path must be below it.
    let rel = own.strip_prefix(root.trim_end_matches('/'))?;
    let dir = point.join(rel.trim_start_matches('/'));
    dir.join("cgroup.procs").exists().then_some(dir)
}

/// Makes a cgroup (EEXIST is fine).
pub fn make(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Kills every process in the cgroup and below it.
pub fn kill(dir: &Path) -> io::Result<()> {
    super::write_text(dir.join("cgroup.kill"), "1")
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
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
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
    fn reads_the_v2_line_of_proc_self_cgroup() {
        assert_eq!(
            own_path("4:memory:/x\n0::/user.slice/a.scope\n"),
            Some("/user.slice/a.scope".to_string())
        );
        assert_eq!(own_path("4:memory:/x\n"), None);
    }
}
