//! A store written by schema version 3 (`tests/fixtures/v3`, made by the code of 133e509)
//! migrates in place to the current version, and nothing it held is lost: rows, events,
//! checkpoints, stream status, samples, console sources (their tokens still decrypt), the
//! admin, the outbox (each reference still finds its record, with the same id) and the
//! output offsets and dead letters. The normalized app inventory rebuilds every old `apps`
//! row byte for byte, and re-reading the same rows after the migration changes nothing.

use std::collections::BTreeMap;
use std::io::Read;

use kandji_collector::outputs::{self, Format, SourceInfo};
use kandji_collector::store::{Batch, InvRow, Scope, Store, SweepEnd, Table, Upsert, schema};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use secrecy::ExposeSecret;

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3");
    let mut gz = flate2::read::GzDecoder::new(
        std::fs::File::open(base.join("kandji.sqlite3.gz")).expect("fixture"),
    );
    let mut bytes = Vec::new();
    gz.read_to_end(&mut bytes).unwrap();
    std::fs::write(dir.path().join("kandji.sqlite3"), bytes).unwrap();
    std::fs::copy(base.join("console.key"), dir.path().join("console.key")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("console.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    dir
}

fn ro(path: &std::path::Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// Every row of a table, every column, in rowid order (or key order for WITHOUT ROWID).
fn dump(c: &Connection, table: &str, order: &str) -> Vec<Vec<Value>> {
    let mut st = c
        .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
        .unwrap();
    let n = st.column_count();
    st.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The old `apps` rows: key → (raw, hash, first_seen, last_seen, removed_at).
type AppRow = (String, i64, i64, i64, Option<i64>);

fn old_apps(c: &Connection) -> BTreeMap<String, AppRow> {
    let mut st = c
        .prepare("SELECT key, raw, hash, first_seen, last_seen, removed_at FROM apps")
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

const KEPT: [(&str, &str); 18] = [
    ("devices", "rowid"),
    ("device_details", "rowid"),
    ("compliance", "rowid"),
    ("users", "rowid"),
    ("blueprints", "rowid"),
    ("tags", "rowid"),
    ("ade_devices", "rowid"),
    ("vuln_detections", "rowid"),
    ("events", "seq"),
    ("checkpoints", "source, stream"),
    ("stream_status", "source, stream"),
    ("refresh_queue", "source, device_id"),
    ("budget_samples", "source, hour"),
    ("record_samples", "source, hour, category"),
    ("console_sources", "name"),
    ("console_admin", "id"),
    ("output_offsets", "source, output"),
    ("dead_letters", "id"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_store_migrates_in_place_and_keeps_everything() {
    let dir = fixture();
    let path = dir.path().join("kandji.sqlite3");
    let (before, apps_before, outbox_before) = {
        let c = ro(&path);
        let v: u32 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 3, "the fixture is a version-3 store");
        let before: BTreeMap<&str, Vec<Vec<Value>>> =
            KEPT.iter().map(|(t, o)| (*t, dump(&c, t, o))).collect();
        let outbox = dump(&c, "outbox", "seq");
        (before, old_apps(&c), outbox)
    };
    assert!(apps_before.len() > 1000, "{} app rows", apps_before.len());
    assert!(
        apps_before.values().any(|a| a.4.is_some()),
        "the fixture holds removed apps"
    );

    let store = Store::open(dir.path()).expect("the v3 store opens and migrates");
    let c = ro(&path);
    let v: u32 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema::latest_version());

    // The search index was rebuilt over values: every event is in it, a key name finds
    // nothing, and a value does.
    let n = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    let events = n("SELECT count(*) FROM events");
    assert!(events > 0, "the fixture holds events");
    assert_eq!(n("SELECT count(*) FROM events_fts"), events);
    assert_eq!(
        n("SELECT count(*) FROM events_fts WHERE events_fts MATCH '\"occurred_at\"'"),
        0,
        "a JSON key is not searchable"
    );
    let value: String = c
        .query_row(
            "SELECT json_extract(raw, '$.id') FROM events
             WHERE stream = 'audit_events' AND json_extract(raw, '$.id') IS NOT NULL LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let hits: i64 = c
        .query_row(
            "SELECT count(*) FROM events_fts WHERE events_fts MATCH ?1",
            [format!("\"{value}\"")],
            |r| r.get(0),
        )
        .unwrap();
    assert!(hits >= 1, "a value ({value}) is searchable");

    // Every other table: every row, every column, unchanged.
    for (t, o) in KEPT {
        let mut after = dump(&c, t, o);
        if t == "devices" || t == "output_offsets" {
            // `app_count` and `part` are new (the last column): the rest is as it was.
            for r in &mut after {
                r.pop();
            }
        }
        // Migration 8 appends columns: the other tools' spend to the budget samples, the
        // token settings to console sources. The rest is as it was.
        let appended = match t {
            "budget_samples" => 1,
            "console_sources" => 3,
            _ => 0,
        };
        for r in &mut after {
            for _ in 0..appended {
                assert_eq!(r.pop(), Some(Value::Null), "{t}: a new column is empty");
            }
        }
        assert_eq!(after, before[t], "{t} changed in the migration");
    }

    // Apps: every old row, live and removed, rebuilt byte for byte with its hash and times.
    for (key, (raw, hash, first, last, removed)) in &apps_before {
        let r = store
            .inventory_row("acme", Table::Apps, key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("app {key} lost"));
        assert_eq!(&r.raw.to_string(), raw, "app {key} rebuilt differently");
        assert_eq!(r.hash, *hash, "{key}");
        assert_eq!((r.last_seen, r.removed_at), (*last, *removed), "{key}");
        let f: i64 = c
            .query_row(
                "SELECT first_seen FROM apps WHERE source = 'acme' AND key = ?1",
                [key],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(f, *first);
    }
    let live: i64 = c
        .query_row(
            "SELECT count(*) FROM apps WHERE removed_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let live_before = apps_before.values().filter(|a| a.4.is_none()).count() as i64;
    assert_eq!(live, live_before);
    // The writer's counters start right.
    let counted: i64 = c
        .query_row("SELECT sum(live_apps) FROM app_devices", [], |r| r.get(0))
        .unwrap();
    let per_version: i64 = c
        .query_row("SELECT sum(installs) FROM app_versions", [], |r| r.get(0))
        .unwrap();
    assert_eq!((counted, per_version), (live_before, live_before));

    // The outbox: same rows, and each still finds its record (apps by device and title now).
    let outbox_after = dump(&c, "outbox", "seq");
    assert_eq!(outbox_after.len(), outbox_before.len());
    for (b, a) in outbox_before.iter().zip(&outbox_after) {
        assert_eq!(a[..3], b[..3], "outbox seq, source, tbl");
        if b[2] == Value::Text("apps".into()) {
            let Value::Text(old_key) = &b[3] else {
                panic!()
            };
            let Value::Text(ids) = &a[3] else { panic!() };
            let (dev, title) = ids.split_once(':').expect("DEV:TITLE");
            let key: String = c
                .query_row(
                    "SELECT key FROM apps WHERE dev = ?1 AND title = ?2",
                    [dev.parse::<i64>().unwrap(), title.parse::<i64>().unwrap()],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(&key, old_key);
        } else {
            assert_eq!(a[3], b[3]);
        }
    }
    // What the output `siem` has not delivered yet reads back with the ids it had.
    let offset = store.output_offset("acme", "siem").await.unwrap();
    assert!(offset.seq > 0 && offset.part.is_none());
    let info = SourceInfo {
        source: "acme".into(),
        tenant: "acme".into(),
    };
    let (records, _, _) = outputs::outbox::read_batch(&store, &info, Format::Raw, offset, 500)
        .await
        .unwrap();
    assert!(!records.is_empty());
    for r in &records {
        if r.kind == "apps" {
            // The id it had; a removal's is its own (it used to share the live version's).
            let (_, hash, _, _, removed_at) = &apps_before[&r.record_key];
            assert_eq!(
                r.id,
                ocsf::inventory_uid("acme", "apps", &r.record_key, *hash, *removed_at)
            );
        }
    }

    // The console source's token still decrypts with the key file; the admin still logs in.
    let cipher =
        kandji_collector::web::TokenCipher::load_or_create(&dir.path().join("console.key"))
            .unwrap();
    let src = kandji_collector::web::sources::get(&store, "console-src")
        .await
        .unwrap()
        .expect("console source kept");
    let resolved = src.resolve(&cipher).expect("decrypts");
    assert_eq!(
        resolved.token.expose_secret(),
        "tok-fixture-0123456789abcdef"
    );
    let hash = kandji_collector::web::auth::stored_hash(&store)
        .await
        .unwrap()
        .unwrap();
    assert!(kandji_collector::web::auth::verify_password(
        "fixture-password",
        &hash
    ));

    // Re-reading the same live apps as a full snapshot changes nothing: the migration's
    // encoding is the collector's.
    let events_before: i64 = c
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let outbox_len = outbox_after.len();
    let now = 1_800_000_000_000;
    let rows: Vec<InvRow> = apps_before
        .iter()
        .filter(|(_, a)| a.4.is_none())
        .map(|(k, a)| InvRow {
            key: k.clone(),
            device_id: k.split('|').next().map(str::to_string),
            values: vec![Value::Null; Table::Apps.spec().columns.len()],
            raw: a.0.clone(),
        })
        .collect();
    let mut b = Batch::new("acme", "apps", now, "apps");
    b.upserts.push(Upsert {
        table: Table::Apps,
        sweep: now,
        started_at: now,
        rows,
    });
    b.sweep_ends.push(SweepEnd {
        table: Table::Apps,
        sweep: now,
        scope: Scope::All,
    });
    let out = store.commit_page(b).await.unwrap();
    assert_eq!(
        (out.inserted, out.updated, out.removed, out.changes),
        (0, 0, 0, 0),
        "{out:?}"
    );
    assert_eq!(out.unchanged as i64, live_before);
    let events_after: i64 = c
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let outbox_now: i64 = c
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(events_after, events_before);
    assert_eq!(outbox_now as usize, outbox_len);
}

/// Every inventory table of a migrated store has exactly the columns its spec in
/// `store/tables.rs` says (the migrations are literal SQL; this keeps them and the specs in
/// step), and a fresh store has the same schema as a migrated one.
#[tokio::test]
async fn migrated_tables_match_the_table_specs_and_a_fresh_store() {
    let dir = fixture();
    drop(Store::open(dir.path()).unwrap());
    let fresh = tempfile::tempdir().unwrap();
    drop(Store::open(fresh.path()).unwrap());
    let migrated = ro(&dir.path().join("kandji.sqlite3"));
    let new = ro(&fresh.path().join("kandji.sqlite3"));
    let columns = |c: &Connection, t: &str| -> Vec<(String, String)> {
        let mut st = c.prepare(&format!("PRAGMA table_info({t})")).unwrap();
        st.query_map([], |r| Ok((r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let common = [
        ("source", "TEXT"),
        ("key", "TEXT"),
        ("device_id", "TEXT"),
        ("hash", "INTEGER"),
        ("first_seen", "INTEGER"),
        ("last_seen", "INTEGER"),
        ("removed_at", "INTEGER"),
        ("sweep", "INTEGER"),
        ("missing", "INTEGER"),
    ];
    for t in kandji_collector::store::tables::ALL {
        if t == Table::Apps {
            continue; // normalized: checked below
        }
        let spec = t.spec();
        let mut want: Vec<(String, String)> = common
            .iter()
            .map(|(n, ty)| (n.to_string(), ty.to_string()))
            .collect();
        want.extend(
            spec.columns
                .iter()
                .map(|c| (c.name.to_string(), c.sql_type.to_string())),
        );
        want.push(("raw".into(), "TEXT".into()));
        if t == Table::Devices {
            want.push(("app_count".into(), "INTEGER".into()));
        }
        assert_eq!(columns(&migrated, spec.name), want, "{}", spec.name);
    }
    // The apps view keeps the old columns (but raw) and the typed columns of the spec.
    let view: Vec<String> = columns(&migrated, "apps")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for c in Table::Apps.spec().columns {
        assert!(view.contains(&c.name.to_string()), "{view:?}");
    }
    // Fresh and migrated stores: the same tables, indexes and columns.
    let objects = |c: &Connection| -> Vec<(String, String)> {
        let mut st = c
            .prepare(
                "SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(objects(&migrated), objects(&new));
    for (ty, name) in objects(&new) {
        if ty == "table" || ty == "view" {
            assert_eq!(columns(&migrated, &name), columns(&new, &name), "{name}");
        }
    }
}

/// Schema 5: an app version's typed `version` is Prism's `version`, not the build number in
/// `short_version` that earlier builds preferred; a version whose fields have no `version`
/// keeps what it had.
#[tokio::test]
async fn schema_5_reads_an_app_versions_version_not_its_build_number() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).expect("a new store"));
    let path = dir.path().join("kandji.sqlite3");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            r#"INSERT INTO app_titles (id, ident) VALUES (1, 'com.x'), (2, 'com.y');
               INSERT INTO app_versions (id, title, name, bundle_id, version, path, fields) VALUES
                 (1, 1, 'X', 'com.x', '70911000', '/X.app',
                  '{"name":"X","short_version":"70911000","version":"7.9.11"}'),
                 (2, 2, 'Y', 'com.y', '12', '/Y.app', '{"name":"Y","short_version":"12"}');
               PRAGMA user_version = 4;"#,
        )
        .unwrap();
    }
    drop(Store::open(dir.path()).expect("the v4 store migrates"));
    let c = ro(&path);
    let versions: Vec<(i64, String)> = c
        .prepare("SELECT id, version FROM app_versions ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, [(1, "7.9.11".to_string()), (2, "12".to_string())]);
    let v: u32 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema::latest_version());
}
