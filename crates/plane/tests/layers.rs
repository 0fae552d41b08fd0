//! The plane's layers, checked from its source: controllers → services → store, drivers and
//! gateway, and nothing back.
//!
//! 1. Every file under `src/` is parsed with `syn`, and every path it names that starts
//!    with `crate`, `self`, `super` or a child module is resolved to the module file it
//!    reaches (the longest prefix that is a module).
//! 2. That gives the import graph, one node per file. Its strongly connected components of
//!    more than one file are the import cycles.
//! 3. The rules below are asserted on it. `cargo test -p porthole-plane --test layers --
//!    --nocapture` prints the graph's cycles, so anyone can see them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module, as its path from the crate root (`services::vms`; `` for lib.rs).
type Module = String;

/// Every module file under `src`, by module path.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// Collects the paths a file names.
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl Paths {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix.clone();
                if n.ident != "self" {
                    path.push(n.ident.to_string());
                }
                self.0.push(path);
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                path.push(r.ident.to_string());
                self.0.push(path);
            }
            syn::UseTree::Glob(_) => self.0.push(prefix.clone()),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.use_tree(prefix, item);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.0
            .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }
}

/// The module `path`, named inside `module`, reaches: the longest prefix that is a module.
fn resolve(known: &BTreeMap<Module, PathBuf>, module: &str, path: &[String]) -> Option<Module> {
    let mut base: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_owned).collect()
    };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(first) => {
            let mut child = base.clone();
            child.push(first.to_owned());
            if !known.contains_key(&child.join("::")) {
                return None;
            }
        }
        None => return None,
    }
    let mut best = None;
    let mut candidate = base;
    for segment in rest {
        candidate.push(segment.clone());
        let name = candidate.join("::");
        if known.contains_key(&name) {
            best = Some(name);
        } else {
            break;
        }
    }
    best
}

/// The import graph: for each module, the modules it names.
fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    let mut edges = BTreeMap::new();
    for (module, file) in &known {
        let text = std::fs::read_to_string(file).unwrap();
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut paths = Paths::default();
        paths.visit_file(&parsed);
        let targets: BTreeSet<Module> = paths
            .0
            .iter()
            .filter_map(|path| resolve(&known, module, path))
            .filter(|target| target != module && !module.starts_with(&format!("{target}::")))
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<Module>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w.as_str()]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w.as_str()) {
                    let low = self.low[v].min(self.index[w.as_str()]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !tarjan.index.contains_key(v.as_str()) {
            tarjan.visit(v);
        }
    }
    tarjan.found
}

/// What a controller file does that only services may do.
#[derive(Default)]
struct Reaches(Vec<String>);

impl<'ast> Visit<'ast> for Reaches {
    fn visit_expr_field(&mut self, field: &'ast syn::ExprField) {
        if let syn::Member::Named(name) = &field.member
            && name == "store"
        {
            self.0.push("uses the store".into());
        }
        syn::visit::visit_expr_field(self, field);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if call.method == "require_admin" || call.method == "is_admin" {
            self.0
                .push(format!("decides on the admin role ({})", call.method));
        }
        syn::visit::visit_expr_method_call(self, call);
    }
}

fn names(graph: &BTreeMap<Module, BTreeSet<Module>>, module: &str) -> BTreeSet<Module> {
    graph.get(module).cloned().unwrap_or_default()
}

#[test]
#[expect(clippy::print_stdout, reason = "--nocapture shows the graph's cycles")]
fn the_import_graph_has_no_cycle() {
    let graph = graph();
    let cycles = cycles(&graph);
    println!("{} modules; {} import cycles", graph.len(), cycles.len());
    for cycle in &cycles {
        println!("cycle of {} modules: {}", cycle.len(), cycle.join(", "));
    }
    assert!(
        cycles.is_empty(),
        "import cycles: {}",
        cycles
            .iter()
            .map(|c| c.join(" <-> "))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

#[test]
fn services_know_nothing_of_http() {
    let graph = graph();
    for (module, targets) in &graph {
        if !module.starts_with("services") {
            continue;
        }
        for target in targets {
            assert!(
                !(target.starts_with("controllers") || target == "extract" || target == "router"),
                "{module} imports {target}: services must not reach up into the HTTP layer"
            );
        }
    }
}

#[test]
fn app_holds_only_leaf_modules() {
    let graph = graph();
    for part in names(&graph, "app") {
        let reaches_app = {
            let mut seen = BTreeSet::new();
            let mut todo = vec![part.clone()];
            while let Some(m) = todo.pop() {
                if seen.insert(m.clone()) {
                    todo.extend(names(&graph, &m));
                }
            }
            seen.contains("app")
        };
        assert!(!reaches_app, "app imports {part}, which imports app back");
    }
}

#[test]
fn controllers_leave_the_store_the_audit_log_and_admin_checks_to_services() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (module, file) in modules(&src) {
        if !module.starts_with("controllers") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let mut reaches = Reaches::default();
        reaches.visit_file(&syn::parse_file(&text).unwrap());
        // Page models may show the signed-in user's role (the Admin link); what that role
        // may do is still decided by the services.
        let shows_role = module == "controllers::web::pages";
        found.extend(
            reaches
                .0
                .into_iter()
                .filter(|what| !(shows_role && what.ends_with("(is_admin)")))
                .map(|what| format!("{module} {what}")),
        );
    }
    found.dedup();
    assert!(found.is_empty(), "{}", found.join("\n"));
}
