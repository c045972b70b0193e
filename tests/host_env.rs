//! A host that edits its environment with setenv/unsetenv while workers respawn must not
//! crash: the library never reads the host's environ from its own threads. One test in its own
//! binary, since raw setenv races every other reader of the environment in the process.

mod common;

use std::ffi::CString;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn editing_the_environment_during_a_crash_loop_is_safe() {
    let sup = supervisor(&[
        json!({"name": "crash", "workers": 50, "argv": ["/bin/true"],
        "restart": "always", "restart_delay_ms": 1, "restart_delay_max_ms": 1,
        "max_restarts": 1_000_000, "restart_window_ms": 1000, "control_channel": "off"}),
    ]);
    sup.start_groups(&["crash"]).unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    let mut rounds = 0;
    let mut spawned = 0;
    while Instant::now() < until {
        // Raw setenv, as a C or Python host does: it reallocates environ under any reader.
        for i in 0..500 {
            let key = CString::new(format!("MPSUP_TEST_EDIT_{i}")).unwrap();
            // SAFETY: valid C strings; no other thread of this binary reads the environment
            // through Rust's lock-free paths during the test.
            unsafe {
                libc::setenv(key.as_ptr(), c"some value".as_ptr(), 1);
            }
        }
        for i in 0..500 {
            let key = CString::new(format!("MPSUP_TEST_EDIT_{i}")).unwrap();
            // SAFETY: as above.
            unsafe {
                libc::unsetenv(key.as_ptr());
            }
        }
        rounds += 1;
        spawned += count(&drain_all(&sup), "worker_spawned");
    }
    sup.force_terminate_groups(&["crash"]).unwrap();
    assert!(
        rounds > 10 && spawned > 300,
        "{rounds} rounds, {spawned} spawns"
    );
}
