//! Real cgroups for the limits tests: where each hierarchy is (from mountinfo, as the library
//! finds it, written again here so the tests do not take its word), which cgroup a worker is
//! in, and guards that remove whatever cgroups (and processes in them) a test leaves, even when
//! it fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mpsupervisor::Supervisor;

use crate::common::HANG;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Mount point and root of the hierarchy with `controller` (None: v2), from mountinfo.
pub fn mount_of(controller: Option<&str>) -> Option<(PathBuf, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let right: Vec<&str> = right.split_whitespace().collect();
        let ok = match controller {
            None => right[0] == "cgroup2",
            Some(c) => right[0] == "cgroup" && right[2].split(',').any(|o| o == c),
        };
        let f: Vec<&str> = left.split_whitespace().collect();
        ok.then(|| (PathBuf::from(f[4]), f[3].to_string()))
    })
}

/// This process's cgroup in the hierarchy of `controller` (None: v2).
pub fn own_dir(controller: Option<&str>) -> Option<PathBuf> {
    let (point, root) = mount_of(controller)?;
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = text.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, list, path) = (p.next()?, p.next()?, p.next()?);
        let ok = match controller {
            None => list.is_empty(),
            Some(c) => list.split(',').any(|x| x == c),
        };
        ok.then(|| path.to_string())
    })?;
    let rel = path.strip_prefix(root.trim_end_matches('/'))?;
    Some(point.join(rel.trim_start_matches('/')))
}

const HIERARCHIES: [Option<&str>; 4] = [None, Some("memory"), Some("pids"), Some("cpu")];

/// Every cgroup a supervisor of this process made (`mpsup-<pid>-*`), in every hierarchy.
pub fn ours() -> Vec<PathBuf> {
    of_host(std::process::id())
}

/// Every cgroup a supervisor of process `host` made, in every hierarchy of this process (the
/// hosts these tests start are in the same cgroups).
pub fn of_host(host: u32) -> Vec<PathBuf> {
    let prefix = format!("mpsup-{host}-");
    let mut out = Vec::new();
    for own in HIERARCHIES.iter().filter_map(|h| own_dir(*h)) {
        for e in std::fs::read_dir(&own).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                out.push(e.path());
            }
        }
    }
    out
}

/// Kills the processes of a cgroup tree and removes it, deepest first; false while one stays.
pub fn remove_tree(dir: &Path) -> bool {
    let subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    let children = subdirs.iter().all(|d| remove_tree(d));
    for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse::<i32>().ok())
    {
        // SAFETY: plain system call.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    children && (std::fs::remove_dir(dir).is_ok() || !dir.exists())
}

/// Held for a whole test: one test at a time; at drop, whatever cgroup of ours is left (and its
/// processes) goes.
pub struct Cgroups(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

impl Cgroups {
    pub fn guard() -> Cgroups {
        let g = Cgroups(ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner()));
        assert_eq!(ours(), Vec::<PathBuf>::new(), "a cgroup of ours is left");
        g
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        remove_all(ours());
    }
}

/// Removes `dirs` and what is in them (bounded).
pub fn remove_all(dirs: Vec<PathBuf>) {
    {
        let until = Instant::now() + Duration::from_secs(5);
        for dir in dirs {
            while !remove_tree(&dir) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Frees the supervisor and checks that it removed every cgroup it made.
pub fn free_and_check(sup: Supervisor) {
    drop(sup);
    assert_eq!(
        ours(),
        Vec::<PathBuf>::new(),
        "the freed supervisor left cgroups"
    );
}

/// The worker's cgroup in the hierarchy of `controller`, from /proc/PID/cgroup.
pub fn worker_dir(pid: i64, controller: &str) -> PathBuf {
    let (point, root) = mount_of(Some(controller)).unwrap();
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, list, path) = (p.next()?, p.next()?, p.next()?);
            list.split(',')
                .any(|x| x == controller)
                .then(|| path.to_string())
        })
        .unwrap();
    let rel = path.strip_prefix(root.trim_end_matches('/')).unwrap();
    point.join(rel.trim_start_matches('/'))
}

/// Waits (bounded) until `path` is gone.
pub fn wait_gone(path: &Path) {
    let until = Instant::now() + HANG;
    while path.exists() {
        assert!(Instant::now() < until, "{} stays", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The worker's cgroup v2 directory, from /proc/PID/cgroup.
pub fn worker_dir_v2(pid: i64) -> PathBuf {
    let (point, root) = mount_of(None).unwrap();
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let rel = path.strip_prefix(root.trim_end_matches('/')).unwrap();
    point.join(rel.trim_start_matches('/'))
}

/// A host process started by a test: killed and reaped at drop, with whatever cgroups its
/// supervisor left.
pub struct Host(pub std::process::Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        remove_all(of_host(self.0.id()));
    }
}
