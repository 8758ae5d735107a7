//! Checks of the source tree itself, run as tests (after rust-analyzer's `tidy`): no import
//! cycles between the modules of a crate.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// A crate's modules (`probes`, `probes::api`, ...) and their source, tests left out.
    fn modules(krate: &Path) -> BTreeMap<String, String> {
        let src = krate.join("src");
        let mut out = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path.strip_prefix(&src).unwrap().with_extension("");
                    let name = rel.to_string_lossy().replace("/mod", "").replace('/', "::");
                    if name == "main" || name == "lib" {
                        continue;
                    }
                    let text = std::fs::read_to_string(&path).unwrap();
                    let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
                    out.insert(name, code);
                }
            }
        }
        out
    }

    /// Which top-level modules each top-level module refers to (`crate::x`, `use crate::{x, y}`,
    /// and `super::x` from a submodule).
    fn graph(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
        let top = |m: &str| m.split("::").next().unwrap().to_string();
        let names: BTreeSet<String> = modules.keys().map(|m| top(m)).collect();
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (m, code) in modules {
            let from = top(m);
            let deps = g.entry(from.clone()).or_default();
            let mut refer = |word: &str| {
                let word = word.trim();
                if names.contains(word) && word != from {
                    deps.insert(word.to_string());
                }
            };
            for part in code.split("crate::").skip(1) {
                if let Some(group) = part.strip_prefix('{') {
                    for item in group.split('}').next().unwrap_or("").split(',') {
                        refer(item.split("::").next().unwrap_or(""));
                    }
                } else {
                    refer(part.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or(""));
                }
            }
            if m.contains("::") {
                for part in code.split("super::").skip(1) {
                    let word = part.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("");
                    // `super::x` names a sibling within the parent, unless x is a top-level module.
                    refer(if names.contains(word) { word } else { "" });
                }
            }
        }
        g
    }

    /// Every cycle (as a strongly connected component of more than one module).
    fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
        let reach = |from: &str| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.to_string()];
            while let Some(m) = todo.pop() {
                for d in g.get(&m).into_iter().flatten() {
                    if seen.insert(d.clone()) {
                        todo.push(d.clone());
                    }
                }
            }
            seen
        };
        let reaches: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(m))).collect();
        let mut out: Vec<Vec<String>> = Vec::new();
        for m in g.keys() {
            let scc: Vec<String> = g
                .keys()
                .filter(|o| *o == m || (reaches[m].contains(*o) && reaches[o].contains(m)))
                .cloned()
                .collect();
            if scc.len() > 1 && !out.contains(&scc) {
                out.push(scc);
            }
        }
        out
    }

    #[test]
    fn no_module_imports_itself_through_a_cycle() {
        let root = crate::util::project_root();
        let mut found = Vec::new();
        for krate in ["model", "suite", "xtask"] {
            for scc in cycles(&graph(&modules(&root.join(krate)))) {
                found.push(format!("{krate}: {}", scc.join(" <-> ")));
            }
        }
        assert!(found.is_empty(), "import cycles between modules:\n{}", found.join("\n"));
    }

    #[test]
    fn the_cycle_check_can_fail() {
        let modules: BTreeMap<String, String> = [
            ("a".to_string(), "use crate::b::X;".to_string()),
            ("b".to_string(), "fn f() { crate::c::g() }".to_string()),
            ("c".to_string(), "use crate::{a, d};".to_string()),
            ("d".to_string(), String::new()),
        ]
        .into_iter()
        .collect();
        assert_eq!(cycles(&graph(&modules)), [["a", "b", "c"]]);
    }
}
