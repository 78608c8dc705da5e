//! Latency of every explorer read on a collected store (the queries the console's pages, the
//! JSON API and the devices CSV run), through the store's API, as the handlers call it.
//!
//! ```sh
//! bench/explorer.sh 50000      # collects a 50k-device tenant, then runs this
//! KANDJI_BENCH_STORE=DIR cargo test --release -p kandji-collector --test explorer_bench \
//!   -- --ignored --nocapture
//! ```
//! Prints p50 / p95 / max per query (20 runs each after one warm-up). Not a timed assertion.
//!
//! `console_pages_on_a_collected_store` times the console's pages the same way, over HTTP on
//! loopback, logged in, as a browser asks for them (render included); it needs the bench's
//! config too (`KANDJI_BENCH_CONFIG`), so the source page has its source (disabled: nothing
//! collects while it runs).

use std::time::{Duration, Instant};

use kandji_collector::store::{DeviceFilter, EventFilter, Store, device_sorts};

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| ms(v[((v.len() as f64 - 1.0) * q).round() as usize]);
    (p(0.5), p(0.95), ms(*v.last().unwrap()))
}

/// The newest page of one category's events.
async fn newest_of(store: &Store, category: &str) -> kandji_collector::store::EventPage {
    let f = EventFilter {
        category: Some(category.into()),
        ..Default::default()
    };
    store.events_page(f, 50).await.unwrap()
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
        // "Newer" from the second page: back to the first, walking the index upwards.
        let page2 = store.events_page(f, 50).await.unwrap();
        if let Some(prev) = page2.prev {
            let f = EventFilter {
                before: Some(prev),
                ..Default::default()
            };
            time(
                "events newer page (keyset)",
                runs,
                |_| {
                    let f = f.clone();
                    async move { s.events_page(f, 50).await.unwrap() }
                },
                &mut out,
            )
            .await;
        }
    }
    // An event page: the raw record, the device's name and the related detections.
    let security = newest_of(&store, "security").await;
    if let Some(e) = security.events.first() {
        let seq = e.seq;
        time(
            "event page (security, related)",
            runs,
            |_| async move { s.event(seq).await.unwrap().unwrap() },
            &mut out,
        )
        .await;
    }
    time(
        "apps landing (overview)",
        runs,
        |_| async move { s.apps_overview(10).await.unwrap() },
        &mut out,
    )
    .await;
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

