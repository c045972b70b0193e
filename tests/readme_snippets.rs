//! Every fenced code block of every README runs as written.
//!
//! Each README's blocks run in order, as a new user would paste them, in a *view* of the checkout:
//! a directory holding a symlink to every top-level entry of the repository, except `target`,
//! which is a build directory of its own (`target/readme-view/target`), so the `cargo build`s the
//! READMEs ask for never wait on (or replace) the build that `cargo test` is using. `HOME` and
//! `TMPDIR` point into a temporary directory that is removed afterwards, so `make install
//! PREFIX=$HOME/.local` and `mktemp -d` stay inside it.
//!
//! How each block runs, by its info string:
//! - `c`: saved as the file the README names (`example.c`), built with the exact command the
//!   README gives after it ("build it with `cc …`"), and the program it makes is run.
//! - `sh`: run with `sh -e` from the view's root. The README's two set-up commands `make demo` and
//!   `make test` are checked to be there but not run (the test suite is what `make test` runs).
//! - `python`: run by the Python that `python_command` gives.
//! - `go`: saved as main.go of a new module that replaces the package by the checkout's
//!   `bindings/go` (the steps of bindings/go/README.md), then `go run .`.
//! - `json`: parsed. `text`: output shown to the reader, not run.
//! - `<lang> excerpt=FILE`: a fragment; every line of it must occur in FILE.
//! - `<lang> no-run`: shown, not run (kept rare: a command that installs system packages, or one that needs the network, which CI has not).
//!
//! A block without an info string fails the test, so nothing is skipped silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TempDir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Debug)]
struct Block {
    lang: String,
    attrs: Vec<String>,
    code: String,
    /// 1-based line of the opening fence.
    line: usize,
    /// The Markdown text after the block, up to the next block.
    after: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match open.as_mut() {
            None if line.starts_with("```") => {
                let mut words = line[3..].split_whitespace().map(String::from);
                open = Some(Block {
                    lang: words.next().unwrap_or_default(),
                    attrs: words.collect(),
                    code: String::new(),
                    line: i + 1,
                    after: String::new(),
                });
            }
            None => {
                if let Some(last) = out.last_mut() {
                    last.after.push_str(line);
                    last.after.push('\n');
                }
            }
            Some(_) if line.starts_with("```") => out.push(open.take().unwrap()),
            Some(block) => {
                block.code.push_str(line);
                block.code.push('\n');
            }
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    out
}

/// The build directory of the views, next to the test binary's own target directory.
fn view_target() -> PathBuf {
    let dir = common::lib_dir()
        .parent()
        .unwrap()
        .join("readme-view")
        .join("target");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `target/readme-view/<name>`: the repository's top-level entries as symlinks, and `target`
/// as the views' own build directory. The path is stable, so cargo's incremental state stays
/// valid from run to run.
fn view(name: &str) -> PathBuf {
    let dir = view_target().parent().unwrap().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(root()).unwrap().flatten() {
        let file_name = entry.file_name();
        let skip = ["target", "build", ".git"].contains(&file_name.to_str().unwrap_or(""));
        if !skip {
            std::os::unix::fs::symlink(entry.path(), dir.join(&file_name)).unwrap();
        }
    }
    std::os::unix::fs::symlink(view_target(), dir.join("target")).unwrap();
    dir
}

/// The environment of one README's run.
struct Session {
    view: PathBuf,
    scratch: TempDir,
    /// Put first in PATH (a venv's bin).
    bin: Option<PathBuf>,
    /// The READMEs run one at a time: they share the views' build directory (and its
    /// target/install, which `make install` writes outside cargo's lock).
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

impl Session {
    fn new(name: &str) -> Session {
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let guard = ONE.lock().unwrap_or_else(|p| p.into_inner());
        let scratch = TempDir::new(&format!("readme-{name}"));
        for sub in ["home", "tmp"] {
            std::fs::create_dir_all(scratch.join(sub)).unwrap();
        }
        Session {
            view: view(name),
            scratch,
            bin: None,
            _one_at_a_time: guard,
        }
    }

    fn home(&self) -> PathBuf {
        self.scratch.join("home")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let real_home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        let cargo_home = std::env::var_os("CARGO_HOME")
            .unwrap_or_else(|| Path::new(&real_home).join(".cargo").into_os_string());
        let rustup_home = std::env::var_os("RUSTUP_HOME")
            .unwrap_or_else(|| Path::new(&real_home).join(".rustup").into_os_string());
        cmd.current_dir(&self.view)
            .env("HOME", self.home())
            .env("TMPDIR", self.scratch.join("tmp"))
            // The toolchains stay where they are installed, whatever HOME says.
            .env("CARGO_HOME", cargo_home)
            .env("RUSTUP_HOME", rustup_home)
            .env("CARGO_TARGET_DIR", view_target())
            // Go writes its module cache read-only; this keeps the scratch removable.
            .env("GOFLAGS", "-modcacherw")
            // Everything the Go blocks need is local; a download would fail on CI, so fail here.
            .env("GOPROXY", "off")
            .env("GOCACHE", view_target().join("go-build"))
            .env_remove("PKG_CONFIG_PATH")
            .env_remove("CGO_LDFLAGS")
            .env_remove("MPSUPERVISOR_LIBRARY")
            .env_remove("PYTHONPATH")
            // Not a sub-make of whatever make may have started cargo test.
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL");
        if let Some(bin) = &self.bin {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", bin.display()));
        }
        cmd
    }

    fn run(&self, what: &str, mut cmd: Command) -> String {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn sh(&self, what: &str, script: &str) -> String {
        let mut cmd = self.command("sh");
        cmd.arg("-e").arg("-c").arg(script);
        self.run(what, cmd)
    }
}

/// The commands of the README that are its set-up, checked but not run.
const SET_UP: [&str; 2] = ["make demo", "make test"];

/// The Python that runs `python` blocks, and the environment it needs. A session with a venv of
/// its own (the Python README's, whose `sh` block pip-installs the package into it) uses that
/// venv's python with no environment variable, as a user would; the others use the source tree
/// and the view's debug build.
fn python_command(session: &Session) -> Command {
    let mut cmd = session.command("python3");
    if session.bin.is_none() {
        cmd.env("PYTHONPATH", root().join("bindings/python")).env(
            "MPSUPERVISOR_LIBRARY",
            view_target().join("debug/libmpsupervisor.so"),
        );
    } else {
        cmd.env_remove("PYTHONPATH")
            .env_remove("MPSUPERVISOR_LIBRARY");
    }
    cmd
}

/// The command in backticks after "build it with" in `text`.
fn build_line(text: &str) -> String {
    let lower = text.to_lowercase();
    let at = lower
        .find("build it with")
        .expect("the README gives the build line after the C block (\"build it with `...`\")");
    let rest = &text[at..];
    let start = rest.find('`').unwrap() + 1;
    let end = start + rest[start..].find('`').unwrap();
    rest[start..end].to_string()
}

/// The output named by `-o NAME` in a compiler command line.
fn output_of(build: &str) -> String {
    let words: Vec<&str> = build.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "-o")
        .unwrap_or_else(|| panic!("the build line names no output (-o): {build}"));
    words[at + 1].to_string()
}

/// Runs every block of `readme` (a path from the repository root) in order; returns what ran.
fn run_readme(readme: &str, session: &Session) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(readme)).unwrap();
    let mut ran = Vec::new();
    let mut go_programs = 0;
    for block in blocks(&text) {
        let at = format!("{readme}:{}", block.line);
        assert!(
            !block.lang.is_empty(),
            "{at}: a code block without an info string (say `text` for output)"
        );
        if block.attrs.iter().any(|a| a == "no-run") {
            ran.push(format!("{at} {} (no-run)", block.lang));
            continue;
        }
        if let Some(file) = block.attrs.iter().find_map(|a| a.strip_prefix("excerpt=")) {
            let source = std::fs::read_to_string(root().join(file)).unwrap();
            for line in block.code.lines().map(str::trim) {
                if line.is_empty() || line == "// ..." {
                    continue;
                }
                assert!(
                    source.lines().any(|l| l.trim() == line),
                    "{at}: not a line of {file}: {line}"
                );
            }
            ran.push(format!("{at} {} excerpt of {file}", block.lang));
            continue;
        }
        match block.lang.as_str() {
            "c" => {
                let build = build_line(&block.after);
                let source = build
                    .split_whitespace()
                    .find(|w| w.ends_with(".c"))
                    .expect("the build line names its .c file")
                    .to_string();
                std::fs::write(session.view.join(&source), &block.code).unwrap();
                session.sh(&format!("{at}: {build}"), &build);
                let program = output_of(&build);
                session.sh(&format!("{at}: ./{program}"), &format!("./{program}"));
                ran.push(format!("{at} c: {build} && ./{program}"));
            }
            "sh" => {
                let mut script = String::new();
                for line in block.code.lines() {
                    let command = line.split('#').next().unwrap().trim();
                    if SET_UP.contains(&command) {
                        continue;
                    }
                    script.push_str(line);
                    script.push('\n');
                }
                if script.trim().is_empty() {
                    ran.push(format!("{at} sh: set-up commands only"));
                    continue;
                }
                session.sh(&format!("{at}: sh block"), &script);
                ran.push(format!("{at} sh"));
            }
            "python" => {
                let mut cmd = python_command(session);
                cmd.arg("-c").arg(&block.code);
                session.run(&format!("{at}: python block"), cmd);
                ran.push(format!("{at} python"));
            }
            "go" => {
                go_programs += 1;
                let dir = session.home().join(format!("go-snippet-{go_programs}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("main.go"), &block.code).unwrap();
                let module = "github.com/mpsupervisor/mpsupervisor/bindings/go";
                let steps = format!(
                    "cargo build\ncd '{}'\ngo mod init example.com/snippet\n\
                     go mod edit -require={module}@v0.0.0 -replace={module}='{}'\ngo run .\n",
                    dir.display(),
                    session.view.join("bindings/go").display()
                );
                session.sh(&format!("{at}: go block"), &steps);
                ran.push(format!("{at} go"));
            }
            "json" => {
                let value = serde_json::from_str::<serde_json::Value>(&block.code)
                    .unwrap_or_else(|e| panic!("{at}: not JSON: {e}"));
                // An array of groups is a configuration: the library must take it as shown.
                let groups = value.as_array().is_some_and(|a| {
                    !a.is_empty()
                        && a.iter()
                            .all(|g| g.get("name").is_some() && g.get("argv").is_some())
                });
                if groups {
                    mpsupervisor::Supervisor::new()
                        .unwrap()
                        .configure_json(&block.code)
                        .unwrap_or_else(|e| {
                            panic!("{at}: the library refuses this configuration: {e}")
                        });
                    ran.push(format!("{at} json configured"));
                } else {
                    ran.push(format!("{at} json parsed"));
                }
            }
            "text" => ran.push(format!("{at} text (output)")),
            other => panic!("{at}: no rule to run a `{other}` block"),
        }
    }
    ran
}

#[test]
fn the_block_reader_keeps_info_strings_and_the_text_after() {
    let md = "intro\n```c\nint x;\n```\nBuild it with `cc x.c -o x`.\n```sh no-run\nls\n```\n";
    let b = blocks(md);
    assert_eq!(b.len(), 2);
    assert_eq!((b[0].lang.as_str(), b[0].code.as_str()), ("c", "int x;\n"));
    assert_eq!(build_line(&b[0].after), "cc x.c -o x");
    assert_eq!(output_of("cc x.c -o x"), "x");
    assert_eq!(
        (b[1].lang.as_str(), b[1].attrs.clone()),
        ("sh", vec!["no-run".to_string()])
    );
    assert_eq!(b[1].line, 6);
}

#[test]
fn readme_blocks_run_as_written() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let first_sh = blocks(&text)
        .into_iter()
        .find(|b| b.lang == "sh")
        .expect("the README starts with its commands");
    for command in SET_UP {
        assert!(
            first_sh
                .code
                .lines()
                .any(|l| l.split('#').next().unwrap().trim() == command),
            "the README's first commands do not include `{command}`"
        );
    }
    let session = Session::new("readme");
    // What `make demo` and `make test` (not run here) leave: the release build the C example
    // links, and the debug build the Python blocks load.
    session.sh("cargo build", "cargo build --release && cargo build");
    let ran = run_readme("README.md", &session);
    for kind in [" c: ", " go", " python", " sh"] {
        assert!(
            ran.iter().any(|r| r.contains(kind)),
            "no{kind} block ran: {ran:#?}"
        );
    }
}

#[test]
fn go_readme_blocks_run_as_written() {
    let session = Session::new("go");
    let ran = run_readme("bindings/go/README.md", &session);
    let runs = ran.iter().filter(|r| r.ends_with(" sh")).count();
    assert!(runs >= 4, "{ran:#?}");
}

#[test]
fn bench_readme_blocks_run_as_written() {
    let session = Session::new("bench");
    let ran = run_readme("bench/README.md", &session);
    assert!(!ran.is_empty());
}

/// The Python README as a new user follows it: its `sh` block makes a venv and pip-installs the
/// package (which builds and bundles the library), then every `python` block runs with that venv's
/// python, from the session's folder, with no environment variable.
#[test]
fn python_readme_blocks_run_as_written() {
    let mut session = Session::new("python");
    // The README's first block makes `.venv` where it runs and pip-installs into it; the
    // `python` blocks after it then run with that venv's python. Made afresh each run.
    let venv = session.view.join(".venv");
    let _ = std::fs::remove_dir_all(&venv);
    session.bin = Some(venv.join("bin"));
    let ran = run_readme("bindings/python/README.md", &session);
    assert!(ran.iter().any(|r| r.ends_with(" python")), "{ran:#?}");
}
