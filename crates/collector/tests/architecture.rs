//! The architecture invariants that a grep can check (ARCHITECTURE.md states them):
//! a stream is declared in one file and registered in one place; the collector's modules
//! depend on each other one way (web on top, then engine, streams, store); the JSON API does
//! not import the HTML pages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kandji_collector::streams::StreamName;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// Every `.rs` file under `dir`, with its text up to its first `#[cfg(test)]` (unit tests are
/// not the product's sources).
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                let text = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
                out.push((p, text));
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no sources under {}", dir.display());
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root())
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
        .trim_start_matches("./")
        .to_string()
}

/// The names of the store's tables (several streams are named after the table they fill).
fn table_names() -> BTreeSet<&'static str> {
    kandji_collector::store::tables::ALL
        .iter()
        .map(|t| t.spec().name)
        .collect()
}

#[test]
fn each_stream_is_named_only_in_its_own_file_and_the_registry() {
    let collector = root().join("crates/collector/src");
    let client = root().join("crates/kandji-api/src");
    let mut files = sources(&collector);
    files.extend(sources(&client));
    let tables = table_names();
    let columns: BTreeSet<&str> = kandji_collector::store::tables::ALL
        .iter()
        .flat_map(|t| t.spec().columns.iter().map(|c| c.name))
        .collect();
    let mut found = Vec::new();
    for s in StreamName::ALL {
        let name = s.as_str();
        let own = format!("crates/collector/src/streams/{name}.rs");
        let registry = "crates/collector/src/streams/mod.rs";
        assert!(
            root().join(&own).exists(),
            "{name}: no file {own} declares it"
        );
        let own_text = std::fs::read_to_string(root().join(&own)).unwrap();
        assert_eq!(
            own_text.matches("pub static SPEC: StreamSpec").count(),
            1,
            "{own}: one declaration"
        );
        assert!(
            own_text.contains(&format!("name: \"{name}\"")),
            "{own}: declares another name"
        );
        let registry_text = std::fs::read_to_string(root().join(registry)).unwrap();
        let variant = format!("{s:?}");
        assert_eq!(
            registry_text
                .matches(&format!("    {variant} => {name},"))
                .count(),
            1,
            "{name}: registered once"
        );
        let as_code = format!("StreamName::{variant}");
        let as_text = format!("\"{name}\"");
        for (path, text) in &files {
            let r = rel(path);
            if r == own || r == registry {
                continue;
            }
            let code = text.match_indices(&as_code).any(|(i, _)| {
                // `StreamName::Devices` but not `StreamName::DevicesX`.
                !text[i + as_code.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            // A literal spelled like a stream that names a table is the store's (and the
            // explorer's) table name, not the stream; no other literal may spell one.
            let table_ok = tables.contains(name)
                && (r.starts_with("crates/collector/src/store/")
                    || r.starts_with("crates/collector/src/web/"));
            // A stream maps an API field to a column spelled like another stream (the device
            // list's `tags`); the client's models read device-detail fields (`apps`, `users`).
            let field_ok = (r.starts_with("crates/collector/src/streams/")
                && columns.contains(name))
                || r == "crates/kandji-api/src/models/devices.rs";
            let text_hit = text.contains(&as_text) && !table_ok && !field_ok;
            if code || text_hit {
                found.push(format!("{r} names {name}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "stream names outside their files:\n{}",
        found.join("\n")
    );
}

/// `crate::a` references of each top-level module of the collector.
fn module_graph(base: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let tops: BTreeSet<String> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let stem = p.file_stem()?.to_string_lossy().to_string();
            (p.is_dir() || p.extension().is_some_and(|x| x == "rs")).then_some(stem)
        })
        .filter(|s| s != "lib" && s != "main")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in sources(base) {
        let r = path.strip_prefix(base).unwrap();
        let top = r
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if !tops.contains(&top) {
            continue;
        }
        let entry = graph.entry(top.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|x| x.trim().split("::").next().unwrap_or("").to_string())
                    .collect()
            } else {
                vec![
                    rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or("")
                        .to_string(),
                ]
            };
            for n in names {
                if tops.contains(&n) && n != top {
                    entry.insert(n);
                }
            }
        }
    }
    graph
}

/// Whether `to` is reachable from `from`.
fn reaches(g: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(n) = stack.pop() {
        for m in g.get(&n).into_iter().flatten() {
            if m == to {
                return true;
            }
            if seen.insert(m.clone()) {
                stack.push(m.clone());
            }
        }
    }
    false
}

#[test]
fn the_collectors_modules_depend_on_each_other_one_way() {
    let g = module_graph(&root().join("crates/collector/src"));
    assert!(g.len() > 8, "{g:?}");
    let mut cycles = Vec::new();
    for (a, deps) in &g {
        for b in deps {
            if reaches(&g, b, a) {
                cycles.push(format!("{a} -> {b} -> … -> {a}"));
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
    // The layers: web on top, then engine, then streams, then store.
    let layers = ["web", "engine", "streams", "store"];
    for (i, upper) in layers.iter().enumerate() {
        for lower in &layers[i + 1..] {
            assert!(reaches(&g, upper, lower), "{upper} does not use {lower}");
            assert!(!reaches(&g, lower, upper), "{lower} reaches up to {upper}");
        }
    }
    for m in ["commands", "web", "engine", "check"] {
        assert!(!reaches(&g, "streams", m), "streams reaches {m}");
    }
    for m in ["streams", "engine", "web", "config", "outputs", "commands"] {
        assert!(!reaches(&g, "store", m), "store reaches {m}");
    }
}

#[test]
fn the_json_api_does_not_import_the_html_pages() {
    let api = std::fs::read_to_string(root().join("crates/collector/src/web/api.rs")).unwrap();
    assert!(!api.contains("pages::"), "web/api.rs uses web/pages.rs");
    assert!(!api.contains("askama"), "web/api.rs renders templates");
}
