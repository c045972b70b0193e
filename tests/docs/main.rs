//! The reference documentation in docs/ stays current: every function of the header, every result,
//! every key the parsers accept, every event kind and field, every snapshot field, every protocol
//! line and every `MPSUP_*` variable is documented, and every relative Markdown link stays inside
//! the repository.
//!
//! The lists come from the library itself wherever it can say them (the parsers name the keys they
//! accept when they reject an unknown one; `mpsup_result_name` names every result; a real
//! supervisor gives a real snapshot), and otherwise from the source (the header, `EventKind`).

mod calls_and_keys;
#[path = "../common/mod.rs"]
mod common;
mod schemas;
mod texts;

use common::{secs, Views};

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::path::{Path, PathBuf};

use mpsupervisor::ffi::mpsup_result_name;
use mpsupervisor::Supervisor;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn reference() -> String {
    read("docs/reference.md")
}

/// Every page under docs/, concatenated.
fn all_docs() -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap());
            text.push('\n');
        }
    }
    text
}

/// The lines of `doc` from the heading `heading` (exact line) to the next heading of the same or
/// a higher level.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading `{heading}` in the docs"))
        + 1;
    let body = &doc[start + heading.len()..];
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            break;
        }
        offset += line.len();
    }
    &doc[start..start + heading.len() + offset]
}

/// The keys named in the first column of the Markdown tables of `text` ("| `key` | ...").
fn table_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
        .collect()
}

/// The names serde lists in "expected one of `a`, `b`" (or "expected `a` or `b`", "expected `a`").
fn expected_names(message: &str) -> Vec<String> {
    let tail = message
        .split_once("expected one of ")
        .or_else(|| message.split_once("expected "))
        .unwrap_or_else(|| panic!("no list of expected names in: {message}"))
        .1;
    let mut names = Vec::new();
    let mut rest = tail;
    // Names are in backticks, separated by ", "; the list ends at the first other text.
    while let Some(after) = rest.strip_prefix('`') {
        let (name, more) = after.split_once('`').expect("a closing backtick");
        names.push(name.to_string());
        match more
            .strip_prefix(", ")
            .or_else(|| more.strip_prefix(" or "))
        {
            Some(next) => rest = next,
            None => break,
        }
    }
    assert!(!names.is_empty(), "no names in: {message}");
    names
}

fn config_error(groups_json: &str) -> String {
    let sup = Supervisor::new().unwrap();
    match sup.configure_json(groups_json) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("accepted: {groups_json}"),
    }
}

fn logging_error(settings_json: &str) -> String {
    let sup = Supervisor::new().unwrap();
    match sup.configure_logging_json(settings_json) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("accepted: {settings_json}"),
    }
}

/// The functions the header declares.
fn header_functions() -> BTreeSet<String> {
    let header = read("include/mpsupervisor.h");
    let mut out = BTreeSet::new();
    for (i, _) in header.match_indices("mpsup_") {
        let name: String = header[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if header[i + name.len()..].starts_with('(') && !header[..i].ends_with('`') {
            out.insert(name);
        }
    }
    assert!(out.len() >= 20, "too few functions found: {out:?}");
    out
}

/// Both ways: the rows of `table` are the keys `known` (what `source`, the parser or the schema,
/// has), none missing and none stale.
fn same_keys(what: &str, source: &str, table: &BTreeSet<String>, known: &BTreeSet<String>) {
    let missing: Vec<_> = known.difference(table).collect();
    assert!(
        missing.is_empty(),
        "{what}: keys of the {source} missing from the docs: {missing:?}"
    );
    let stale: Vec<_> = table.difference(known).collect();
    assert!(
        stale.is_empty(),
        "{what}: rows the {source} does not have: {stale:?}"
    );
}
