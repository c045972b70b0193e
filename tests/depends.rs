//! Dependencies between groups (`depends_on`, API.md part 8), with real processes: `db` (ready
//! some 0.6 s after a gate opens) ← `migrate` (runs to its exit) ← `web`. `start_groups(["web"])`
//! starts all three in order; a migration that fails fails `web`; stops go dependents first;
//! `on_dependency_restart: "stop"` stops a dependent whose dependency's worker ends, and
//! `"restart"` rolls it out once its dependency is ready again.

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

/// Waits for the file `$GATE`, then says READY 0.6 s later and stays until STOP.
const DB: &str = r#"
while [ ! -e "$GATE" ]; do sleep 0.02; done
sleep 0.6
echo READY >&"$MPSUP_CONTROL_FD"
while read -r line <&"$MPSUP_CONTROL_FD"; do
  case "$line" in STOP*) exit 0;; esac
done
"#;

/// The three groups; `migrate` exits with `code`; `extra` is added to `web`.
fn three(gate: &Path, code: i32, extra: Value) -> mpsupervisor::Supervisor {
    supervisor(&[
        with(
            sh_group("db", 1, DB),
            json!({"readiness": "notify", "env": {"GATE": gate}}),
        ),
        with(
            sh_group("migrate", 1, &format!("exit {code}")),
            json!({"restart": "never", "depends_on": {"db": "ready"}}),
        ),
        with(
            sh_group("web", 2, POLITE),
            with(
                json!({"readiness": "notify",
                       "depends_on": {"db": "ready", "migrate": "completed"}}),
                extra,
            ),
        ),
    ])
}

fn of_group<'a>(log: &'a [Value], kind: &str, group: &str) -> Vec<&'a Value> {
    of_kind(log, kind)
        .into_iter()
        .filter(|e| e["group_name"] == group)
        .collect()
}

fn seq(e: &Value) -> u64 {
    e["seq"].as_u64().unwrap()
}

fn open_gate(gate: &Path) {
    std::fs::write(gate, b"").unwrap();
}

#[test]
fn start_groups_starts_dependencies_first_and_the_dependent_after_its_migration() {
    let dir = scratch_dir("depends-order");
    let gate = dir.join("gate");
    let sup = three(&gate, 0, json!({}));
    sup.start_groups(&["web"]).unwrap();
    // db cannot be ready before the gate opens: web and migrate wait, and say for what.
    let status = sup.status_value();
    assert_eq!(
        status["groups"]["web"]["waiting_for"],
        json!(["db", "migrate"])
    );
    assert_eq!(status["groups"]["migrate"]["waiting_for"], json!(["db"]));
    assert_eq!(status["groups"]["db"]["waiting_for"], json!([]));
    assert_eq!(status["groups"]["web"]["started"], true);
    assert!(
        !sup.wait_ready(secs(0.0)).unwrap(),
        "waiting groups are pending"
    );
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| count(l, "group_waiting") == 2);
    let waiting = &of_group(&log, "group_waiting", "web")[0];
    assert_eq!(waiting["waiting_for"], json!(["db", "migrate"]));
    open_gate(&gate);
    wait_events(&sup, &mut log, |l| {
        of_group(l, "worker_ready", "web").len() == 2
    });
    assert!(sup.wait_ready(HANG).unwrap());
    // The order, by sequence number: db ready, then migrate spawned, exited 0 and completed,
    // then web's spawns.
    let db_ready = seq(of_group(&log, "worker_ready", "db")[0]);
    let migrate_spawned = seq(of_group(&log, "worker_spawned", "migrate")[0]);
    let migrate_exit = of_group(&log, "worker_failed", "migrate")[0];
    assert_eq!(migrate_exit["exit_code"], 0, "{log:#?}");
    let completed = of_group(&log, "group_completed", "migrate");
    assert_eq!(completed.len(), 1, "{log:#?}");
    let web_spawns = of_group(&log, "worker_spawned", "web");
    assert_eq!(web_spawns.len(), 2, "{log:#?}");
    assert!(db_ready < migrate_spawned, "{log:#?}");
    assert!(seq(migrate_exit) < seq(completed[0]), "{log:#?}");
    for spawn in &web_spawns {
        assert!(seq(completed[0]) < seq(spawn), "{log:#?}");
    }
    // The spawn events name the processes that run.
    let snap = sup.snapshot_value();
    let mut web = pids(&snap, "web");
    let mut spawned: Vec<i64> = web_spawns
        .iter()
        .map(|e| e["pid"].as_i64().unwrap())
        .collect();
    web.sort();
    spawned.sort();
    assert_eq!(web, spawned);
    let db = pids(&snap, "db");
    let log_before = log;
    assert_eq!(
        sup.status_value()["groups"]["web"]["waiting_for"],
        json!([])
    );
    // Stops go dependents first: every web worker is stopped before db's begins to stop.
    sup.stop_groups(HANG, false).unwrap();
    let log = drain_all(&sup);
    let web_stopped: Vec<u64> = of_group(&log, "worker_stopped", "web")
        .into_iter()
        .map(seq)
        .collect();
    let db_stopping = seq(of_group(&log, "worker_stopping", "db")[0]);
    assert_eq!(web_stopped.len(), 2, "{log:#?}");
    assert!(web_stopped.iter().all(|&s| s < db_stopping), "{log:#?}");
    let migrate = of_group(&log_before, "worker_spawned", "migrate")[0]["pid"]
        .as_i64()
        .unwrap();
    for pid in web.iter().chain(&db).chain([&migrate]) {
        assert_gone(*pid);
    }
}

