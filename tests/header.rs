//! The committed header must be exactly what cbindgen generates now, and must compile alone as
//! C11 and C++17, and twice in one translation unit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate() -> String {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root())
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("header is UTF-8")
}

#[test]
fn header_is_current() {
    let path = root().join("include/mpsupervisor.h");
    let fresh = generate();
    if std::env::var_os("MPSUP_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write header");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/mpsupervisor.h is stale: run `MPSUP_UPDATE_HEADER=1 cargo test --test header` and commit it"
    );
}

fn compile(compiler: &str, std: &str, source: &str, ext: &str) {
    let dir = common::TempDir::new("header");
    let src = dir.join(format!("use_header.{ext}"));
    std::fs::write(&src, source).unwrap();
    let status = Command::new(compiler)
        .args([
            std,
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-fsyntax-only",
            "-I",
        ])
        .arg(root().join("include"))
        .arg(&src)
        .status()
        .expect("compiler runs");
    assert!(status.success(), "{compiler} {std} rejected the header");
}

const USE: &str = r#"
#include <mpsupervisor.h>
#include <mpsupervisor.h>
int main(void) {
    mpsup_supervisor sup = {0};
    mpsup_result r = mpsup_supervisor_new(&sup);
    return r == MPSUP_OK && mpsup_result_name(r) != 0 && mpsup_version() != 0 ? 0 : 1;
}
"#;

#[test]
fn header_compiles_as_c11_twice_included() {
    compile("cc", "-std=c11", USE, "c");
}

#[test]
fn header_compiles_as_cpp17() {
    compile("c++", "-std=c++17", USE, "cpp");
}

#[test]
fn header_names_every_export() {
    let header =
        std::fs::read_to_string(Path::new(&root()).join("include/mpsupervisor.h")).unwrap();
    for name in [
        "mpsup_supervisor_new",
        "mpsup_supervisor_free",
        "mpsup_configure_process_groups",
        "mpsup_start_groups",
        "mpsup_wait_ready",
        "mpsup_stop_groups",
        "mpsup_force_terminate_groups",
        "mpsup_snapshot_json",
        "mpsup_drain_events_json",
        "mpsup_event_fd",
        "mpsup_string_free",
        "mpsup_result_name",
        "mpsup_last_error_message",
        "mpsup_version",
        "mpsup_worker_notify_ready",
        "mpsup_worker_wait_stop",
        "typedef struct mpsup_supervisor",
        "typedef enum mpsup_result",
    ] {
        assert!(header.contains(name), "header lacks {name}");
    }
}
