//! The top-level modules of the control plane depend on each other in one direction only. The graph is
//! read from the sources: every `crate::<module>` path (also inside `use crate::{..}` groups) and every
//! `super::` path that climbs out of its top-level module is an edge; comments and string literals are
//! not code and are skipped. A cycle fails the test, named with the file and line of each edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `from -> to` with the first place that makes the edge.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn top_level_modules_have_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let modules = declared_modules(&lib);
    assert!(
        modules.contains("admin") && modules.contains("serve"),
        "{modules:?}"
    );
    let mut files = Vec::new();
    collect(&src, &mut files);
    let sources: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter(|p| p != &src.join("lib.rs") && p != &src.join("main.rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read source");
            (p.strip_prefix(&src).expect("under src").to_path_buf(), text)
        })
        .collect();
    let graph = graph(&modules, &sources);
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "modules that depend back on a module depending on them:\n{}",
        cycles.join("\n")
    );
    // The admin API reads the xDS connections through `connections`; xDS never reads the admin API.
    for leaf in ["xds", "connections", "shared_index", "metrics"] {
        assert!(
            !reaches(&graph, leaf, "admin"),
            "{leaf} depends on admin: {:?}",
            graph.get(leaf)
        );
    }
}

#[test]
fn the_graph_reader_names_a_cycle_and_skips_comments_strings_and_local_super() {
    let modules: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    let sources = vec![
        (
            PathBuf::from("a.rs"),
            "use crate::{b::Thing, c};\n// crate::c::nothing\nconst S: &str = \"crate::c\";\n\
             mod tests {\n    use super::*;\n}\n"
                .to_string(),
        ),
        (
            PathBuf::from("b/mod.rs"),
            "/* crate::c */ mod inner;\n".to_string(),
        ),
        (
            PathBuf::from("b/inner.rs"),
            "fn f() { let _ = '{'; super::super::a::g(); }\nmod deeper {\n    use super::super::x;\n}\n"
                .to_string(),
        ),
        (PathBuf::from("c.rs"), "pub fn c() {}\n".to_string()),
    ];
    let graph = graph(&modules, &sources);
    let edges: Vec<(String, String)> = graph
        .iter()
        .flat_map(|(from, to)| to.keys().map(move |t| (from.clone(), t.clone())))
        .collect();
    assert_eq!(
        edges,
        [
            ("a".to_string(), "b".to_string()),
            ("a".to_string(), "c".to_string()),
            ("b".to_string(), "a".to_string()),
        ]
    );
    assert_eq!(
        cycles(&graph),
        ["a -> b (a.rs:1) -> a (b/inner.rs:1)".to_string()]
    );
}

/// `pub mod x;` and `mod x;` lines of lib.rs.
fn declared_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(String::from)
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// The module path of a file: `admin/views.rs` → `[admin, views]`, `admin/mod.rs` → `[admin]`.
fn module_path(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> = file
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop()
        && last != "mod.rs"
    {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

fn graph(modules: &BTreeSet<String>, sources: &[(PathBuf, String)]) -> Graph {
    let mut graph = Graph::new();
    for (file, text) in sources {
        let path = module_path(file);
        let Some(own) = path.first() else { continue };
        assert!(
            modules.contains(own),
            "{} is in no module of lib.rs",
            file.display()
        );
        let code = code_only(text);
        for (offset, target) in references(&code, &path) {
            if target != *own && modules.contains(&target) {
                let line = code[..offset].matches('\n').count() + 1;
                graph
                    .entry(own.clone())
                    .or_default()
                    .entry(target)
                    .or_insert_with(|| format!("{}:{line}", file.display()));
            }
        }
    }
    graph
}

/// The text with comments removed and the contents of string and character literals blanked, so that
/// braces and paths left are code. Line breaks are kept, so offsets give the same line numbers.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            out.push_str("\"\"");
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                out.push(blank(chars[j]));
                j += 1;
            }
            i = j;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    out.push(blank(ch));
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime ('a), which is kept.
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.push_str("' '");
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Every top-level module named by a `crate::` path, or by a `super::` path that climbs to the crate
/// root, with its offset. `path` is the file's module path; inline `mod x { .. }` blocks add to it.
fn references(code: &str, path: &[String]) -> Vec<(usize, String)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    // The depth of inline modules around each position: (brace depth at which it opened).
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if !code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let at_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        match bytes[i] {
            b'{' => {
                depth += 1;
                i += 1;
                continue;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        if at_word && rest.starts_with("mod ") {
            let after = rest[4..].trim_start();
            let name_len = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if after[name_len..].trim_start().starts_with('{') {
                inline.push(depth);
            }
        }
        if at_word && rest.starts_with("crate::") {
            for name in path_heads(&rest[7..]) {
                found.push((i, name));
            }
            i += 7;
            continue;
        }
        if at_word && rest.starts_with("super::") {
            let mut supers = 0;
            let mut tail = rest;
            while let Some(t) = tail.strip_prefix("super::") {
                supers += 1;
                tail = t.trim_start();
            }
            let here = path.len() + inline.len();
            if supers == here {
                for name in path_heads(tail) {
                    found.push((i, name));
                }
            }
            i += rest.len() - tail.len();
            continue;
        }
        i += 1;
    }
    found
}

/// The first segment of a path (`admin::views` → `admin`), or of each path in a `{..}` group.
fn path_heads(text: &str) -> Vec<String> {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut heads = Vec::new();
        let mut depth = 0;
        let mut start = true;
        for (k, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                c if start && (c.is_alphanumeric() || c == '_') => {
                    start = false;
                    heads.push(ident(&group[k..]));
                }
                _ => {}
            }
        }
        heads
    } else {
        vec![ident(text)]
    }
}

fn ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn reaches(graph: &Graph, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        if m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            todo.extend(graph.get(&m).into_iter().flat_map(|t| t.keys().cloned()));
        }
    }
    false
}

/// One cycle per module that lies on one, each written `a -> b (where) -> a (where)`, without repeats.
fn cycles(graph: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    let mut covered = BTreeSet::new();
    for start in graph.keys() {
        if covered.contains(start) {
            continue;
        }
        if let Some(cycle) = shortest_path_back(graph, start) {
            covered.extend(cycle.iter().cloned());
            let mut text = start.clone();
            for pair in cycle.windows(2) {
                let place = &graph[&pair[0]][&pair[1]];
                text.push_str(&format!(" -> {} ({place})", pair[1]));
            }
            out.push(text);
        }
    }
    out
}

/// The shortest path `start -> .. -> start`, breadth first, as the list of modules on it.
fn shortest_path_back(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    while let Some(m) = queue.pop_front() {
        for next in graph.get(&m).into_iter().flat_map(|t| t.keys()) {
            if next == start {
                let mut path = vec![m.clone()];
                let mut at = &m;
                while let Some(prev) = came_from.get(at) {
                    path.push(prev.clone());
                    at = prev;
                }
                path.reverse();
                path.push(start.to_string());
                return Some(path);
            }
            if next != start && !came_from.contains_key(next) {
                came_from.insert(next.clone(), m.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}
