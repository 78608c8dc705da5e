//! Replicas on the machine's real PostgreSQL: three `kandji-collector run` processes share
//! thirty simulated tenants (one simulator process: this one), with churn on. One is killed
//! with `kill -9` mid-page, one is paused with SIGSTOP past its lease and resumed, a fourth
//! joins; then every tenant's store content must equal its ground truth, with nothing lost
//! and nothing twice, and no tenant's spend may pass its budget share.
//!
//! A missing PostgreSQL skips this test with a message, or fails it under
//! `KANDJI_REQUIRE_SERVICES=1` (`.ci/run`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::backend::{Backend, pg_connect, snapshot_of, solo, unique_schema};
use common::{sim_config, snapshot_problems};
use kandji_collector::store::Store;
use kandji_collector::store::pg::LeaseRow;
use kandji_sim::{Churn, SimHandle};

const TENANTS: usize = 30;
const DEVICES: usize = 12;
const TTL: Duration = Duration::from_secs(6);
const SHARE: f64 = 0.9;
const HOURLY: u32 = 10_000;

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// A replica left running by a failed test would hold leases of a dropped schema and eat
/// the machine: kill it with the test.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {}", self.name);
    }
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Its replica id, from its log.
    fn replica_id(&self) -> Option<String> {
        let text = self.log_text();
        text.lines()
            .filter(|l| l.contains("running as a replica"))
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| v["fields"]["replica"].as_str().map(str::to_string))
    }
}

