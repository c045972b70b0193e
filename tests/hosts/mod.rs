//! Helpers for tests that run a separate host process: a child that is killed and reaped
//! whatever happens, line reads bounded in time, and /proc views of signal state.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdout, ExitStatus};
use std::time::{Duration, Instant};

/// A child process that is killed (SIGKILL) and reaped when dropped, unless already reaped.
pub struct Guard(pub Option<Child>);

impl Guard {
    pub fn new(child: Child) -> Guard {
        Guard(Some(child))
    }
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
    pub fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }
    /// Waits for the exit, at most `limit`; on timeout the child is killed and None comes back.
    pub fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let pid = self.pid();
        if !wait_fd_or_exit(pid, limit) {
            return None;
        }
        Some(self.0.take().unwrap().wait().unwrap())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits on a pidfd until `pid` exits or `limit` passes; true when it exited.
pub fn wait_fd_or_exit(pid: i32, limit: Duration) -> bool {
    // SAFETY: plain system call; the descriptor is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + limit;
    let exited = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().max(1) as i32) };
        if n > 0 {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
    };
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    exited
}

/// Reads one line of a child's stdout, waiting at most `limit` for it; None on end of file.
/// Panics when nothing comes in time (a hung host).
pub struct Lines {
    reader: BufReader<ChildStdout>,
}

impl Lines {
    pub fn new(stdout: ChildStdout) -> Lines {
        Lines {
            reader: BufReader::new(stdout),
        }
    }
    pub fn next_within(&mut self, limit: Duration) -> Option<String> {
        if self.reader.buffer().is_empty() {
            let mut p = libc::pollfd {
                fd: self.reader.get_ref().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, limit.as_millis() as i32) };
            assert!(n > 0, "the host printed nothing within {limit:?}");
        }
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        (n > 0).then(|| line.trim_end().to_string())
    }
    pub fn rest(&mut self) -> String {
        let mut s = String::new();
        let _ = self.reader.read_to_string(&mut s);
        s
    }
}

/// A field such as "SigBlk" of /proc/<pid>/task/<tid>/status (or any status file), as a number.
pub fn status_hex(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

/// The bit of `sig` in a /proc signal mask.
pub fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Every signal a thread can block: all but SIGKILL, SIGSTOP and glibc's internal 32 and 33.
pub fn all_blockable() -> u64 {
    !(bit(libc::SIGKILL) | bit(libc::SIGSTOP) | bit(32) | bit(33))
}

/// The threads of `pid` but its main thread, with their names.
pub fn other_threads(pid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let tid: i32 = entry.file_name().to_string_lossy().parse().unwrap();
        if tid == pid {
            continue;
        }
        let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        out.push((tid, name.trim().to_string()));
    }
    out
}

/// A scratch directory removed when dropped, even when the test fails.
pub type Scratch = crate::common::TempDir;
