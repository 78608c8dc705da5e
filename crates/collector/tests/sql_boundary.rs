//! The store owns SQL: no SQL statement appears in the collector's sources outside
//! `src/store/` (everything else calls the store's domain methods).

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Whether a line (its code, not its comment) holds a SQL statement.
fn sql_in(line: &str) -> Option<&'static str> {
    let code = match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    };
    // SQL here is written with upper-case keywords; prose in strings is not.
    let upper = code;
    const STATEMENTS: [&str; 10] = [
        "SELECT ",
        "INSERT INTO",
        "INSERT OR",
        "DELETE FROM",
        "CREATE TABLE",
        "CREATE INDEX",
        "CREATE VIEW",
        "DROP TABLE",
        "PRAGMA ",
        "ALTER TABLE",
    ];
    // Only inside a string literal: the statement follows a quote on the line.
    STATEMENTS
        .into_iter()
        .find(|s| {
            upper
                .match_indices(s)
                .any(|(i, _)| code[..i].contains('"') && code[i..].len() > s.len())
        })
        .or_else(|| {
            let update = upper.find("UPDATE ")?;
            (code[..update].contains('"') && upper[update..].contains(" SET ")).then_some("UPDATE")
        })
}

#[test]
fn no_sql_outside_the_store_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let store = src.join("store");
    let mut found = Vec::new();
    let mut checked = 0;
    for f in files {
        if f.starts_with(&store) {
            continue;
        }
        checked += 1;
        for (n, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            if let Some(kw) = sql_in(line) {
                found.push(format!("{}:{}: {kw}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(checked > 20, "only {checked} files looked at");
    assert!(
        found.is_empty(),
        "SQL outside src/store/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_sql_when_there_is_some() {
    assert_eq!(
        sql_in(r#"    c.execute("DELETE FROM outbox WHERE seq = 1", [])?;"#),
        Some("DELETE FROM")
    );
    assert_eq!(
        sql_in(r#"        "UPDATE stream_status SET state = 'x'","#),
        Some("UPDATE")
    );
    assert_eq!(sql_in("// SELECT in a comment"), None);
    assert_eq!(sql_in(r#"    let label = "Select a source";"#), None);
}