fn start(dir: &Path, name: &str) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_kandji-collector"))
        .args(["--config"])
        .arg(dir.join("config.toml"))
        .args(["--data-dir"])
        .arg(dir.join(name))
        .args([
            "--log-format",
            "json",
            "--log",
            "info,kandji_collector=debug",
            "run",
            "--no-console",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start a replica");
    Proc {
        name: name.to_string(),
        child,
        log,
    }
}

async fn leases(store: &Store) -> Vec<LeaseRow> {
    store.pg().expect("pg").leases().await.expect("leases")
}

/// The live owner of each source (expired leases count as none).
async fn owners(store: &Store) -> BTreeMap<String, Option<String>> {
    let pg = store.pg().expect("pg");
    let now = pg.db_now().await.expect("now");
    leases(store)
        .await
        .into_iter()
        .map(|l| {
            let live = l.expires_at > now;
            (l.source, l.owner.filter(|_| live))
        })
        .collect()
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The ids of every record the store holds (each row and event in its current version):
/// what the outputs must have delivered.
async fn expected_ids(store: &Store, sources: &[String]) -> BTreeSet<String> {
    use kandji_collector::store::tables;
    let pg = store.pg().expect("pg");
    let mut out = BTreeSet::new();
    for source in sources {
        for t in tables::ALL {
            let rows = pg
                .query_text(&format!(
                    "SELECT key, hash, removed_at FROM {} WHERE source = '{source}'",
                    t.name()
                ))
                .await
                .expect("rows");
            for r in rows {
                let key = r[0].clone().expect("key");
                let removed_at = r[2].as_deref().map(|v| v.parse::<i64>().expect("time"));
                let hash = match r[1].as_deref() {
                    Some(h) => h.parse::<i64>().expect("hash"),
                    // An app install's hash is derived by the store: ask it.
                    None => {
                        store
                            .inventory_row(source, t, &key)
                            .await
                            .expect("row")
                            .expect("a row")
                            .hash
                    }
                };
                out.insert(ocsf::inventory_uid(
                    source,
                    t.name(),
                    &key,
                    hash,
                    removed_at,
                ));
            }
        }
        for r in pg
            .query_text(&format!(
                "SELECT stream, uid, hash FROM events WHERE source = '{source}'"
            ))
            .await
            .expect("events")
        {
            let (st, uid, h) = (
                r[0].clone().expect("stream"),
                r[1].clone().expect("uid"),
                r[2].as_deref().expect("hash").parse::<i64>().expect("hash"),
            );
            out.insert(ocsf::record_uid(source, &st, &uid, h));
        }
    }
    out
}

/// Every message id in a JetStream stream, in stream order.
async fn stream_ids(js: &async_nats::jetstream::Context, name: &str) -> Vec<String> {
    let Ok(mut st) = js.get_stream(name).await else {
        return Vec::new();
    };
    let n = st.info().await.map(|i| i.state.messages).unwrap_or(0);
    let first = st.info().await.map(|i| i.state.first_sequence).unwrap_or(1);
    let mut ids = Vec::with_capacity(n as usize);
    for seq in first..first + n {
        if let Ok(m) = st.get_raw_message(seq).await {
            ids.push(
                m.headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default(),
            );
        }
    }
    ids
}

fn spread(o: &BTreeMap<String, Option<String>>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for owner in o.values().flatten() {
        *m.entry(owner.clone()).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_fail_over_fence_late_commits_rebalance_and_converge_on_the_truth() {
    let schema = unique_schema("replicas");
    // The test's own view of the store (it only reads).
    let Some(view) = (match Store::open_postgres(&pg_connect(&schema), solo()).await {
        Ok(s) => Some(s),
        Err(e) => {
            common::backend::missing_service(
                "replicas",
                "PostgreSQL",
                &format!("{}: {e}", common::backend::pg_url()),
            );
            None
        }
    }) else {
        return;
    };
    let mut cfg = sim_config(DEVICES, 900);
    cfg.churn = Churn {
        enroll: 20.0,
        unenroll: 20.0,
        app_changes: 200.0,
        compliance_flips: 100.0,
        vulnerabilities: 20.0,
        vuln_remediations: 20.0,
        ..Churn::default()
    };
    let sims: Vec<Arc<SimHandle>> =
        kandji_sim::spawn_tenants(cfg, TENANTS, std::net::Ipv4Addr::LOCALHOST.into())
            .await
            .expect("tenants")
            .into_iter()
            .map(Arc::new)
            .collect();
    // Every record also goes to a NATS JetStream stream (one for the test), deduplicated on
    // its id within the stream's window.
    let nats = match async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(common::backend::nats_url())
        .await
    {
        Ok(c) => async_nats::jetstream::new(c),
        Err(e) => {
            common::backend::missing_service("replicas", "NATS", &e.to_string());
            return;
        }
    };
    let stream_name = format!("KC_REPLICAS_{}", std::process::id());
    let prefix = format!("kcr{}", std::process::id());
    let dir = tempfile::tempdir().expect("dir");
    let mut toml = format!(
        "data_dir = {:?}\nstore = {:?}\nstore_schema = {schema:?}\nlease_ttl = \"{}s\"\nstore_pool_size = 6\n",
        dir.path().join("data"),
        common::backend::pg_url(),
        TTL.as_secs()
    );
    let names: Vec<String> = (0..TENANTS).map(|i| format!("t{i:02}")).collect();
    for (i, sim) in sims.iter().enumerate() {
        let tok = dir.path().join(format!("token{i}"));
        std::fs::write(&tok, sim.token()).expect("token");
        toml.push_str(&format!(
            "[[sources]]\nname = {:?}\nendpoint = {:?}\ntoken_file = {tok:?}\nallow_custom_endpoint = true\nbudget_share = {SHARE}\nhourly_limit = {HOURLY}\n\
             [[sources.sinks]]\ntype = \"nats\"\nname = \"bus\"\nformat = \"raw\"\nurl = {:?}\n\
             subject = \"{prefix}.{{source}}.{{category}}\"\nstream = {stream_name:?}\ncreate_stream = true\n\
             duplicate_window = \"30m\"\nbatch_size = 200\n[sources.schedules]\n",
            names[i],
            sim.base_url(),
            format!("nats://{}", common::backend::nats_url()),
        ));
        for s in kandji_collector::streams::StreamName::ALL {
            // Short, so the test converges in minutes; within the share (the planner checks).
            let every = match s.as_str() {
                "compliance" => "60s",
                "apps" | "device_details" => "30s",
                _ => "10s",
            };
            toml.push_str(&format!("{} = {every:?}\n", s.as_str()));
        }
    }
    std::fs::write(dir.path().join("config.toml"), toml).expect("config");
    let test_start = time::OffsetDateTime::now_utc();

    let mut procs: Vec<Proc> = ["a", "b", "c"]
        .into_iter()
        .map(|n| start(dir.path(), n))
        .collect();
    // Every source leased, spread 10/10/10, and every stream of every source collected once.
    wait_for(
        "the sources spread over three replicas",
        Duration::from_secs(60),
        || async {
            let o = owners(&view).await;
            o.len() == TENANTS && spread(&o).values().copied().collect::<Vec<_>>() == [10, 10, 10]
        },
    )
    .await;
    wait_for(
        "a first sync of every tenant",
        Duration::from_secs(300),
        || async {
            let rows = view.stream_status(None).await.expect("status");
            rows.iter().filter(|r| r.last_success_at.is_some()).count()
                == TENANTS * kandji_collector::streams::StreamName::ALL.len()
        },
    )
    .await;

    // Churn from here on: every tenant's clock moves five minutes every two seconds.
    let churning = Arc::new(AtomicBool::new(true));
    let churn = {
        let sims = sims.clone();
        let on = churning.clone();
        tokio::spawn(async move {
            while on.load(Ordering::SeqCst) {
                for s in &sims {
                    s.advance(Duration::from_secs(300));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;

    // kill -9 replica a mid-page: its sources move within the TTL (plus a tick of the others).
    let a_id = procs[0].replica_id().expect("a's replica id");
    let a_sources: Vec<String> = owners(&view)
        .await
        .into_iter()
        .filter(|(_, o)| o.as_deref() == Some(&a_id))
        .map(|(s, _)| s)
        .collect();
    assert_eq!(a_sources.len(), 10);
    let killed_at = Instant::now();
    procs[0].child.kill().expect("kill -9");
    let _ = procs[0].child.wait();
    wait_for("a's sources taken over", TTL * 3, || async {
        let o = owners(&view).await;
        a_sources.iter().all(|s| {
            o.get(s)
                .is_some_and(|w| w.is_some() && w.as_deref() != Some(&a_id))
        })
    })
    .await;
    let failover = killed_at.elapsed();
    eprintln!("failover: a's 10 sources taken over {failover:?} after kill -9 (TTL {TTL:?})");
    assert!(
        failover <= TTL + TTL / 3 + Duration::from_secs(2),
        "failover took {failover:?}"
    );

    // SIGSTOP replica b with pages in flight (its tenants answer slowly), past its lease;
    // the others take its sources; SIGCONT: the page it then commits is refused (fenced).
    let b_id = procs[1].replica_id().expect("b's replica id");
    let mut fenced = 0;
    for attempt in 0..3 {
        let o = owners(&view).await;
        let b_sources: Vec<usize> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| o.get(*n).is_some_and(|w| w.as_deref() == Some(&b_id)))
            .map(|(i, _)| i)
            .collect();
        assert!(!b_sources.is_empty(), "b holds sources");
        for &i in &b_sources {
            sims[i].set_faults(kandji_sim::Faults {
                latency_ms: 7_000,
                ..Default::default()
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        procs[1].signal("-STOP");
        for &i in &b_sources {
            sims[i].set_faults(kandji_sim::Faults::default());
        }
        wait_for("b's sources taken while it is paused", TTL * 4, || async {
            let o = owners(&view).await;
            b_sources.iter().all(|&i| {
                o.get(&names[i])
                    .is_some_and(|w| w.is_some() && w.as_deref() != Some(&b_id))
            })
        })
        .await;
        // Its requests in flight have been answered by now; it wakes to them. Its heartbeat
        // is held back for a few seconds (the test locks the replicas table against writes),
        // so that it works on, unaware, as a replica that a pause made late does: every commit
        // it then makes is a late one.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (lock_client, lock_conn) =
            tokio_postgres::connect(&common::backend::pg_url(), tokio_postgres::NoTls)
                .await
                .expect("a connection of the test's own");
        let lock_task = tokio::spawn(lock_conn);
        lock_client
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {schema}.replicas IN EXCLUSIVE MODE"
            ))
            .await
            .expect("lock the heartbeats");
        procs[1].signal("-CONT");
        tokio::time::sleep(Duration::from_secs(3)).await;
        lock_client.batch_execute("COMMIT").await.expect("unlock");
        drop(lock_client);
        let _ = lock_task.await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        fenced = procs[1]
            .log_text()
            .lines()
            .filter(|l| l.contains("store_fenced"))
            .count();
        eprintln!("pause {attempt}: {fenced} late commit(s) of b refused by the fencing check");
        if fenced > 0 {
            break;
        }
        // Let b take sources again before the next try.
        wait_for("b holding sources again", TTL * 4, || async {
            owners(&view)
                .await
                .values()
                .any(|w| w.as_deref() == Some(&b_id))
        })
        .await;
    }
    assert!(
        fenced > 0,
        "no late commit of the paused replica was fenced"
    );

    // A fourth process joins (a is dead): the sources spread over b, c and d.
    procs.push(start(dir.path(), "d"));
    wait_for(
        "the sources rebalanced over b, c and d",
        Duration::from_secs(60),
        || async {
            let o = owners(&view).await;
            let s = spread(&o);
            s.len() == 3 && s.values().all(|n| *n == 10)
        },
    )
    .await;

    // Quiet: the tenants stop changing; every store converges on its tenant's truth.
    churning.store(false, Ordering::SeqCst);
    let _ = churn.await;
    // What went away shows in the next full walk (apps hourly, vulnerability detections every
    // six hours, by the tenant's clock; the deltas between cannot say a thing went): move
    // every clock past those once, so the changes of the last churn steps are all seen.
    for s in &sims {
        s.advance(Duration::from_secs(7 * 3600));
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    loop {
        problems.clear();
        for (i, n) in names.iter().enumerate() {
            let snap = snapshot_of(Backend::Postgres, &view, Some(n)).await;
            let p = snapshot_problems(&sims[i], &snap);
            if !p.is_empty() {
                problems.insert(n.clone(), p);
            }
        }
        if problems.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert!(
        problems.is_empty(),
        "tenants that do not match their truth: {problems:#?}"
    );
    // The JetStream stream holds every record the store holds, each once: the replica killed
    // mid-publish and the one paused past its lease resent what they had published without
    // committing the offset, and the stream's duplicate window dropped the resends.
    let want = expected_ids(&view, &names).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let got = loop {
        let got = stream_ids(&nats, &stream_name).await;
        let have: BTreeSet<&String> = got.iter().collect();
        let missing = want.iter().filter(|w| !have.contains(w)).count();
        if missing == 0 {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "the stream lacks {missing} of the store's {} records",
            want.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), got.len(), "a record twice in the stream");
    eprintln!(
        "JetStream: {} messages, each record once, covering the store's {} records",
        got.len(),
        want.len()
    );
    let _ = nats.delete_stream(&stream_name).await;

    // Nothing twice: one event per uid, one live row per key (the store's keys), and the
    // outbox holds each event version once.
    let dup_events = view
        .pg()
        .expect("pg")
        .query_text(
            "SELECT count(*) FROM (SELECT source, stream, uid FROM events
               GROUP BY 1, 2, 3 HAVING count(*) > 1) d",
        )
        .await
        .expect("query");
    assert_eq!(dup_events[0][0].as_deref(), Some("0"), "duplicate events");
    let outbox_dups = view
        .pg()
        .expect("pg")
        .query_text(
            "SELECT count(*) FROM (SELECT source, ref FROM outbox WHERE tbl = 'events'
               GROUP BY 1, 2 HAVING count(*) > 1) d",
        )
        .await
        .expect("query");
    // An event updated (a new state) is a second outbox row for the same event, so this
    // counts versions, not duplicates: it must equal the events updated, which churn makes
    // rare here; an unchanged event re-read is never a second row.
    let updated = view
        .pg()
        .expect("pg")
        .query_text("SELECT count(*) FROM events WHERE updated_at <> collected_at")
        .await
        .expect("query");
    assert!(
        outbox_dups[0][0]
            .as_deref()
            .and_then(|v| v.parse::<i64>().ok())
            <= updated[0][0].as_deref().and_then(|v| v.parse::<i64>().ok()),
        "outbox rows beyond event versions: {outbox_dups:?} for {updated:?} updated events"
    );

    // No tenant spent more than its share of the hour (twice if the test crossed an hour).
    let test_end = time::OffsetDateTime::now_utc();
    let hours = if test_start.hour() == test_end.hour() {
        1
    } else {
        2
    };
    let cap = (f64::from(HOURLY) * SHARE).floor() as u64 * hours;
    let spend: BTreeMap<&str, u64> = names
        .iter()
        .zip(&sims)
        .map(|(n, s)| (n.as_str(), s.stats().total))
        .collect();
    let over: Vec<_> = spend.iter().filter(|(_, t)| **t > cap).collect();
    assert!(over.is_empty(), "tenants over their share {cap}: {over:?}");
    eprintln!(
        "spend per tenant over the test: max {}, mean {} (share {cap})",
        spend.values().max().unwrap_or(&0),
        spend.values().sum::<u64>() / TENANTS as u64
    );

    for p in &mut procs[1..] {
        p.signal("-TERM");
    }
    for p in &mut procs[1..] {
        let _ = p.child.wait();
    }
    let left: BTreeSet<String> = leases(&view)
        .await
        .into_iter()
        .filter_map(|l| l.owner)
        .collect();
    assert!(
        left.is_empty(),
        "an orderly exit gives its leases back: {left:?}"
    );
    view.pg()
        .expect("pg")
        .drop_schema(&schema)
        .await
        .expect("drop schema");
}

/// One console replica on the shared store, serving, with its supervisor running as a
/// replica.
struct ConsoleReplica {
    store: Store,
    url: String,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn console_replica(schema: &str, id: &str, key_file: &Path, dir: &Path) -> ConsoleReplica {
    use kandji_collector::store::pg::{LeaseMode, Replica};
    use kandji_collector::web::{self, ConsoleOptions};
    let store = Store::open_postgres(
        &pg_connect(schema),
        LeaseMode::Replica(Replica::new(id, 3_000)),
    )
    .await
    .expect("replica store");
    let started = web::start_with(
        store.clone(),
        ConsoleOptions {
            data_dir: dir.join(id),
            listen: "127.0.0.1:0".parse().expect("addr"),
            config_sources: Vec::new(),
            allow_custom_endpoints: true,
            generate_password: false,
            secure_cookies: false,
            api_key: Some("replica-test-key".into()),
            public_url: None,
            key_file: Some(key_file.to_path_buf()),
        },
    )
    .await
    .expect("console");
    let url = started.url.trim_end_matches('/').to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    let rx = stop.clone();
    let task = tokio::spawn(async move {
        web::serve(started, rx).await.expect("serve");
    });
    ConsoleReplica {
        store,
        url,
        stop,
        task,
    }
}

fn cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .find_map(|v| {
            let s = v.to_str().ok()?;
            let (kv, _) = s.split_once(';').unwrap_or((s, ""));
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

fn hidden(body: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let i = body.find(&pat).expect("hidden field") + pat.len();
    body[i..].split('"').next().unwrap_or_default().to_string()
}

/// Logs in to a replica's console and reads every page and API endpoint: each answers 200
/// with what the shared store holds.
async fn check_console(r: &ConsoleReplica, source: &str) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    kandji_collector::web::auth::set_password(&r.store, "replica-test-password")
        .await
        .expect("password");
    let login = http
        .get(format!("{}/login", r.url))
        .send()
        .await
        .expect("login page");
    let pre = cookie(&login, "kc_pre").expect("pre cookie");
    let csrf = hidden(&login.text().await.expect("body"), "csrf");
    let resp = http
        .post(format!("{}/login", r.url))
        .header("cookie", format!("kc_pre={pre}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("csrf", csrf.as_str()),
                ("password", "replica-test-password"),
            ])
            .expect("form"),
        )
        .send()
        .await
        .expect("login");
    let session = cookie(&resp, "kc_session").expect("session");
    let api = |path: String| {
        http.get(format!("{}{path}", r.url))
            .bearer_auth("replica-test-key")
            .send()
    };
    let events: serde_json::Value = api("/api/events".into())
        .await
        .expect("events")
        .json()
        .await
        .expect("json");
    let seq = events["events"][0]["seq"].as_i64().expect("an event");
    let devices: serde_json::Value = api(format!("/api/devices?source={source}"))
        .await
        .expect("devices")
        .json()
        .await
        .expect("json");
    let device = devices[0]["id"].as_str().expect("a device").to_string();
    for path in [
        "/api/sources".to_string(),
        format!("/api/sources/{source}"),
        "/api/status".into(),
        "/api/events?q=device".into(),
        format!("/api/events/{seq}"),
        format!("/api/devices/{source}/{device}"),
        "/api/users".into(),
        "/api/apps?q=a".into(),
        "/metrics".into(),
        "/readyz".into(),
    ] {
        let resp = api(path.clone()).await.expect("request");
        assert_eq!(resp.status(), 200, "{path} on the shared store");
    }
    for path in [
        "/sources".to_string(),
        format!("/sources/{source}"),
        format!("/sources/{source}/budget.svg"),
        format!("/sources/{source}/records.svg"),
        "/events".into(),
        format!("/events/{seq}"),
        "/devices".into(),
        "/devices.csv".into(),
        format!("/devices/{source}/{device}"),
        "/users".into(),
        "/apps".into(),
        "/live/sources".into(),
    ] {
        let resp = http
            .get(format!("{}{path}", r.url))
            .header("cookie", format!("kc_session={session}"))
            .send()
            .await
            .expect("page");
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(
            status,
            200,
            "{path} on the shared store: {}",
            &body[..body.len().min(300)]
        );
        assert!(!body.is_empty(), "{path} is empty");
    }
}

async fn last_run(store: &Store, source: &str, stream: &str) -> Option<i64> {
    store
        .stream_status(Some(source))
        .await
        .expect("status")
        .into_iter()
        .find(|r| r.stream == stream)
        .and_then(|r| r.last_run_at)
}

/// "Sync now" pressed on a replica that does not collect the source reaches the one that
/// does, and a console edit on any replica is in force on the owner at once: both through
/// LISTEN/NOTIFY (without it the sync would go nowhere and the edit would wait for the 30 s
/// reconcile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_now_and_console_edits_reach_the_owning_replica() {
    if !common::backend::pg_available("sync_now_and_console_edits_reach_the_owning_replica").await {
        return;
    }
    kandji_api::client::install_crypto_provider();
    let schema = unique_schema("signals");
    let sims =
        kandji_sim::spawn_tenants(sim_config(8, 31), 2, std::net::Ipv4Addr::LOCALHOST.into())
            .await
            .expect("tenants");
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("shared-console.key");
    let r1 = console_replica(&schema, "r1", &key, dir.path()).await;
    let r2 = console_replica(&schema, "r2", &key, dir.path()).await;
    // Two sources, added on r1's console (tokens encrypted with the shared key).
    let cipher = kandji_collector::web::TokenCipher::load_or_create(&key).expect("key");
    for (i, sim) in sims.iter().enumerate() {
        kandji_collector::web::sources::insert(
            &r1.store,
            &cipher,
            kandji_collector::web::sources::NewSource {
                name: format!("s{i}"),
                endpoint: sim.base_url(),
                region: kandji_api::Region::Us,
                allow_custom: true,
                token: kandji_api::SecretString::from(sim.token().to_string()),
                streams: kandji_collector::streams::StreamName::ALL.to_vec(),
            },
        )
        .await
        .expect("add source");
    }
    let view = &r1.store;
    wait_for(
        "one source per replica",
        Duration::from_secs(30),
        || async {
            let o = owners(view).await;
            let s = spread(&o);
            s.get("r1") == Some(&1) && s.get("r2") == Some(&1)
        },
    )
    .await;
    wait_for(
        "a first sync of both sources",
        Duration::from_secs(120),
        || async {
            let rows = view.stream_status(None).await.expect("status");
            rows.iter().filter(|r| r.last_success_at.is_some()).count()
                == 2 * kandji_collector::streams::StreamName::ALL.len()
        },
    )
    .await;
    let o = owners(view).await;
    let on_r1 = o
        .iter()
        .find(|(_, w)| w.as_deref() == Some("r1"))
        .map(|(s, _)| s.clone())
        .expect("r1's source");
    // Sync now for r1's source, asked of r2 (over its JSON API).
    let before = last_run(view, &on_r1, "devices").await.expect("a run");
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/sources/{on_r1}/sync?stream=devices",
            r2.url
        ))
        .bearer_auth("replica-test-key")
        .send()
        .await
        .expect("sync request");
    assert!(resp.status().is_success(), "{}", resp.status());
    wait_for(
        "the owner runs the stream",
        Duration::from_secs(5),
        || async { last_run(view, &on_r1, "devices").await > Some(before) },
    )
    .await;
    // Every page and API answer on either replica from the shared store, whichever replica
    // collects what they show.
    check_console(&r2, &on_r1).await;
    // A console edit on r2 (disable r1's source): r1 stops it and says so at once.
    kandji_collector::web::sources::set_enabled(&r2.store, &on_r1, false)
        .await
        .expect("disable");
    wait_for(
        "the owner applies the edit",
        Duration::from_secs(5),
        || async {
            view.stream_status(Some(&on_r1))
                .await
                .expect("status")
                .iter()
                .all(|r| r.state == "disabled")
        },
    )
    .await;
    for r in [r1, r2] {
        r.stop.cancel();
        let _ = r.task.await;
    }
    let pg = kandji_collector::store::Store::open_postgres(&pg_connect(&schema), solo())
        .await
        .expect("store");
    pg.pg()
        .expect("pg")
        .drop_schema(&schema)
        .await
        .expect("drop");
}

/// The new owner of a source reads what the old one spent this hour from the store, so that a
/// handover never spends the tenant's share twice: the tenant's own count of requests stays
/// within the share across it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_keeps_the_hours_spend_within_the_share() {
    use kandji_collector::engine::SourceRuntime;
    use kandji_collector::store::pg::{LeaseMode, Replica};
    use kandji_collector::streams::StreamName;
    if !common::backend::pg_available("a_handover_keeps_the_hours_spend_within_the_share").await {
        return;
    }
    // The share: 60 requests an hour (200 × 0.3), against a tenant with plenty left.
    let (limit, share) = (200, 0.3);
    let cap = 60;
    for attempt in 0..2 {
        let hour = time::OffsetDateTime::now_utc().hour();
        let schema = unique_schema("handover");
        let sim = Arc::new(kandji_sim::spawn(sim_config(40, 5)).await.expect("sim"));
        let mut source = common::source_for(&sim, "acme");
        source.hourly_limit = limit;
        source.budget_share = share;
        let open = |id: &'static str| {
            let schema = schema.clone();
            async move {
                Store::open_postgres(
                    &pg_connect(&schema),
                    LeaseMode::Replica(Replica::new(id, 2_000)),
                )
                .await
                .expect("store")
            }
        };
        // Replica a collects a part of the tenant, then dies (its lease expires).
        let a = open("a").await;
        let pa = a.pg().expect("pg").clone();
        pa.register_sources(&["acme".into()])
            .await
            .expect("register");
        let now = pa.db_now().await.expect("now");
        let r = pa
            .rebalance(&Replica::new("a", 2_000), now)
            .await
            .expect("lease");
        pa.set_held(&r.held);
        let rt_a = SourceRuntime::new(
            source.clone(),
            a.clone(),
            tokio_util::sync::CancellationToken::new(),
        )
        .expect("runtime");
        for s in [
            StreamName::Blueprints,
            StreamName::Tags,
            StreamName::Devices,
        ] {
            rt_a.run_stream(s).await.expect("a's run");
        }
        let spent_by_a = sim.stats().total;
        assert!(spent_by_a > 0 && spent_by_a < cap, "a spent {spent_by_a}");
        drop(rt_a);
        drop(a);
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        // Replica b takes the source over and starts from what a spent.
        let b = open("b").await;
        let pb = b.pg().expect("pg").clone();
        let now = pb.db_now().await.expect("now");
        let r = pb
            .rebalance(&Replica::new("b", 60_000), now)
            .await
            .expect("lease");
        assert_eq!(r.acquired, ["acme"], "b takes the expired lease");
        pb.set_held(&r.held);
        let rt_b = Arc::new(
            SourceRuntime::new(
                source.clone(),
                b.clone(),
                tokio_util::sync::CancellationToken::new(),
            )
            .expect("runtime"),
        );
        rt_b.resume_budget().await;
        let st = rt_b.budget.state();
        // b then collects everything it may: the budget stops it at the share.
        let run = {
            let rt = rt_b.clone();
            tokio::spawn(async move { kandji_collector::engine::sync_once(&rt, &[]).await })
        };
        tokio::time::sleep(Duration::from_secs(8)).await;
        run.abort();
        let total = sim.stats().total;
        let same_hour = time::OffsetDateTime::now_utc().hour() == hour;
        b.pg()
            .expect("pg")
            .drop_schema(&schema)
            .await
            .expect("drop");
        if !same_hour && attempt == 0 {
            // The hour turned during the test: the share started over; run it again.
            continue;
        }
        assert_eq!(
            u64::from(st.spent_this_hour),
            spent_by_a,
            "b starts from a's spend, as the store recorded it"
        );
        assert!(
            total <= cap,
            "the tenant saw {total} requests this hour across the handover; the share is {cap}"
        );
        // The limit was reached: bulk requests are refused now (the last fifth of the share
        // is kept for security and audit streams).
        assert!(
            rt_b.budget
                .try_acquire(kandji_api::budget::Priority::Bulk)
                .is_err(),
            "b stopped at the share ({total} of {cap} spent)"
        );
        assert!(
            total >= cap * 4 / 5 - 2,
            "b spent up to its share: {total} of {cap}"
        );
        return;
    }
}
