//! A host that points its descriptor 1 at another file between calls (as pytest does around
//! each test): a worker with `"stdout": "inherit"` writes to the host's stdout as it was when its
//! start, scale-up or respawn was asked for (and finds /dev/null where the host had closed it),
//! with the spawner threads in a table of their own and in the fallback that shares the host's. One binary of its own: it takes over descriptor 1
//! of the process.

mod common;

use std::os::fd::AsRawFd;

use common::*;
use mpsupervisor::{Options, Supervisor};
use serde_json::{json, Value};

/// Puts descriptor 1 back as it was, also when the test fails.
struct SavedStdout(i32);

impl SavedStdout {
    fn take() -> SavedStdout {
        // SAFETY: duplicating our own descriptor 1, close-on-exec, above the usual range.
        let saved = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 100) };
        assert!(saved >= 0);
        SavedStdout(saved)
    }

    fn point_at(&self, file: &std::fs::File) {
        // SAFETY: replacing descriptor 1 with a file we hold open.
        assert_eq!(unsafe { libc::dup2(file.as_raw_fd(), 1) }, 1);
    }
}

impl Drop for SavedStdout {
    fn drop(&mut self) {
        // SAFETY: restoring descriptor 1 from our copy, then closing the copy.
        unsafe {
            libc::dup2(self.0, 1);
            libc::close(self.0);
        }
    }
}

const SAYS_HELLO: &str = r#"
echo "out $MPSUP_WORKER_ID"
echo READY >&"$MPSUP_CONTROL_FD"
while read -r line <&"$MPSUP_CONTROL_FD"; do
  case "$line" in STOP*) exit 0;; esac
done
"#;

/// Says on stderr what its descriptor 1 is, then exits.
const LOOKS_AT_STDOUT: &str = r#"
echo "stdout $(readlink /proc/$$/fd/1 || echo closed)" >&2
"#;

fn lines(path: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = read(path).lines().map(str::to_string).collect();
    v.sort();
    v
}

fn check(private: bool) {
    let dir = scratch_dir("stdout-moves");
    let open = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let (first, second) = (open("first"), open("second"));
    let sup = Supervisor::with_options(Options {
        private_fd_table: private,
        ..Options::default()
    })
    .unwrap();
    let group = with(
        sh_group("g", 1, SAYS_HELLO),
        json!({"readiness": "notify", "stdout": "inherit",
               "restart": "always", "restart_delay_ms": 0}),
    );
    let looker = with(
        sh_group("c", 1, LOOKS_AT_STDOUT),
        json!({"stdout": "inherit", "stderr": {"file": dir.join("looked"), "append": true}}),
    );
    sup.configure_json(&Value::Array(vec![group, looker]).to_string())
        .unwrap();
    let mut log = Vec::new();
    {
        let stdout = SavedStdout::take();
        stdout.point_at(&first);
        sup.start_groups(&["g"]).unwrap();
        assert!(sup.wait_ready(secs(60.0)).unwrap());
        stdout.point_at(&second);
        sup.scale_group("g", 2).unwrap();
        wait_events(&sup, &mut log, |l| count(l, "worker_ready") == 2);
        // g#1 dies and is respawned: the respawn writes to the stdout of now.
        let snap = sup.snapshot_value();
        let one = snap["g"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["worker_id"] == "g#1")
            .unwrap()["pid"]
            .as_i64()
            .unwrap();
        // SAFETY: a signal to our own worker, which has not been reaped.
        assert_eq!(unsafe { libc::kill(one as i32, libc::SIGKILL) }, 0);
        wait_events(&sup, &mut log, |l| count(l, "worker_ready") == 3);
        // Closed in the host: the worker gets /dev/null there, never an empty descriptor 1.
        // SAFETY: closing our descriptor 1; the guard puts it back.
        assert_eq!(unsafe { libc::close(1) }, 0);
        sup.start_groups(&["c"]).unwrap();
        wait_events(&sup, &mut log, |l| {
            l.iter()
                .any(|e| e["worker_id"] == "c#1" && e["kind"] == "worker_failed")
        });
    }
    sup.stop_groups(secs(30.0), true).unwrap();
    drop(sup);
    assert_eq!(lines(&dir.join("first")), ["out g#1"], "private: {private}");
    assert_eq!(
        lines(&dir.join("second")),
        ["out g#1", "out g#2"],
        "private: {private}"
    );
    assert_eq!(
        lines(&dir.join("looked")),
        ["stdout /dev/null"],
        "private: {private}"
    );
}

#[test]
fn inherit_means_the_host_stdout_at_each_start_scale_and_respawn() {
    check(true);
    check(false);
}
