//! The broker's modules form no import cycle: no module uses one that uses it back, directly or through
//! others. A module is a source file (`group/mod.rs` is `group`, `group/state.rs` is `group::state`); a
//! use is any `crate::…` or `super::…` path in its code (comments and strings left out), attributed to
//! the longest module that path names. A parent declaring its children (`mod x;`) is not a use.
//!
//! Also here: no source file of the workspace is longer than 800 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;

fn source_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            source_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// `src/group/state.rs` → ["group", "state"]; `src/group/mod.rs` → ["group"]; `src/lib.rs` → [].
fn module_of(source_root: &Path, file: &Path) -> Vec<String> {
    let relative = file
        .strip_prefix(source_root)
        .expect("under the source root");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments, string and character literals.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < bytes.len() {
        let rest = &text[index..];
        if rest.starts_with("//") {
            index += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            index += rest.find("*/").map_or(rest.len(), |end| end + 2);
        } else if rest.starts_with("r#\"") {
            index += rest.find("\"#").map_or(rest.len(), |end| end + 2);
        } else if bytes[index] == b'"' {
            index += 1;
            while index < bytes.len() && bytes[index] != b'"' {
                index += if bytes[index] == b'\\' { 2 } else { 1 };
            }
            index += 1;
            out.push_str("\"\"");
        } else if rest.starts_with("'\\''") || rest.starts_with("'\\\\'") {
            index += 4;
        } else if bytes[index] == b'\'' && rest.len() >= 3 && rest.as_bytes()[2] == b'\'' {
            index += 3;
        } else {
            let character = rest.chars().next().expect("not at the end");
            out.push(character);
            index += character.len_utf8();
        }
    }
    out
}

fn is_identifier(character: char) -> bool {
    character.is_alphanumeric() || character == '_'
}

/// The paths after each `crate::` / `super::` (a `{a::b, c}` group gives one path per member).
fn used_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (start, _) in code.match_indices("::") {
        let before: String = code[..start]
            .chars()
            .rev()
            .take_while(|&character| is_identifier(character) || character == ':')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        // Only at the head of a path: `crate::` or a run of `super::`.
        let head = before.as_str();
        let base: Vec<String> = if head == "crate" {
            Vec::new()
        } else if head.split("::").all(|part| part == "super") && !head.is_empty() {
            let ups = head.split("::").count();
            if ups > module.len() {
                continue;
            }
            module[..module.len() - ups].to_vec()
        } else {
            continue;
        };
        let preceding = code[..start - head.len()].chars().next_back();
        if preceding.is_some_and(|character| is_identifier(character) || character == ':') {
            continue;
        }
        for tail in expand(&code[start + 2..]) {
            let mut path = base.clone();
            path.extend(tail);
            paths.push(path);
        }
    }
    paths
}

/// The path segments that follow, one list per member of a `{…}` group.
fn expand(rest: &str) -> Vec<Vec<String>> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 1;
        let mut end = 0;
        for (index, character) in group.char_indices() {
            match character {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = index;
                break;
            }
        }
        let mut members = Vec::new();
        let mut depth = 0;
        let mut member_start = 0;
        let inner = &group[..end];
        for (index, character) in inner.char_indices() {
            match character {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    members.push(&inner[member_start..index]);
                    member_start = index + 1;
                }
                _ => {}
            }
        }
        members.push(&inner[member_start..]);
        return members
            .into_iter()
            .filter(|member| !member.trim().is_empty())
            .flat_map(expand)
            .collect();
    }
    let mut segments = Vec::new();
    let mut remaining = rest;
    loop {
        let identifier: String = remaining
            .chars()
            .take_while(|&c| is_identifier(c))
            .collect();
        if identifier.is_empty() {
            break;
        }
        segments.push(identifier.clone());
        remaining = &remaining[identifier.len()..];
        match remaining.strip_prefix("::") {
            Some(next) if next.starts_with('{') => {
                return expand(next)
                    .into_iter()
                    .map(|tail| segments.iter().cloned().chain(tail).collect())
                    .collect();
            }
            Some(next) => remaining = next,
            None => break,
        }
    }
    vec![segments]
}

fn dependency_graph(source_root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    source_files(source_root, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|file| (module_of(source_root, file), file.clone()))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let code = code_only(&std::fs::read_to_string(file).expect("readable source"));
        let uses = graph.entry(module.join("::")).or_default();
        for path in used_paths(&code, module) {
            // The longest prefix of the path that is a module of ours.
            let Some(target) = (1..=path.len())
                .rev()
                .map(|length| path[..length].to_vec())
                .find(|prefix| modules.contains_key(prefix))
            else {
                continue;
            };
            // A module using its own items or its children is no dependency between modules.
            if target.starts_with(module) {
                continue;
            }
            uses.insert(target.join("::"));
        }
    }
    graph
}

/// A cycle through `start`, if any (depth-first search).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn broker_modules_have_no_import_cycles() {
    let source_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = dependency_graph(&source_root);
    assert!(graph.len() > 20, "the source tree was found: {graph:?}");
    let cycles: BTreeSet<Vec<String>> = graph
        .keys()
        .filter_map(|module| cycle_from(&graph, module))
        .map(|mut cycle| {
            // One rotation per cycle.
            cycle.pop();
            let smallest = (0..cycle.len()).min_by_key(|&index| &cycle[index]).unwrap();
            cycle.rotate_left(smallest);
            cycle
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between broker modules:\n{}",
        cycles
            .iter()
            .map(|cycle| format!("  {} -> {}", cycle.join(" -> "), cycle[0]))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_relative_uses() {
    let code = code_only(
        "use crate::{a::b, c}; // crate::commented\nuse super::d::E; let s = \"crate::quoted\";",
    );
    let module = vec!["x".to_string(), "y".to_string()];
    let paths = used_paths(&code, &module);
    assert!(paths.contains(&vec!["a".to_string(), "b".to_string()]));
    assert!(paths.contains(&vec!["c".to_string()]));
    assert!(paths.contains(&vec!["x".to_string(), "d".to_string(), "E".to_string()]));
    assert!(!paths
        .iter()
        .any(|path| path.contains(&"commented".to_string())));
    assert!(!paths
        .iter()
        .any(|path| path.contains(&"quoted".to_string())));
}

#[test]
fn no_source_file_is_longer_than_800_lines() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let mut files = Vec::new();
    for crate_dir in ["net", "storage", "shard", "broker", "benches"] {
        source_files(&workspace.join(crate_dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter(|file| !file.components().any(|part| part.as_os_str() == "fuzz"))
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).ok()?.lines().count();
            (lines > MAX_FILE_LINES).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines: {long:?}"
    );
}
