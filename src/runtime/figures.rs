//! Per-worker figures read from /proc when a snapshot is taken: outside the lock, merged into
//! the snapshot's entries by pid.

use serde_json::Value;

use crate::os::notify::process_figures;

/// Fills `rss_bytes` and `cpu_ms` of every live entry of `snapshot` (group → entries).
pub fn fill(snapshot: &mut Value) {
    let Some(groups) = snapshot.as_object_mut() else {
        return;
    };
    for entries in groups.values_mut() {
        let Some(entries) = entries.as_array_mut() else {
            continue;
        };
        for entry in entries {
            let alive = entry["alive"].as_bool().unwrap_or(false);
            let pid = entry["pid"].as_i64().unwrap_or(0) as i32;
            if !alive || pid <= 0 {
                continue;
            }
            if let Some((cpu_ms, rss)) = process_figures(pid) {
                entry["cpu_ms"] = cpu_ms.into();
                entry["rss_bytes"] = rss.into();
            }
        }
    }
}