#[test]
fn a_failed_migration_fails_its_dependent() {
    let dir = scratch_dir("depends-failed");
    let gate = dir.join("gate");
    let sup = three(&gate, 3, json!({}));
    sup.start_groups(&["web"]).unwrap();
    open_gate(&gate);
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        !of_group(l, "group_failed", "web").is_empty()
    });
    let failed = of_group(&log, "group_failed", "web")[0];
    assert_eq!(failed["reason"], "dependency_failed", "{log:#?}");
    assert_eq!(failed["dependency"], "migrate", "{log:#?}");
    assert_eq!(
        of_group(&log, "worker_failed", "migrate")[0]["exit_code"],
        3
    );
    assert!(
        of_group(&log, "worker_spawned", "web").is_empty(),
        "{log:#?}"
    );
    assert!(of_group(&log, "group_completed", "migrate").is_empty());
    assert!(!sup.wait_ready(HANG).unwrap());
    let status = sup.status_value();
    assert_eq!(status["groups"]["web"]["failed"], true);
    let db = pids(&sup.snapshot_value(), "db");
    sup.stop_groups(HANG, false).unwrap();
    for pid in db {
        assert_gone(pid);
    }
    // Once stopped, web's failure no longer holds wait_ready down: db alone becomes ready.
    sup.start_groups(&["db"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let db = pids(&sup.snapshot_value(), "db");
    sup.stop_groups(HANG, false).unwrap();
    assert_gone(db[0]);
}

/// `db` (respawned at once, ready 0.6 s after) and `web` (`workers`, bound to it by
/// `on_dependency_restart: on`), both ready; then db's worker is killed. Returns the supervisor,
/// db's pids and web's, as they were before the kill, and the folder of db's gate (to keep
/// while db may respawn).
fn bound_and_db_killed(
    on: &str,
    workers: u32,
) -> (TempDir, mpsupervisor::Supervisor, Vec<i64>, Vec<i64>) {
    let dir = scratch_dir(&format!("depends-{on}"));
    let gate = dir.join("gate");
    open_gate(&gate);
    let sup = supervisor(&[
        with(
            sh_group("db", 1, DB),
            json!({"readiness": "notify", "restart": "always", "restart_delay_ms": 1,
                   "env": {"GATE": gate}}),
        ),
        with(
            sh_group("web", workers, POLITE),
            json!({"readiness": "notify", "depends_on": {"db": "ready"},
                   "on_dependency_restart": on}),
        ),
    ]);
    sup.start_groups(&["web"]).unwrap();
    assert!(sup.wait_ready(HANG).unwrap());
    let snap = sup.snapshot_value();
    let (db, web) = (pids(&snap, "db"), pids(&snap, "web"));
    let _ = drain_all(&sup);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(db[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    (dir, sup, db, web)
}

#[test]
fn on_dependency_restart_stop_stops_the_dependent_when_its_dependency_ends() {
    let (_dir, sup, db, web) = bound_and_db_killed("stop", 1);
    let mut log = Vec::new();
    wait_events(&sup, &mut log, |l| {
        !of_group(l, "worker_stopped", "web").is_empty()
    });
    assert!(
        seq(of_group(&log, "worker_failed", "db")[0])
            < seq(of_group(&log, "worker_stopping", "web")[0])
    );
    assert_eq!(sup.status_value()["groups"]["web"]["started"], false);
    assert_gone(web[0]);
    sup.stop_groups(HANG, false).unwrap();
    assert_gone(db[0]);
}

#[test]
fn on_dependency_restart_restart_rolls_the_dependent_out_once_its_dependency_is_ready_again() {
    let (_dir, sup, db, web) = bound_and_db_killed("restart", 2);
    let mut log = Vec::new();
    // rollout_finished comes once every slot has its new worker ready; the old ones may still
    // be stopping.
    wait_events(&sup, &mut log, |l| {
        !of_group(l, "rollout_finished", "web").is_empty()
            && of_group(l, "worker_stopped", "web").len() == 2
    });
    // The new db (ready some 0.6 s after its respawn) first, then web's rollout.
    let db_ready = of_group(&log, "worker_ready", "db");
    assert_eq!(db_ready.len(), 1, "{log:?}");
    let rollout = of_group(&log, "rollout_started", "web");
    assert_eq!(rollout.len(), 1, "{log:?}");
    assert!(seq(db_ready[0]) < seq(rollout[0]));
    assert!(seq(of_group(&log, "worker_failed", "db")[0]) < seq(db_ready[0]));
    assert!(sup.wait_ready(HANG).unwrap());
    let now = pids(&sup.snapshot_value(), "web");
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|p| !web.contains(p)), "{web:?} -> {now:?}");
    for pid in web {
        assert_gone(pid);
    }
    let db_now = pids(&sup.snapshot_value(), "db");
    sup.stop_groups(HANG, false).unwrap();
    for pid in now.into_iter().chain(db_now).chain(db) {
        assert_gone(pid);
    }
}

#[test]
fn unknown_dependencies_and_cycles_are_rejected_naming_the_path() {
    let sup = mpsupervisor::Supervisor::new().unwrap();
    let configure = |groups: Value| {
        sup.configure_json(&groups.to_string())
            .unwrap_err()
            .to_string()
    };
    let e = configure(json!([
        {"name": "db", "argv": ["/bin/true"]},
        {"name": "web", "argv": ["/bin/true"], "depends_on": {"dbx": "ready"}}
    ]));
    assert!(
        e.contains("groups[1].depends_on: 'dbx' is not a configured group"),
        "{e}"
    );
    let e = configure(json!([
        {"name": "db", "argv": ["/bin/true"]},
        {"name": "api", "argv": ["/bin/true"], "depends_on": {"web": "ready"}},
        {"name": "web", "argv": ["/bin/true"], "depends_on": {"api": "started", "db": "ready"}}
    ]));
    assert!(e.contains("groups[1].depends_on: api -> web -> api"), "{e}");
    // Nothing was configured: a start of those groups names them unknown.
    assert!(sup.start_groups(&["web"]).is_err());
}
