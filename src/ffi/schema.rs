//! `mpsup_schema_json`: the JSON Schemas of what the C API takes and returns, so a host can
//! check or present a configuration without the repository.

use std::ffi::c_char;

use super::boundary::{guard, into_c_string, out, text};
use super::mpsup_result;
use crate::error::Error;
use crate::schema;

/// Writes to `*out_json` the JSON Schema (draft 2020-12) named by `which`: `"groups"` (what
/// `mpsup_configure_process_groups` takes), `"restart-options"` (the `options_json` of
/// `mpsup_restart_groups`), `"logging"` (what `mpsup_configure_lifecycle_logging` takes),
/// `"snapshot"`, `"status"` and `"events"` (what `mpsup_snapshot_json`, `mpsup_status_json`
/// and `mpsup_drain_events_json` write). Each is the file `schema/<which>.schema.json` of the
/// library's repository, byte for byte. Another name gives `MPSUP_ERR_INVALID_ARGUMENT` naming
/// the known ones. Needs no supervisor; any thread. Free it with `mpsup_string_free`.
#[no_mangle]
pub extern "C" fn mpsup_schema_json(
    which: *const c_char,
    out_json: *mut *mut c_char,
) -> mpsup_result {
    guard(|| {
        // SAFETY: a NUL-terminated string (checked non-NULL by `text`).
        let which = unsafe { text(which, "which") }?;
        out(out_json, "out_json")?;
        let json = schema::schema_json(which).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "which: unknown schema '{which}', expected one of {}",
                schema::NAMES.join(", ")
            ))
        })?;
        // SAFETY: checked non-NULL.
        unsafe { out_json.write(into_c_string(json)) };
        Ok(())
    })
}
