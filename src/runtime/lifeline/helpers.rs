//! Finding the library's helper programs (`mpsup-keeper`, `mpsup-exec`) next to its code.

use std::path::{Path, PathBuf};

/// A helper program next to the object that holds this code (libmpsupervisor.so, or a program
/// linked with the rlib or the staticlib): `DIR/NAME` (the Python package, cargo's target
/// directory), `DIR/mpsupervisor/NAME` (`make install`), `DIR/../NAME` (cargo's `deps/`), or
/// in the directory `make install` builds in (`MPSUP_HELPER_DIR` at build time).
pub(crate) fn find_helper(name: &str) -> Option<PathBuf> {
    // Looked up once per process image: `dladdr` takes the dynamic loader's lock, which a child
    // forked from a busy multi-threaded host must not wait for (the fork copies the answer).
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let dir = DIR
        .get_or_init(|| own_object().and_then(|p| p.parent().map(Path::to_path_buf)))
        .clone();
    let built_in = option_env!("MPSUP_HELPER_DIR").map(|d| Path::new(d).join(name));
    dir.into_iter()
        .flat_map(|dir| {
            [
                dir.join(name),
                dir.join("mpsupervisor").join(name),
                dir.join("..").join(name),
            ]
        })
        .chain(built_in)
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// The file of the loaded object that holds this function.
fn own_object() -> Option<PathBuf> {
    let Some(name) = crate::os::object_file_of(find_helper as *const ()) else {
        return std::env::current_exe().ok();
    };
    // The main program's name may be relative or empty; its real path is /proc/self/exe.
    let path = PathBuf::from(&name);
    if name.is_empty() || !path.is_absolute() {
        return std::env::current_exe().ok();
    }
    Some(std::fs::canonicalize(&path).unwrap_or(path))
}
