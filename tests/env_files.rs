//! Part 7's `env_files`: files in systemd's `EnvironmentFile=` syntax, read at every spawn (a
//! rewritten file reaches the next respawn), under the group's `env`; an optional (`-`) file may
//! be missing; a required one that is missing fails the start, or at a respawn that spawn,
//! naming the file.

mod common;

use std::path::Path;
use std::time::Instant;

use common::*;
use mpsupervisor::error::Error;
use serde_json::{json, Value};

/// Writes `A|B|C|HOME` as the worker sees them to `$DIR/<its pid>` (through a rename), then
/// sleeps.
const REPORT: &str = r#"
printf '%s|%s|%s|%s' "$A" "$B" "$C" "$HOME" > "$DIR/$$.tmp" && mv "$DIR/$$.tmp" "$DIR/$$"
exec sleep 1000000
"#;

fn group(dir: &Path, files: Value) -> Value {
    json!({"name": "e", "argv": ["/bin/sh", "-c", REPORT], "control_channel": "off",
           "env": {"DIR": dir, "B": "from env"}, "env_files": files,
           "restart": "always", "restart_delay_ms": 1})
}

fn report_of(dir: &Path, pid: i64) -> String {
    let path = dir.join(pid.to_string());
    let deadline = Instant::now() + HANG;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text;
        }
        assert!(Instant::now() < deadline, "no report at {path:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn only_pid(sup: &mpsupervisor::Supervisor) -> i64 {
    let p = pids(&sup.snapshot_value(), "e");
    assert_eq!(p.len(), 1, "{p:?}");
    p[0]
}

fn kill(pid: i64) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
}

#[test]
fn a_rewritten_env_file_reaches_the_next_respawn_and_env_wins_over_it() {
    let dir = scratch_dir("env-files");
    let file = dir.join("secrets.env");
    let missing = dir.join("no-such.env");
    std::fs::write(
        &file,
        "# rotated by hand\nA=\"first secret\"\nB=from file\nexport HOME=/nowhere\n",
    )
    .unwrap();
    let sup = supervisor(&[group(
        &dir,
        json!([file, format!("-{}", missing.display())]),
    )]);
    sup.start_groups(&["e"]).unwrap();
    let first = only_pid(&sup);
    // The file's A and HOME (over the host's), the group's B (over the file's).
    assert_eq!(report_of(&dir, first), "first secret|from env||/nowhere");
    std::fs::write(&file, "A='second secret'\n; C is new\nC=3\n").unwrap();
    kill(first);
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        l.iter()
            .any(|e| e["kind"] == "worker_spawned" && e["pid"].as_i64() != Some(first))
    });
    let second = only_pid(&sup);
    assert_eq!(
        report_of(&dir, second),
        format!("second secret|from env|3|{}", home())
    );
    sup.force_terminate_groups(&["e"]).unwrap();
}

#[test]
fn a_missing_required_env_file_fails_the_start_naming_it() {
    let dir = scratch_dir("env-files-missing");
    let missing = dir.join("no-such.env");
    let sup = supervisor(&[group(&dir, json!([missing]))]);
    match sup.start_groups(&["e"]) {
        Err(e @ Error::Spawn { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains(&format!("env_files: {}", missing.display())),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(pids(&sup.snapshot_value(), "e").is_empty());
    // An invalid file, too, naming its line.
    let bad = dir.join("bad.env");
    std::fs::write(&bad, "A=1\nnot an assignment\n").unwrap();
    let sup = supervisor(&[group(&dir, json!([bad]))]);
    let m = sup.start_groups(&["e"]).unwrap_err().to_string();
    assert!(m.contains(&format!("{}:2: no '='", bad.display())), "{m}");
}

#[test]
fn a_required_env_file_gone_by_a_respawn_fails_that_spawn_naming_it() {
    let dir = scratch_dir("env-files-gone");
    let file = dir.join("app.env");
    std::fs::write(&file, "A=1\n").unwrap();
    let mut g = group(&dir, json!([file]));
    g["max_restarts"] = json!(1);
    let sup = supervisor(&[g]);
    sup.start_groups(&["e"]).unwrap();
    let first = only_pid(&sup);
    assert_eq!(report_of(&dir, first), format!("1|from env||{}", home()));
    std::fs::remove_file(&file).unwrap();
    kill(first);
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "group_failed") == 1);
    let failed = of_kind(&log, "worker_spawn_failed");
    assert!(!failed.is_empty(), "{log:#?}");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("env_files: {}", file.display())),
        "{error}"
    );
    assert_eq!(count(&log, "worker_spawned"), 1, "{log:#?}");
}

fn home() -> String {
    std::env::var("HOME").unwrap_or_default()
}
