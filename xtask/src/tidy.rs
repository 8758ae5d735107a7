//! Checks of the source tree itself, run as tests (after rust-analyzer's `tidy`): no import
//! cycles between the modules of a crate; no xtask task importing another task; no import chain
//! in xtask longer than it is now (`XTASK_CHAIN`); every source file
//! of the suite and xtask named in ARCHITECTURE.md's code map; every source path the project's
//! text names (`xtask/src/inputs/pin.rs` in a comment, a citation or a document) exists; no source
//! file over 800 lines outside its declaration tables and tests, and no function over 150 lines.

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

    /// Which units each unit refers to (`crate::x`, `use crate::{x, y}`, `crate::x::{y, z}`, and
    /// `super::x` from a submodule). A unit is a module cut to `depth` segments: the top-level
    /// modules (1), or, where top-level folders only group modules (xtask's `tasks/`, `inputs/`,
    /// `boot/`, `publish/`), the modules in them (2: `boot::pipeline`). A path names the longest
    /// unit it starts with.
    fn graph(modules: &BTreeMap<String, String>, depth: usize) -> BTreeMap<String, BTreeSet<String>> {
        let unit = |m: &str| m.split("::").take(depth).collect::<Vec<_>>().join("::");
        let names: BTreeSet<String> = modules.keys().map(|m| unit(m)).collect();
        let resolve = |path: &str| -> Option<String> {
            let parts: Vec<&str> = path.split("::").map(str::trim).filter(|p| !p.is_empty()).collect();
            (1..=parts.len()).rev().map(|i| parts[..i].join("::")).find(|c| names.contains(c))
        };
        let is_path = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (m, code) in modules {
            let from = unit(m);
            let deps = g.entry(from.clone()).or_default();
            let mut refer = |path: &str| {
                if let Some(u) = resolve(path).filter(|u| *u != from) {
                    deps.insert(u);
                }
            };
            for part in code.split("crate::").skip(1) {
                let prefix: String = part.chars().take_while(|c| is_path(*c)).collect();
                match part[prefix.len()..].strip_prefix('{') {
                    Some(group) => {
                        for item in group.split('}').next().unwrap_or("").split(',') {
                            let item: String = item.trim().chars().take_while(|c| is_path(*c)).collect();
                            refer(&format!("{prefix}{item}"));
                        }
                    }
                    None => refer(&prefix),
                }
            }
            if let Some((parent, _)) = m.rsplit_once("::") {
                for part in code.split("super::").skip(1) {
                    let path: String = part.chars().take_while(|c| is_path(*c)).collect();
                    // `super::x` names a sibling within the parent, unless x is a top-level module.
                    let sibling = format!("{parent}::{path}");
                    if resolve(&sibling).is_some_and(|u| u != from) {
                        refer(&sibling);
                    } else if names.contains(path.split("::").next().unwrap_or("")) {
                        refer(&path);
                    }
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
        for (krate, depth) in [("model", 1), ("suite", 1), ("xtask", 2)] {
            for scc in cycles(&graph(&modules(&root.join(krate)), depth)) {
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
        assert_eq!(cycles(&graph(&modules, 1)), [["a", "b", "c"]]);
        // Modules grouped in folders: a cycle between two modules of one folder, and between
        // folders, through `crate::x::{y, z}` and `super::`.
        let modules: BTreeMap<String, String> = [
            ("inputs", ""),
            ("inputs::fleet", "use crate::inputs::{apt, builds::X};"),
            ("inputs::builds", "fn f() { super::fleet::g() }"),
            ("inputs::apt", "use crate::util;"),
            ("boot", ""),
            ("boot::runner", "use crate::tasks::matrix::Y;"),
            ("tasks", ""),
            ("tasks::matrix", "use crate::boot::runner::Z;"),
            ("util", ""),
        ]
        .into_iter()
        .map(|(m, c)| (m.to_string(), c.to_string()))
        .collect();
        assert_eq!(
            cycles(&graph(&modules, 2)),
            [vec!["boot::runner", "tasks::matrix"], vec!["inputs::builds", "inputs::fleet"]]
        );
        assert!(graph(&modules, 2)["inputs::fleet"].contains("inputs::apt"));
    }

    /// The longest import chain of `g` (`a -> b -> c`: a refers to b, b to c), the first found
    /// when several are as long; a module already on the chain is not followed again, so a cycle
    /// (which `no_module_imports_itself_through_a_cycle` reports) cannot make it endless.
    fn longest_chain(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
        fn from(
            g: &BTreeMap<String, BTreeSet<String>>,
            m: &str,
            on: &mut Vec<String>,
            memo: &mut BTreeMap<String, Vec<String>>,
        ) -> Vec<String> {
            if let Some(c) = memo.get(m) {
                return c.clone();
            }
            on.push(m.to_string());
            let mut best: Vec<String> = Vec::new();
            for d in g.get(m).into_iter().flatten() {
                if on.contains(d) {
                    continue;
                }
                let c = from(g, d, on, memo);
                if c.len() > best.len() {
                    best = c;
                }
            }
            on.pop();
            best.insert(0, m.to_string());
            memo.insert(m.to_string(), best.clone());
            best
        }
        let mut memo = BTreeMap::new();
        let mut best = Vec::new();
        for m in g.keys() {
            let c = from(g, m, &mut Vec::new(), &mut memo);
            if c.len() > best.len() {
                best = c;
            }
        }
        best
    }

    /// The most modules an import chain inside xtask may pass through, as measured when this
    /// check was written: 11, `rehearse -> tasks::ci -> boot::pipeline -> inputs::selftests ->
    /// inputs::builds -> inputs::buildroot -> inputs::fleet -> inputs::debs -> inputs::pin ->
    /// inputs::apt -> util` (the flat folder had 12 levels). A task importing a task, or a library
    /// a task, makes it longer; shortening it lowers this.
    const XTASK_CHAIN: usize = 11;

    /// A chain longer than `limit`, as `a -> b -> c`.
    fn too_long_chain(g: &BTreeMap<String, BTreeSet<String>>, limit: usize) -> Option<String> {
        let chain = longest_chain(g);
        (chain.len() > limit).then(|| chain.join(" -> "))
    }

    /// `library -> task` for every module of `inputs/`, `boot/` or `publish/` (or `util`) that
    /// refers to a task: what tasks share lives below them, never in a task.
    fn library_imports(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
        let library =
            |m: &str| ["inputs", "boot", "publish", "util"].contains(&m.split("::").next().unwrap_or(""));
        g.iter()
            .filter(|(m, _)| library(m))
            .flat_map(|(m, deps)| {
                deps.iter().filter(|d| d.starts_with("tasks::")).map(move |d| format!("{m} -> {d}"))
            })
            .collect()
    }

    #[test]
    fn xtasks_import_chains_stay_short() {
        let g = graph(&modules(&crate::util::project_root().join("xtask")), 2);
        assert!(g.len() > 30, "xtask's modules are read");
        let chain = longest_chain(&g);
        eprintln!("xtask's longest import chain ({} modules): {}", chain.len(), chain.join(" -> "));
        if let Some(chain) = too_long_chain(&g, XTASK_CHAIN) {
            panic!("an import chain in xtask is longer than {XTASK_CHAIN} modules (does a task import a task, or a library a task?): {chain}");
        }
        let found = library_imports(&g);
        assert!(
            found.is_empty(),
            "a library module imports a task (move what it needs below the tasks):\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn the_chain_check_can_fail() {
        let layered: BTreeMap<String, String> = [
            ("tasks", ""),
            ("tasks::matrix", "use crate::boot::pipeline::gather;"),
            ("tasks::report", "use crate::publish;"),
            ("boot", ""),
            ("boot::pipeline", "use crate::inputs::{fleet, apt};"),
            ("inputs", ""),
            ("inputs::fleet", "use crate::inputs::apt::LazyApt; use crate::util;"),
            ("inputs::apt", "use crate::util;"),
            ("publish", "use crate::util;"),
            ("util", ""),
        ]
        .into_iter()
        .map(|(m, c)| (m.to_string(), c.to_string()))
        .collect();
        let g = graph(&layered, 2);
        assert_eq!(
            longest_chain(&g),
            ["tasks::matrix", "boot::pipeline", "inputs::fleet", "inputs::apt", "util"]
        );
        assert_eq!(too_long_chain(&g, 5), None);
        // The report task made to import the matrix task: one module longer.
        let mut tangled = layered.clone();
        tangled.insert("tasks::report".into(), "use crate::tasks::matrix::run;".into());
        assert_eq!(
            too_long_chain(&graph(&tangled, 2), 5).as_deref(),
            Some("tasks::report -> tasks::matrix -> boot::pipeline -> inputs::fleet -> inputs::apt -> util")
        );
        assert_eq!(library_imports(&graph(&tangled, 2)), Vec::<String>::new());
        tangled.insert("inputs::apt".into(), "use crate::tasks::report;".into());
        assert_eq!(library_imports(&graph(&tangled, 2)), ["inputs::apt -> tasks::report"]);
        // A cycle (here inputs::apt -> tasks::report -> ... -> inputs::apt) does not make it
        // endless: no module comes twice.
        let chain = longest_chain(&graph(&tangled, 2));
        assert!(chain.len() >= 5 && chain.iter().collect::<BTreeSet<_>>().len() == chain.len(), "{chain:?}");
    }

    /// Whether `code` names the path `prefix::name` (`tasks::report`, `super::report`) as a whole
    /// word.
    fn names(code: &str, prefix: &str, name: &str) -> bool {
        let needle = format!("{prefix}::{name}");
        code.match_indices(&needle).any(|(i, _)| {
            let before = code[..i].chars().next_back();
            let after = code[i + needle.len()..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    }

    /// `task -> other` for every task (a module of `tasks/`, by name, with its source) that
    /// refers to another (`crate::tasks::other`, `tasks::other`, `super::other`).
    fn task_imports(tasks: &BTreeMap<String, String>) -> Vec<String> {
        let mut found = Vec::new();
        for (task, code) in tasks {
            for other in tasks.keys().filter(|o| *o != task) {
                if names(code, "tasks", other) || names(code, "super", other) {
                    found.push(format!("{task} -> {other}"));
                }
            }
        }
        found
    }

    #[test]
    fn no_task_imports_another_task() {
        let dir = crate::util::project_root().join("xtask/src/tasks");
        let tasks: BTreeMap<String, String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs") && !p.ends_with("mod.rs"))
            .map(|p| {
                (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        assert!(tasks.len() >= 10, "the tasks are read from {}", dir.display());
        let found = task_imports(&tasks);
        assert!(
            found.is_empty(),
            "a task imports another task (move what they share into inputs/, boot/ or publish/):\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn the_task_import_check_can_fail() {
        let tasks: BTreeMap<String, String> = [
            ("matrix", "use crate::tasks::report::write;"),
            ("ci", "fn f() { super::images::run() }"),
            ("report", "use crate::publish; // tasks::reporter is not a task"),
            ("images", ""),
        ]
        .into_iter()
        .map(|(t, c)| (t.to_string(), c.to_string()))
        .collect();
        assert_eq!(task_imports(&tasks), ["ci -> images", "matrix -> report"]);
    }

    /// The code map's section of a crate in ARCHITECTURE.md: from its heading (`### `xtask/``) to
    /// the next one.
    fn codemap_section<'a>(architecture: &'a str, krate: &str) -> &'a str {
        let heading = format!("### `{krate}/`");
        let start = architecture.find(&heading).unwrap_or_else(|| panic!("ARCHITECTURE.md has no {heading}"));
        let rest = &architecture[start + heading.len()..];
        &rest[..rest.find("\n### ").or_else(|| rest.find("\n## ")).unwrap_or(rest.len())]
    }

    /// The files of `files` (paths from the crate: `src/boot/qemu.rs`, `tests/host.rs`) that
    /// `section` does not name: a test by its path (`tests/host.rs`), a `mod.rs` by its folder
    /// (`` `probes/ ``), any other file by its name (`qemu.rs`, after a backtick or a slash) or as a
    /// module (`` `api` ``, a family listed by name).
    fn unnamed(section: &str, files: &[String]) -> Vec<String> {
        let after_tick_or_slash = |needle: &str| {
            section
                .match_indices(needle)
                .any(|(i, _)| matches!(section[..i].chars().next_back(), Some('`' | '/')))
        };
        files
            .iter()
            .filter(|f| {
                let path = Path::new(f.as_str());
                let stem = path.file_stem().unwrap().to_string_lossy();
                let named = if f.starts_with("tests/") {
                    section.contains(f.as_str())
                } else if stem == "mod" {
                    let dir = path.parent().unwrap().file_name().unwrap().to_string_lossy();
                    section.contains(&format!("`{dir}/"))
                } else {
                    after_tick_or_slash(&format!("{stem}.rs`")) || section.contains(&format!("`{stem}`"))
                };
                !named
            })
            .cloned()
            .collect()
    }

    /// A crate's Rust source files, as paths from the crate (`src/...`, `tests/...`).
    fn source_files(krate: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![krate.join("src"), krate.join("tests")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path.strip_prefix(krate).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    /// The most lines a source file may have outside its tests and declaration tables.
    const FILE_LINES: usize = 800;
    /// The most lines a function may have, from its `fn` to its closing brace.
    const FN_LINES: usize = 150;

    /// `code` with its comments, string and character literals blanked (newlines kept), so that
    /// braces, semicolons and words can be read off it: what a file's length and its functions'
    /// are measured on.
    fn blank_literals(code: &str) -> Vec<char> {
        let c: Vec<char> = code.chars().collect();
        let mut out = c.clone();
        let blank = |out: &mut Vec<char>, from: usize, to: usize| {
            for ch in &mut out[from..to.min(c.len())] {
                if *ch != '\n' {
                    *ch = ' ';
                }
            }
        };
        let mut i = 0;
        while i < c.len() {
            let next = |k: usize| c.get(i + k).copied().unwrap_or('\0');
            let word_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
            let end = if c[i] == '/' && next(1) == '/' {
                c[i..].iter().position(|&x| x == '\n').map_or(c.len(), |p| i + p)
            } else if c[i] == '/' && next(1) == '*' {
                let (mut j, mut depth) = (i + 2, 1);
                while j < c.len() && depth > 0 {
                    if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                        depth += 1;
                        j += 1;
                    } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                        depth -= 1;
                        j += 1;
                    }
                    j += 1;
                }
                j
            } else if !word_before && (c[i] == 'r' || (c[i] == 'b' && next(1) == 'r')) && {
                let k = if c[i] == 'b' { i + 2 } else { i + 1 };
                let hashes = c[k..].iter().take_while(|&&x| x == '#').count();
                c.get(k + hashes) == Some(&'"')
            } {
                // A raw string: r"..", r#".."#, br"..".
                let k = if c[i] == 'b' { i + 2 } else { i + 1 };
                let hashes = c[k..].iter().take_while(|&&x| x == '#').count();
                let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                let body = k + hashes + 1;
                c[body..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(c.len(), |p| body + p + close.len())
            } else if c[i] == '"' {
                let mut j = i + 1;
                while j < c.len() && c[j] != '"' {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
                j + 1
            } else if c[i] == '\'' && (next(1) == '\\' || (next(1) != '\'' && next(2) == '\'')) {
                // A character literal ('{', '\n', '\u{7b}'); a lifetime ('a, 'static) is left.
                let mut j = i + 1;
                while j < c.len() && c[j] != '\'' {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
                j + 1
            } else {
                i += 1;
                continue;
            };
            blank(&mut out, i, end);
            i = end.max(i + 1);
        }
        out
    }

    /// Where the item that starts at `from` ends: the `}` closing its first brace, or the `;`
    /// that ends it first (outside brackets); `None` when the code ends first.
    fn item_end(c: &[char], from: usize) -> Option<usize> {
        let mut depth = 0usize;
        for (j, &ch) in c.iter().enumerate().skip(from) {
            match ch {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth = depth.checked_sub(1)?;
                    if ch == '}' && depth == 0 {
                        return Some(j);
                    }
                }
                ';' if depth == 0 => return Some(j),
                _ => {}
            }
        }
        None
    }

    /// Whether the signature from `from` on ends in a body (`{` outside parentheses and brackets)
    /// rather than a `;` (a trait's declaration).
    fn has_body(c: &[char], from: usize) -> bool {
        let mut depth = 0usize;
        for &ch in &c[from..] {
            match ch {
                '(' | '[' => depth += 1,
                ')' | ']' => depth = depth.saturating_sub(1),
                '{' if depth == 0 => return true,
                ';' if depth == 0 => return false,
                _ => {}
            }
        }
        false
    }

    /// What a source file's lengths are measured against: its lines outside tests and
    /// declaration tables, and each function's lines (name, first line, lines).
    ///
    /// Tests are the items under `#[cfg(test)]` (the `tests` module). A declaration table is a
    /// `const` or `static` item, from its keyword to its `;`: data the code reads
    /// (`BEHAVIOURS: &[Behaviour]`, a probe family's declarations; a list of packages), however
    /// long, which a reader scans rather than follows. A function is every `fn` with a body, in
    /// an impl, a trait or another function too, from the line of its `fn` to its closing brace.
    fn measure(code: &str) -> (usize, Vec<(String, usize, usize)>) {
        let c = blank_literals(code);
        let line_of = |at: usize| c[..at].iter().filter(|&&x| x == '\n').count() + 1;
        let total = code.lines().count();
        let mut left_out = vec![false; total + 2];
        let mut fns = Vec::new();
        let word_at = |at: usize, word: &str| {
            word.chars().enumerate().all(|(k, ch)| c.get(at + k) == Some(&ch))
                && !(at > 0 && (c[at - 1].is_alphanumeric() || c[at - 1] == '_' || c[at - 1] == '\''))
                && !c.get(at + word.len()).is_some_and(|x| x.is_alphanumeric() || *x == '_')
        };
        // The word after `at` (past whitespace), and where it ends.
        let word_after = |at: usize| -> (String, usize) {
            let start = at + c[at..].iter().take_while(|x| x.is_whitespace()).count();
            let word: String = c[start..].iter().take_while(|x| x.is_alphanumeric() || **x == '_').collect();
            let end = start + word.chars().count();
            (word, end)
        };
        let cfg_test: Vec<char> = "#[cfg(test)]".chars().collect();
        for at in 0..c.len() {
            let table = ["const", "static"].into_iter().any(|kw| {
                if !word_at(at, kw) {
                    return false;
                }
                let (mut name, end) = word_after(at + kw.len());
                if name == "mut" {
                    name = word_after(end).0;
                }
                !name.is_empty() && !["fn", "unsafe", "async", "extern"].contains(&name.as_str())
            });
            if (c[at] == '#' && c[at..].starts_with(&cfg_test)) || table {
                if let Some(end) = item_end(&c, at) {
                    left_out[line_of(at)..=line_of(end)].fill(true);
                }
            } else if word_at(at, "fn") {
                let (name, after) = word_after(at + 2);
                if name.is_empty() || !has_body(&c, after) {
                    continue;
                }
                if let Some(end) = item_end(&c, at) {
                    fns.push((name, line_of(at), line_of(end) - line_of(at) + 1));
                }
            }
        }
        let counted = (1..=total).filter(|l| !left_out[*l]).count();
        (counted, fns)
    }

    /// What the length limits find in `files` (a path and its code).
    fn too_long(files: &[(String, String)]) -> Vec<String> {
        let mut found = Vec::new();
        for (path, code) in files {
            let (lines, fns) = measure(code);
            // A file of tests (`tests.rs`, a module declared under `#[cfg(test)]`; the integration
            // tests under `tests/`) is tests whole: only its functions are measured.
            let tests = path.ends_with("/tests.rs") || path.split('/').nth(1) == Some("tests");
            if lines > FILE_LINES && !tests {
                found.push(format!(
                    "{path}: {lines} lines outside its tests and declaration tables (at most {FILE_LINES})"
                ));
            }
            for (name, line, n) in fns.into_iter().filter(|f| f.2 > FN_LINES) {
                found.push(format!("{path}:{line}: fn {name} is {n} lines (at most {FN_LINES})"));
            }
        }
        found
    }

    #[test]
    fn no_source_file_or_function_is_too_long() {
        let root = crate::util::project_root();
        let mut files = Vec::new();
        for krate in ["model", "suite", "xtask"] {
            for f in source_files(&root.join(krate)) {
                let code = std::fs::read_to_string(root.join(krate).join(&f)).unwrap();
                files.push((format!("{krate}/{f}"), code));
            }
        }
        assert!(files.len() > 50, "the sources are read");
        let found = too_long(&files);
        assert!(
            found.is_empty(),
            "too long (split a file along a seam, a function into the steps it takes):\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn the_length_check_can_fail_and_leaves_out_tests_tables_and_literals() {
        let body = |n: usize| "    let x = 1;\n".repeat(n);
        // A function of 151 lines: its `fn` line, 149 lines, its closing brace.
        let long_fn = format!("fn long() {{\n{}}}\n", body(149));
        let file = |parts: &[&str]| parts.concat();
        let tricky = "fn tricky(a: [u8; 4]) -> char {\n    let _ = \"}}{\"; // }\n    let _ = r#\"}\"#;\n    /* } */ let _: &'static str = \"\";\n    '}'\n}\n";
        let (lines, fns) = measure(tricky);
        assert_eq!((lines, fns), (6, vec![("tricky".to_string(), 1, 6)]));
        let table = format!("pub const TABLE: &[&str] = &[\n{}];\n", "    \"row\",\n".repeat(900));
        let tests =
            format!("#[cfg(test)]\nmod tests {{\n{}}}\n", format!("fn t() {{\n{}}}\n", body(100)).repeat(9));
        // 7 functions of 102 lines, and one of 86: 800 lines, the most a file may have.
        let code = format!("fn short() {{\n{}}}\n", body(100)).repeat(7)
            + &format!("fn last() {{\n{}}}\n", body(84));
        let files: Vec<(String, String)> = [
            ("ok.rs", file(&[&code, &table, &tests])),
            ("long_fn.rs", long_fn.clone()),
            ("in_tests.rs", format!("#[cfg(test)]\nmod tests {{\n{long_fn}}}\n")),
            ("long_file.rs", file(&[&code, "const ONE: u8 = 1;\nfn more() {}\n"])),
            ("trait.rs", "trait T {\n    fn declared(&self) -> [u8; 2];\n    fn given(&self) {}\n}\nstatic mut N: u8 = 0;\n".to_string()),
        ]
        .map(|(p, c)| (p.to_string(), c))
        .to_vec();
        assert_eq!(
            too_long(&files),
            [
                "long_fn.rs:1: fn long is 151 lines (at most 150)",
                "in_tests.rs:3: fn long is 151 lines (at most 150)",
                "long_file.rs: 801 lines outside its tests and declaration tables (at most 800)",
            ]
        );
        assert_eq!(measure(&files[4].1), (4, vec![("given".to_string(), 3, 1)]));
    }

    #[test]
    fn every_source_file_is_in_the_code_map() {
        let root = crate::util::project_root();
        let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
        let mut missing = Vec::new();
        for krate in ["suite", "xtask"] {
            let files = source_files(&root.join(krate));
            assert!(files.len() > 10, "{krate}'s sources are read");
            let section = codemap_section(&architecture, krate);
            missing.extend(unnamed(section, &files).into_iter().map(|f| format!("{krate}/{f}")));
        }
        assert!(
            missing.is_empty(),
            "source files ARCHITECTURE.md's code map does not name (say there what each is for):\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn the_code_map_check_can_fail() {
        let section = "- `boot/`: `qemu.rs` and `inputs/pin.rs`; `tests/host.rs`; families (`api`).";
        let files: Vec<String> = [
            "src/boot/mod.rs",
            "src/boot/qemu.rs",
            "src/inputs/pin.rs",
            "src/probes/api.rs",
            "tests/host.rs",
            "src/probes/mod.rs",
            "src/boot/runner.rs",
            "tests/qemu.rs",
            "src/myqemu.rs",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            unnamed(section, &files),
            ["src/probes/mod.rs", "src/boot/runner.rs", "tests/qemu.rs", "src/myqemu.rs"]
        );
    }

    /// The source paths (`xtask/src/inputs/pin.rs`, `suite/tests/host.rs`) that `text` names and
    /// `exists` says are not there.
    fn dangling(text: &str, exists: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for krate in ["model/", "suite/", "xtask/"] {
            for (i, _) in text.match_indices(krate) {
                if text[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '-'))
                {
                    continue;
                }
                let path: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-'))
                    .collect();
                let path = path.trim_end_matches('.');
                let is_source = path.ends_with(".rs") || path.ends_with(".html") || path.ends_with(".css");
                if is_source && !exists(path) && !out.iter().any(|p| p == path) {
                    out.push(path.to_string());
                }
            }
        }
        out
    }

    #[test]
    fn every_source_path_the_project_names_exists() {
        let root = crate::util::project_root();
        let sh = xshell::Shell::new().unwrap();
        sh.change_dir(&root);
        // Tracked text, less what is regenerated from the code (the matrix, the build toolchain's
        // lock: their next run rewrites them) and the rehearsal's recorded outputs.
        let files = xshell::cmd!(sh, "git ls-files -- *.rs *.md *.toml *.yml *.sh .ci").read().unwrap();
        let mut found = Vec::new();
        // (This file names moved paths on purpose, in the check's own test.)
        for file in files
            .lines()
            .filter(|f| !f.starts_with("matrix/") && !f.ends_with(".lock") && *f != "xtask/src/tidy.rs")
        {
            let Ok(text) = std::fs::read_to_string(root.join(file)) else { continue };
            for path in dangling(&text, |p| root.join(p).exists()) {
                found.push(format!("{file}: {path}"));
            }
        }
        assert!(
            found.is_empty(),
            "paths named in the project that do not exist (moved? say where):\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn the_dangling_path_check_can_fail() {
        let text = "see xtask/src/buildroot.rs and (suite/src/run/harness.rs), not my-xtask/src/x.rs; \
                    model/src/data.rs. and xtask/src/publish/page.css";
        let exists = |p: &str| p == "suite/src/run/harness.rs" || p == "model/src/data.rs";
        assert_eq!(dangling(text, exists), ["xtask/src/buildroot.rs", "xtask/src/publish/page.css"]);
    }
}
