//! The library's layering, checked: each top-level module may use only modules of a lower
//! layer (the list below, which the README's module map shows), so the import graph has no
//! circle and nothing low reaches up. Tests inside a module (`#[cfg(test)] mod tests`) and
//! comments are not imports and are skipped.

use std::collections::BTreeMap;
use std::path::Path;

/// Lowest first. A module may use modules of earlier lines, never of its own line or later.
const LAYERS: &[&[&str]] = &[
    // Leaves: no fer-lab imports, or only each other's lower ones.
    &["emotion", "invalid", "process", "table", "stats", "cluster"],
    &["metrics"],
    // What the machine has, and the data.
    &["device", "data"],
    // Below training: the networks, the pruning rules, the database; losses and optimizers.
    &["model", "pruning", "store"],
    &["loss", "optim"],
    &["config"],
    &["sweep", "train"],
    &["worker"],
    &["scheduler", "report", "predict", "bench"],
    &["progress", "dashboard"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|line| line.contains(&module))
}

/// The code of a file without its test module and comments.
fn library_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|next| {
                let next = next.trim_start();
                ["mod tests", "pub(crate) mod tests", "pub mod tests"]
                    .iter()
                    .any(|start| next.starts_with(start))
            })
        {
            // The test module runs to the end of the file (the convention here).
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" // ").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

fn imports(dir: &Path) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut graph: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if matches!(top.as_str(), "lib" | "main" | "cli") {
                continue; // the crate root and the binary sit above every layer
            }
            let code = library_code(&std::fs::read_to_string(&path).unwrap());
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != top && !name.is_empty() {
                    graph
                        .entry(top.clone())
                        .or_default()
                        .entry(name)
                        .or_default()
                        .push(rel.display().to_string());
                }
            }
        }
    }
    graph
}

#[test]
fn every_import_points_to_a_lower_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    let mut wrong = Vec::new();
    for (module, uses) in &graph {
        let Some(mine) = layer_of(module) else {
            wrong.push(format!(
                "{module} is in no layer: add it to LAYERS in tests/layers.rs and to the README's module map"
            ));
            continue;
        };
        for (used, files) in uses {
            match layer_of(used) {
                Some(theirs) if theirs < mine => {}
                Some(_) => {
                    let mut files = files.clone();
                    files.dedup();
                    wrong.push(format!(
                        "{module} uses {used}, which is not below it (in {})",
                        files.join(", ")
                    ))
                }
                None => wrong.push(format!("{used} (used by {module}) is in no layer")),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let missing: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';'))
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(missing.is_empty(), "no layer for {missing:?}");
}

#[test]
fn a_reaching_up_import_is_caught() {
    // The checker itself: a store file that used the scheduler would be reported.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    std::fs::write(
        dir.path().join("store/x.rs"),
        "// crate::report in a comment is fine\nuse crate::scheduler::Options;\n#[cfg(test)]\npub(crate) mod tests {\n    use crate::worker::X;\n}\n",
    )
    .unwrap();
    let graph = imports(dir.path());
    let uses: Vec<&String> = graph["store"].keys().collect();
    assert_eq!(uses, vec!["scheduler"]);
}
