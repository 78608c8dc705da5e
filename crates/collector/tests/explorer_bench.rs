//! Latency of every explorer read on a collected store (the queries the console's pages, the
//! JSON API and the devices CSV run), through the store's API, as the handlers call it.
//!
//! ```sh
//! bench/explorer.sh 50000      # collects a 50k-device tenant, then runs this
//! KANDJI_BENCH_STORE=DIR cargo test --release -p kandji-collector --test explorer_bench \
//!   -- --ignored --nocapture
//! ```
//! Prints p50 / p95 / max per query (20 runs each after one warm-up). Not a timed assertion.

use std::time::{Duration, Instant};

use kandji_collector::store::{DeviceFilter, EventFilter, Store, device_sorts};

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| ms(v[((v.len() as f64 - 1.0) * q).round() as usize]);
    (p(0.5), p(0.95), ms(*v.last().unwrap()))
}

async fn time<F, Fut, T>(name: &str, runs: usize, mut f: F, out: &mut Vec<(String, f64, f64, f64)>)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    f(0).await; // warm-up
    let mut v = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        f(i + 1).await;
        v.push(t.elapsed());
    }
    let (p50, p95, max) = stats(v);
    out.push((name.to_string(), p50, p95, max));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark on a collected store: KANDJI_BENCH_STORE=DIR, --release --ignored"]
async fn explorer_queries_on_a_collected_store() {
    let dir = std::env::var("KANDJI_BENCH_STORE").expect("KANDJI_BENCH_STORE=data dir");
    let store = Store::open_read_only(std::path::Path::new(&dir)).expect("store");
    let page = store.devices_page(DeviceFilter::default()).await.unwrap();
    assert!(!page.is_empty(), "the store has no devices");
    let source = page[0].source.clone();
    let (fleet, _) = store.fleet_size(&source).await.unwrap();
    let mut ids = Vec::new();
    for p in [0usize, 7, 40, 200] {
        let f = DeviceFilter {
            page: Some(p),
            ..Default::default()
        };
        ids.extend(
            store
                .devices_page(f)
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.id),
        );
    }
    let mut out = Vec::new();
    let runs = 20;
    for sort in device_sorts() {
        for dir in ["asc", "desc"] {
            let f = DeviceFilter {
                sort: Some(sort.into()),
                dir: Some(dir.into()),
                ..Default::default()
            };
            let s = &store;
            time(
                &format!("devices sort={sort} {dir}"),
                runs,
                |_| {
                    let f = f.clone();
                    async move { s.devices_page(f).await.unwrap() }
                },
                &mut out,
            )
            .await;
        }
    }
    let s = &store;
    let deep = DeviceFilter {
        page: Some((fleet as usize / 50).saturating_sub(1)),
        ..Default::default()
    };
    time(
        "devices last page (OFFSET)",
        runs,
        |_| {
            let f = deep.clone();
            async move { s.devices_page(f).await.unwrap() }
        },
        &mut out,
    )
    .await;
    for (what, f) in [
        (
            "devices q=MacBook",
            DeviceFilter {
                q: Some("MacBook".into()),
                ..Default::default()
            },
        ),
        (
            "devices q=no-such-thing",
            DeviceFilter {
                q: Some("no-such-thing".into()),
                ..Default::default()
            },
        ),
        (
            "devices platform=iPhone",
            DeviceFilter {
                platform: Some("iPhone".into()),
                ..Default::default()
            },
        ),
        (
            "devices source filter",
            DeviceFilter {
                source: Some(source.clone()),
                ..Default::default()
            },
        ),
    ] {
        time(
            what,
            runs,
            |_| {
                let f = f.clone();
                async move { s.devices_page(f).await.unwrap() }
            },
            &mut out,
        )
        .await;
    }
    let ids2 = ids.clone();
    let src = source.clone();
    time(
        "device page",
        runs,
        |i| {
            let id = ids2[i % ids2.len()].clone();
            let src = src.clone();
            async move { s.device(&src, &id).await.unwrap().unwrap() }
        },
        &mut out,
    )
    .await;
    for q in ["Firefox", "Microsoft", "a"] {
        time(
            &format!("apps search q={q}"),
            runs,
            |_| async move { s.apps_search(q.into(), None, None).await.unwrap() },
            &mut out,
        )
        .await;
    }
    let (apps, _) = store
        .apps_search("Firefox".into(), None, None)
        .await
        .unwrap();
    if let Some(a) = apps.first() {
        let b = a.bundle_id.clone();
        time(
            &format!("app devices bundle={b}"),
            runs,
            |_| {
                let b = b.clone();
                async move { s.apps_search(b.clone(), None, Some(b)).await.unwrap() }
            },
            &mut out,
        )
        .await;
    }
    for (what, q, p) in [
        ("users", None, 0),
        ("users page 5", None, 5),
        ("users q=a", Some("a"), 0),
    ] {
        time(
            what,
            runs,
            |_| async move { s.users_page(q.map(str::to_string), p).await.unwrap() },
            &mut out,
        )
        .await;
    }
    let dev = ids[0].clone();
    for (what, f) in [
        ("events newest", EventFilter::default()),
        (
            "events source",
            EventFilter {
                source: Some(source.clone()),
                ..Default::default()
            },
        ),
        (
            "events category=audit",
            EventFilter {
                category: Some("audit".into()),
                ..Default::default()
            },
        ),
        (
            "events device",
            EventFilter {
                device: Some(dev.clone()),
                ..Default::default()
            },
        ),
        (
            "events q=blueprint",
            EventFilter {
                q: Some("blueprint".into()),
                ..Default::default()
            },
        ),
    ] {
        time(
            what,
            runs,
            |_| {
                let f = f.clone();
                async move { s.events_page(f, 50).await.unwrap() }
            },
            &mut out,
        )
        .await;
    }
    let page1 = store.events_page(EventFilter::default(), 50).await.unwrap();
    if let Some(next) = page1.next {
        let f = EventFilter {
            after: Some(next),
            ..Default::default()
        };
        time(
            "events next page (keyset)",
            runs,
            |_| {
                let f = f.clone();
                async move { s.events_page(f, 50).await.unwrap() }
            },
            &mut out,
        )
        .await;
    }
    println!(
        "{fleet} devices in {dir}\n{:<36} {:>9} {:>9} {:>9}",
        "query", "p50 ms", "p95 ms", "max ms"
    );
    for (n, p50, p95, max) in &out {
        println!("{n:<36} {p50:>9.2} {p95:>9.2} {max:>9.2}");
    }
    // The devices CSV of the whole fleet, streamed.
    let t = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let st = store.clone();
    let h = tokio::spawn(async move { st.stream_devices(DeviceFilter::default(), tx).await });
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut n = 0;
    while let Some(d) = rx.recv().await {
        w.write_record([
            &d.source,
            &d.id,
            &d.name,
            &d.serial,
            &d.platform,
            &d.model,
            &d.os_version,
            &d.blueprint,
            &d.tags,
            &d.user,
            &d.last_check_in.clone().unwrap_or_default(),
            &d.compliance_pass.to_string(),
            &d.compliance_fail.to_string(),
            &d.filevault,
            &d.apps.to_string(),
        ])
        .unwrap();
        n += 1;
    }
    h.await.unwrap().unwrap();
    let bytes = w.into_inner().unwrap().len();
    println!(
        "devices CSV: {n} rows, {:.1} MB in {:.2} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(n as u64, fleet);
}