/// GET `path` logged in; the body's length.
async fn page(http: &reqwest::Client, url: &str, cookie: &str, path: &str) -> usize {
    let r = http
        .get(format!("{url}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.bytes().await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark on a collected store: KANDJI_BENCH_STORE=DIR KANDJI_BENCH_CONFIG=FILE"]
async fn console_pages_on_a_collected_store() {
    use kandji_collector::web;
    kandji_api::client::install_crypto_provider();
    let dir = std::env::var("KANDJI_BENCH_STORE").expect("KANDJI_BENCH_STORE=data dir");
    let config = std::env::var("KANDJI_BENCH_CONFIG").expect("KANDJI_BENCH_CONFIG=config file");
    let mut sources = kandji_collector::config::Config::load(std::path::Path::new(&config))
        .unwrap()
        .resolve()
        .unwrap();
    for s in &mut sources {
        s.enabled = false;
    }
    let source = sources[0].name.clone();
    let started = web::start(web::ConsoleOptions {
        data_dir: std::path::PathBuf::from(&dir),
        listen: "127.0.0.1:0".parse().unwrap(),
        config_sources: sources,
        allow_custom_endpoints: true,
        generate_password: false,
        secure_cookies: false,
        api_key: None,
        public_url: None,
        key_file: None,
    })
    .await
    .unwrap();
    let store = started.app.store.clone();
    web::auth::set_password(&store, "bench-password-1")
        .await
        .unwrap();
    let url = started.url.trim_end_matches('/').to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move { web::serve(started, stop).await.unwrap() }
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Log in: the login form's pre-session cookie and CSRF token, then the password.
    let cookie_of = |r: &reqwest::Response, name: &str| -> String {
        r.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                let kv = c.split(';').next()?;
                kv.strip_prefix(&format!("{name}=")).map(str::to_string)
            })
            .unwrap_or_else(|| panic!("no {name} cookie"))
    };
    let r = http.get(format!("{url}/login")).send().await.unwrap();
    let pre = cookie_of(&r, "kc_pre");
    let body = r.text().await.unwrap();
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string();
    let r = http
        .post(format!("{url}/login"))
        .header("cookie", format!("kc_pre={pre}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("csrf", csrf.as_str()),
                ("password", "bench-password-1"),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let cookie = format!("kc_session={}", cookie_of(&r, "kc_session"));

    // The pages' arguments, from the store.
    let devices = store.devices_page(DeviceFilter::default()).await.unwrap();
    let device = format!("/devices/{}/{}", devices[0].source, devices[0].id);
    let events = store.events_page(EventFilter::default(), 50).await.unwrap();
    let older = events.next.clone().unwrap_or_default();
    let second = store
        .events_page(
            EventFilter {
                after: Some(older.clone()),
                ..Default::default()
            },
            50,
        )
        .await
        .unwrap();
    let newer = second.prev.clone().unwrap_or_default();
    let security = newest_of(&store, "security").await;
    let audit = newest_of(&store, "audit").await;
    let mut paths: Vec<(String, String)> = vec![
        ("sources".into(), "/sources".into()),
        ("source page".into(), format!("/sources/{source}")),
        (
            "source status region (htmx)".into(),
            format!("/live/sources/{source}"),
        ),
        ("events".into(), "/events".into()),
        ("events older page".into(), format!("/events?after={older}")),
        (
            "events newer page".into(),
            format!("/events?before={newer}"),
        ),
        (
            "events category=audit".into(),
            "/events?category=audit".into(),
        ),
        ("events q=blueprint".into(), "/events?q=blueprint".into()),
        ("devices".into(), "/devices".into()),
        ("devices q=MacBook".into(), "/devices?q=MacBook".into()),
        (
            "devices sort=apps desc".into(),
            "/devices?sort=apps&dir=desc".into(),
        ),
        ("device page".into(), device),
        ("users".into(), "/users".into()),
        ("users page 5".into(), "/users?page=5".into()),
        ("apps landing".into(), "/apps".into()),
        ("apps q=Firefox".into(), "/apps?q=Firefox".into()),
    ];
    if let Some(e) = security.events.first() {
        paths.push(("event page (security)".into(), format!("/events/{}", e.seq)));
    }
    if let Some(e) = audit.events.first() {
        paths.push(("event page (audit)".into(), format!("/events/{}", e.seq)));
    }
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    for (name, path) in &paths {
        let (h, u, c) = (&http, url.as_str(), cookie.as_str());
        sizes.push(page(h, u, c, path).await);
        time(
            name,
            20,
            |_| async move { page(h, u, c, path).await },
            &mut out,
        )
        .await;
    }
    let t = Instant::now();
    let csv = page(&http, &url, &cookie, "/devices.csv").await;
    let csv_took = t.elapsed();
    let (fleet, _) = store.fleet_size(&source).await.unwrap();
    println!(
        "console pages over HTTP, {fleet} devices\n{:<36} {:>9} {:>9} {:>9} {:>9}",
        "page", "p50 ms", "p95 ms", "max ms", "KB"
    );
    for ((n, p50, p95, max), b) in out.iter().zip(&sizes) {
        println!(
            "{n:<36} {p50:>9.2} {p95:>9.2} {max:>9.2} {:>9.1}",
            *b as f64 / 1024.0
        );
    }
    println!(
        "devices.csv: {:.1} MB in {:.2} s",
        csv as f64 / 1e6,
        csv_took.as_secs_f64()
    );
    stop.cancel();
    let _ = server.await;
}
