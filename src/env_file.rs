//! Environment files (`env_files`) in systemd's `EnvironmentFile=` syntax, parsed as systemd's
//! `parse_env_file_internal` does:
//! - blank lines, and lines whose first non-blank character is `#` or `;`, are skipped (a
//!   comment ending in `\` does not continue: systemd 254 and later);
//! - `KEY=VALUE`, blanks around the key and before the value ignored, an optional `export `
//!   before the key; the key is a shell name (`[A-Za-z_][A-Za-z0-9_]*`);
//! - unquoted, trailing blanks are stripped, `\c` is `c`, and `\` at the end of a line joins the
//!   next one;
//! - `'...'` is literal; in `"..."`, `\` escapes only `"`, `\`, `` ` ``, `$` and the newline (joined),
//!   and stays otherwise; a newline inside quotes is kept; quoted and unquoted parts join
//!   (`"a b"c` is `a bc`).
//!
//! Unlike systemd, which skips them with a log line, a line without `=`, an invalid name or an
//! unterminated quote is an error naming the line: a worker never silently misses a variable.

use std::io;
use std::path::Path;

/// Why a file could not be parsed: its line (from 1) and what is wrong there.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The line the assignment starts on.
    pub line: usize,
    /// What is wrong.
    pub why: &'static str,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    Single,
    Double,
    DoubleEscape,
    Comment,
}

/// The assignment being read.
#[derive(Default)]
struct Entry {
    key: String,
    value: String,
    /// Where the value's unescaped trailing blanks start.
    trailing: Option<usize>,
    line: usize,
}

fn blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r'
}

fn valid_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `(KEY, VALUE)` pairs of `text`, in order (a later one of a key replaces an earlier one
/// when applied).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    use State::*;
    let mut out = Vec::new();
    let mut state = PreKey;
    let mut e = Entry::default();
    let mut line = 1;
    for c in text.chars() {
        state = match (state, c) {
            (PreKey, '#' | ';') => Comment,
            (PreKey, c) if blank(c) || c == '\n' => PreKey,
            (PreKey, c) => {
                e = Entry {
                    key: c.to_string(),
                    line,
                    ..Entry::default()
                };
                Key
            }
            (Key, '\n') => return Err(error(e.line, "no '=' in the line")),
            (Key, '=') => {
                e.key = name_of(&e.key, e.line)?;
                PreValue
            }
            (Key, c) => {
                e.key.push(c);
                Key
            }
            (PreValue | Value, '\n') => {
                finish(&mut e, &mut out);
                PreKey
            }
            (PreValue, c) if blank(c) => PreValue,
            (PreValue, '\'') => Single,
            (PreValue, '"') => Double,
            (PreValue | Value, '\\') => {
                e.trailing = None;
                ValueEscape
            }
            (PreValue | Value, c) => {
                if !blank(c) {
                    e.trailing = None;
                } else if e.trailing.is_none() {
                    e.trailing = Some(e.value.len());
                }
                e.value.push(c);
                Value
            }
            (ValueEscape, c) => {
                if c != '\n' {
                    e.value.push(c);
                }
                Value
            }
            (Single, '\'') | (Double, '"') => PreValue,
            (Single, c) => {
                e.value.push(c);
                Single
            }
            (Double, '\\') => DoubleEscape,
            (Double, c) => {
                e.value.push(c);
                Double
            }
            (DoubleEscape, c) => {
                match c {
                    '"' | '\\' | '`' | '$' => e.value.push(c),
                    '\n' => {}
                    c => {
                        e.value.push('\\');
                        e.value.push(c);
                    }
                }
                Double
            }
            (Comment, '\n') => PreKey,
            (Comment, _) => Comment,
        };
        if c == '\n' {
            line += 1;
        }
    }
    match state {
        PreKey | Comment => {}
        Key => return Err(error(e.line, "no '=' in the line")),
        PreValue | Value | ValueEscape => finish(&mut e, &mut out),
        Single | Double | DoubleEscape => return Err(error(e.line, "unterminated quote")),
    }
    Ok(out)
}

fn error(line: usize, why: &'static str) -> ParseError {
    ParseError { line, why }
}

/// The key before `=`: blanks trimmed, `export ` dropped, a shell name.
fn name_of(raw: &str, line: usize) -> Result<String, ParseError> {
    let mut key = raw.trim_matches(blank);
    if let Some(rest) = key.strip_prefix("export") {
        if rest.starts_with(blank) {
            key = rest.trim_start_matches(blank);
        }
    }
    if !valid_name(key) {
        return Err(error(line, "not a valid variable name before '='"));
    }
    Ok(key.to_string())
}

fn finish(e: &mut Entry, out: &mut Vec<(String, String)>) {
    let mut entry = std::mem::take(e);
    if let Some(at) = entry.trailing {
        entry.value.truncate(at);
    }
    out.push((entry.key, entry.value));
}

/// Reads and parses one file of `env_files` (`-` before the path: a missing file is empty).
/// The error names the file (and its line).
pub fn read(entry: &str) -> io::Result<Vec<(String, String)>> {
    let (optional, path) = match entry.strip_prefix('-') {
        Some(path) => (true, path),
        None => (false, entry),
    };
    let text = match std::fs::read(Path::new(path)) {
        Ok(bytes) => bytes,
        Err(e) if optional && e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("env_files: {path}: {e}"))),
    };
    let text = String::from_utf8(text).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("env_files: {path}: not UTF-8"),
        )
    })?;
    parse(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("env_files: {path}:{}: {}", e.line, e.why),
        )
    })
}

#[cfg(test)]
mod tests;
