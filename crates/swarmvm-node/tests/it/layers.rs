//! The node's files depend on each other one way: no circle among them, and the parts below
//! never reach up (the applier knows no fetcher, the fetcher no API, the API no HTTP). Read
//! from the sources, so a `use crate::…` that closes a circle fails here.

use std::collections::{BTreeMap, BTreeSet};

/// Each file of `src/` (its module name) and the other modules it names as `crate::name`,
/// outside comments.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            files.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    let modules: BTreeSet<String> = files.keys().filter(|m| *m != "lib").cloned().collect();
    let mut graph = BTreeMap::new();
    for (name, text) in &files {
        if name == "lib" {
            continue;
        }
        let mut deps = BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let dep: String =
                    rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if dep != *name && modules.contains(&dep) {
                    deps.insert(dep);
                }
            }
        }
        graph.insert(name.clone(), deps);
    }
    graph
}

/// A circle through `from`, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == at) {
            let mut found = path[i..].to_vec();
            found.push(at.to_owned());
            return Some(found);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_owned());
        for next in g.get(at).into_iter().flatten() {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(at.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|m| visit(graph, m, &mut Vec::new(), &mut done))
}

/// Everything `from` reaches.
fn reach(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(m) = todo.pop() {
        for d in graph.get(&m).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_node_s_files_depend_on_each_other_one_way() {
    let graph = graph();
    assert!(graph.len() > 15, "read the node's files: {graph:?}");
    assert_eq!(circle(&graph), None, "a circle among the node's files");
    // http → api → the sequencer and the follower → the fetcher → the heads → the applier.
    let below = |m: &str, never: &[&str]| {
        let reached = reach(&graph, m);
        for n in never {
            assert!(!reached.contains(*n), "{m} reaches {n}: {reached:?}");
        }
    };
    below(
        "applier",
        &["fetcher", "heads", "sequencer", "replica", "follow", "api", "http", "node"],
    );
    below("heads", &["fetcher", "sequencer", "replica", "follow", "api", "http", "node"]);
    below("fetcher", &["sequencer", "replica", "follow", "api", "http", "node"]);
    below("sequencer", &["replica", "follow", "api", "http", "node"]);
    below("replica", &["follow", "api", "http", "node"]);
    below("follow", &["sequencer", "api", "http", "node"]);
    below("api", &["http", "events", "explorer", "metrics", "node"]);
    below("http", &["node"]);
    assert!(reach(&graph, "http").contains("api"));
    assert!(reach(&graph, "api").is_superset(&["applier", "fetcher"].map(String::from).into()));
}
