//! The install step: `make install PREFIX=<dir>` puts the header, the shared library with its
//! versioned SONAME and symlinks, the static library and `mpsupervisor.pc` under a fresh prefix;
//! a C program built with `pkg-config --cflags --libs mpsupervisor` then runs a real worker,
//! linked dynamically and statically.
//!
//! The install builds the release library in `target/install` (about a minute the first time,
//! incremental afterwards); it runs once per test binary and the tests share it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn soname() -> String {
    format!("libmpsupervisor.so.{}", env!("CARGO_PKG_VERSION_MAJOR"))
}

fn realname() -> String {
    format!("libmpsupervisor.so.{VERSION}")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn run_ok(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} cannot run: {e}"));
    assert!(out.status.success(), "{}", describe(what, &out));
    out
}

/// This run's directory under target/<profile>/packaging, holding the prefix and the programs.
/// Directories of earlier runs whose process is gone are removed first (a prefix holds ~40 MB).
fn work_dir() -> PathBuf {
    let base = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("packaging");
    std::fs::create_dir_all(&base).unwrap();
    for entry in std::fs::read_dir(&base).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = match name.parse::<u32>() {
            Ok(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
            Err(_) => true,
        };
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `make install PREFIX=<work dir>/prefix` once for this test binary; returns the work
/// directory. A failure is remembered, so every test reports it without installing again.
fn installed() -> PathBuf {
    static INSTALLED: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
    let mut slot = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    let result = slot.get_or_insert_with(|| {
        let dir = work_dir();
        let out = Command::new("make")
            .arg("-C")
            .arg(root())
            .arg("--no-print-directory")
            .arg("install")
            .arg(format!("PREFIX={}", dir.join("prefix").display()))
            // Not a sub-make of whatever make may have started cargo test.
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .output()
            .map_err(|e| format!("make cannot run: {e}"));
        match out {
            Ok(out) if out.status.success() => Ok(dir),
            Ok(out) => Err(describe("make install", &out)),
            Err(e) => Err(e),
        }
    });
    match result {
        Ok(dir) => dir.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn prefix(dir: &Path) -> PathBuf {
    dir.join("prefix")
}

/// A shell command with PKG_CONFIG_PATH pointing at the installed .pc file only.
fn sh(dir: &Path, script: &str, args: &[&Path]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .env("PKG_CONFIG_PATH", prefix(dir).join("lib/pkgconfig"))
        .env_remove("PKG_CONFIG_LIBDIR")
        .env_remove("LD_LIBRARY_PATH");
    cmd
}

/// Starts one `/bin/sh` worker that speaks the protocol, waits until it is ready, stops it
/// gracefully and prints what it saw: `version`, `snapshot`, `events` lines, then `ok`.
const PROGRAM: &str = r#"
#include <mpsupervisor.h>
#include <stdio.h>

static int fail(const char *call, mpsup_result rc)
{
    fprintf(stderr, "%s: %s: %s\n", call, mpsup_result_name((uint32_t)rc),
            mpsup_last_error_message());
    return 1;
}

int main(void)
{
    const char *groups =
        "[{\"name\": \"sh\", \"readiness\": \"notify\", \"argv\": [\"/bin/sh\", \"-c\", "
        "\"echo READY >&3; while read -r l <&3; do case $l in STOP*) exit 0;; esac; done\"]}]";
    const char *names[] = {"sh"};
    mpsup_supervisor sup;
    mpsup_result rc;
    bool ready = false;
    char *json = NULL;

    printf("version %s\n", mpsup_version());
    if ((rc = mpsup_supervisor_new(&sup)) != MPSUP_OK)
        return fail("mpsup_supervisor_new", rc);
    if ((rc = mpsup_configure_process_groups(sup, groups)) != MPSUP_OK)
        return fail("mpsup_configure_process_groups", rc);
    if ((rc = mpsup_start_groups(sup, names, 1)) != MPSUP_OK)
        return fail("mpsup_start_groups", rc);
    if ((rc = mpsup_wait_ready(sup, 30.0, &ready)) != MPSUP_OK)
        return fail("mpsup_wait_ready", rc);
    if ((rc = mpsup_snapshot_json(sup, &json)) != MPSUP_OK)
        return fail("mpsup_snapshot_json", rc);
    printf("snapshot %s\n", json);
    mpsup_string_free(json);
    if ((rc = mpsup_stop_groups(sup, 30.0, true)) != MPSUP_OK)
        return fail("mpsup_stop_groups", rc);
    if ((rc = mpsup_drain_events_json(sup, 0, &json)) != MPSUP_OK)
        return fail("mpsup_drain_events_json", rc);
    printf("events %s\n", json);
    mpsup_string_free(json);
    if ((rc = mpsup_supervisor_free(sup)) != MPSUP_OK)
        return fail("mpsup_supervisor_free", rc);
    printf(ready ? "ok\n" : "not ready\n");
    return ready ? 0 : 1;
}
"#;

/// Compiles PROGRAM with `cc -std=c11 ... <flags from the script>` into `dir/name`.
fn build(dir: &Path, name: &str, pkg_config: &str) -> PathBuf {
    // One source per program: the tests run in parallel.
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, PROGRAM).unwrap();
    let exe = dir.join(name);
    let script =
        format!("cc -std=c11 -Wall -Wextra -Wpedantic -Werror -o \"$1\" \"$2\" {pkg_config}");
    run_ok(
        &format!("building {name}: {script}"),
        &mut sh(dir, &script, &[&exe, &src]),
    );
    exe
}

/// Runs a built program and checks it did the whole round trip.
fn check_runs(exe: &Path, ld_library_path: Option<&Path>) {
    let mut cmd = Command::new(exe);
    cmd.env_remove("LD_LIBRARY_PATH");
    if let Some(p) = ld_library_path {
        cmd.env("LD_LIBRARY_PATH", p);
    }
    let out = run_ok(&exe.display().to_string(), &mut cmd);
    let stdout = text(&out.stdout);
    let line = |tag: &str| -> &str {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .unwrap_or_else(|| panic!("no {tag:?} line in {stdout}"))
    };
    assert_eq!(line("version "), VERSION);
    let snapshot: Value = serde_json::from_str(line("snapshot ")).unwrap();
    let workers = snapshot["sh"].as_array().expect("group sh in the snapshot");
    assert_eq!(workers.len(), 1, "{snapshot}");
    assert_eq!(workers[0]["ready"], true, "{snapshot}");
    let events: Value = serde_json::from_str(line("events ")).unwrap();
    let stopped: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "worker_stopped")
        .collect();
    assert_eq!(stopped.len(), 1, "{events}");
    assert_eq!(stopped[0]["mode"], "graceful", "{events}");
    assert_eq!(stopped[0]["exit_code"], 0, "{events}");
    assert_eq!(stdout.lines().last(), Some("ok"), "{stdout}");
}

/// The output of a binutils-style tool (readelf, nm, ldd) run on one file.
fn tool(what: &str, args: &[&str], file: &Path) -> String {
    let mut cmd = Command::new(what);
    cmd.args(args).arg(file).env_remove("LD_LIBRARY_PATH");
    text(&run_ok(&format!("{what} {}", file.display()), &mut cmd).stdout)
}

#[test]
fn install_puts_header_versioned_libraries_and_pc_file_under_the_prefix() {
    let dir = installed();
    let lib = prefix(&dir).join("lib");
    let header = std::fs::read(prefix(&dir).join("include/mpsupervisor.h")).unwrap();
    assert_eq!(
        header,
        std::fs::read(root().join("include/mpsupervisor.h")).unwrap()
    );

    let real = lib.join(realname());
    assert!(real.is_file() && !real.is_symlink(), "{}", real.display());
    assert_eq!(
        std::fs::read_link(lib.join(soname())).unwrap(),
        PathBuf::from(realname())
    );
    assert_eq!(
        std::fs::read_link(lib.join("libmpsupervisor.so")).unwrap(),
        PathBuf::from(soname())
    );
    let dynamic = tool("readelf", &["-d"], &real);
    assert!(
        dynamic.contains(&format!("Library soname: [{}]", soname())),
        "{dynamic}"
    );
    let archive = lib.join("libmpsupervisor.a");
    assert!(std::fs::metadata(&archive).unwrap().len() > 0);
    let symbols = tool("nm", &["--defined-only", "-g"], &archive);
    assert!(
        symbols.lines().any(|l| l.ends_with(" T mpsup_version")),
        "the archive defines mpsup_version"
    );

    // The helper programs, where the library looks for them (next to it, in mpsupervisor/,
    // and in the directory built into it for programs linked with the archive).
    for helper in ["mpsup-keeper", "mpsup-exec"] {
        let path = lib.join("mpsupervisor").join(helper);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o755
        );
    }
    let so = std::fs::read(&real).unwrap();
    let helper_dir = lib.join("mpsupervisor").display().to_string();
    assert!(
        so.windows(helper_dir.len())
            .any(|w| w == helper_dir.as_bytes()),
        "the library does not know {helper_dir}"
    );

    let pc = std::fs::read_to_string(lib.join("pkgconfig/mpsupervisor.pc")).unwrap();
    assert!(!pc.contains('@'), "unsubstituted template variable:\n{pc}");
    let out = run_ok(
        "pkg-config",
        &mut sh(
            &dir,
            "pkg-config --modversion mpsupervisor && pkg-config --cflags --libs mpsupervisor \
             && pkg-config --static --libs mpsupervisor",
            &[],
        ),
    );
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(lines[0], VERSION);
    assert_eq!(
        lines[1],
        format!(
            "-I{} -L{} -lmpsupervisor",
            prefix(&dir).join("include").display(),
            lib.display()
        )
    );
    assert!(
        lines[2].contains("-lmpsupervisor -l"),
        "the static link lists native libraries: {}",
        lines[2]
    );
}

#[test]
fn a_c_program_built_with_pkg_config_runs_against_the_installed_shared_library() {
    let dir = installed();
    let lib = prefix(&dir).join("lib");
    let exe = build(
        &dir,
        "check_dynamic",
        "$(pkg-config --cflags --libs mpsupervisor)",
    );
    let needed = tool("readelf", &["-d"], &exe);
    assert!(
        needed.contains(&format!("Shared library: [{}]", soname())),
        "the program records the SONAME, not the unversioned name:\n{needed}"
    );
    // ldd resolves through LD_LIBRARY_PATH like the run below.
    let mut ldd = Command::new("ldd");
    ldd.arg(&exe).env("LD_LIBRARY_PATH", &lib);
    let ldd = text(&run_ok("ldd", &mut ldd).stdout);
    assert!(
        ldd.contains(&format!("{} => {}", soname(), lib.join(soname()).display())),
        "{ldd}"
    );
    check_runs(&exe, Some(&lib));
}

#[test]
fn a_c_program_linked_statically_through_pkg_config_static_runs_without_the_shared_library() {
    let dir = installed();
    // Both libraries are installed, so -lmpsupervisor alone would pick the shared one.
    let exe = build(
        &dir,
        "check_static",
        "$(pkg-config --static --cflags --libs mpsupervisor \
         | sed 's/-lmpsupervisor/-Wl,-Bstatic -lmpsupervisor -Wl,-Bdynamic/')",
    );
    let dynamic = tool("readelf", &["-d"], &exe);
    assert!(!dynamic.contains("libmpsupervisor"), "{dynamic}");
    let ldd = tool("ldd", &[], &exe);
    assert!(!ldd.contains("libmpsupervisor"), "{ldd}");
    check_runs(&exe, None);
}
