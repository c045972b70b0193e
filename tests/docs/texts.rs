//! Every `MPSUP_*` variable and protocol line is documented; every relative link resolves.

use super::*;

/// Every string literal in src/ that starts with an `MPSUP_` name (set in workers or read from
/// the environment).
fn mpsup_variables() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices("\"MPSUP_") {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if name.len() > "MPSUP_".len() && !name.starts_with("MPSUP_ERR") {
                        out.insert(name);
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&root().join("src"), &mut out);
    out
}

#[test]
fn every_mpsup_environment_variable_is_documented() {
    let vars = mpsup_variables();
    for expected in ["MPSUP_GROUP", "MPSUP_WORKER_ID", "MPSUP_CONTROL_FD"] {
        assert!(
            vars.contains(expected),
            "{expected} not found in src: {vars:?}"
        );
    }
    let docs = all_docs();
    for var in vars {
        assert!(docs.contains(&format!("`{var}")), "{var} is not documented");
    }
}

/// The protocol lines of src/protocol.rs, the one list the supervisor and the worker helpers
/// use: what a worker sends (`from_worker`) and what it is sent (`to_worker`, whose
/// `BOOTSTRAP ` is a prefix).
fn protocol_lines() -> (BTreeSet<String>, BTreeSet<String>) {
    let source = read("src/protocol.rs");
    let section = |name: &str| -> &str {
        let start = source
            .find(&format!("pub mod {name} {{"))
            .unwrap_or_else(|| panic!("no module {name} in src/protocol.rs"));
        let rest = &source[start..];
        &rest[..rest.find("\n}").unwrap_or(rest.len())]
    };
    let literal = |text: &str| -> BTreeSet<String> {
        text.match_indices("b\"")
            .filter_map(|(i, _)| {
                let rest = &text[i + 2..];
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == ' ')
                    .collect();
                (rest[word.len()..].starts_with('"') && !word.trim().is_empty())
                    .then(|| word.trim().to_string())
            })
            .collect()
    };
    (
        literal(section("from_worker")),
        literal(section("to_worker")),
    )
}

#[test]
fn every_protocol_line_is_in_the_protocol_table() {
    let (sent, received) = protocol_lines();
    assert!(
        sent.contains("READY") && sent.contains("HEARTBEAT"),
        "{sent:?}"
    );
    assert!(
        received.contains("STOP DRAIN") && received.contains("BOOTSTRAP"),
        "{received:?}"
    );
    let doc = read("docs/worker-protocol.md");
    let table = section(&doc, "## The control socket (descriptor 3)");
    for line in &sent {
        assert!(
            table.contains(&format!("| worker → supervisor | `{line}")),
            "worker line {line} is not in the protocol table"
        );
    }
    for line in &received {
        assert!(
            table.contains(&format!("| supervisor → worker | `{line}")),
            "supervisor line {line} is not in the protocol table"
        );
    }
}

/// Every Markdown file of the repository (not build output, not hidden directories).
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let skip = name.starts_with('.')
                    || ["target", "build", "node_modules", "__pycache__"].contains(&name.as_str())
                    || name.ends_with(".egg-info");
                if !skip {
                    walk(&path, out);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out
}

/// The targets of the inline links `[text](target)` and reference definitions `[x]: target` of
/// `text`, outside code fences and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Drop code spans.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let trimmed = plain.trim_start();
        if trimmed.starts_with('[') {
            if let Some((_, target)) = trimmed.split_once("]: ") {
                out.push(target.split_whitespace().next().unwrap_or("").to_string());
            }
        }
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let end = after.find(')').unwrap_or(after.len());
            out.push(
                after[..end]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            );
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn the_link_scanner_finds_links_and_skips_code() {
    let text = "a [b](c.md) and [d](e/f.md#x \"t\")\n`[no](code.md)`\n```\n[no](fence.md)\n```\n[r]: g.md\n";
    assert_eq!(link_targets(text), vec!["c.md", "e/f.md#x", "g.md"]);
}

#[test]
fn every_relative_markdown_link_resolves_inside_the_repository() {
    let root = root().canonicalize().unwrap();
    let files = markdown_files();
    assert!(files.iter().any(|f| f.ends_with("README.md")));
    assert!(files.iter().any(|f| f.ends_with("docs/reference.md")));
    let mut bad = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in link_targets(&text) {
            if target.is_empty()
                || target.starts_with('#')
                || target.starts_with("https://")
                || target.starts_with("http://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = file.parent().unwrap().join(path);
            match resolved.canonicalize() {
                Ok(p) if p.starts_with(&root) => {}
                Ok(p) => bad.push(format!(
                    "{}: {target} leaves the repository ({})",
                    file.display(),
                    p.display()
                )),
                Err(e) => bad.push(format!("{}: {target}: {e}", file.display())),
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}
