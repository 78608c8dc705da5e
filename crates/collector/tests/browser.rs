//! Browser tests in real headless Chromium, driven over WebDriver (chromedriver on a loopback
//! port). Needs Debian's `chromium` and `chromium-driver`; `.ci/run` installs them and runs
//! this with `KANDJI_BROWSER_TESTS=1`. Without chromedriver the test prints why and skips,
//! unless `KANDJI_BROWSER_TESTS=1` demands it. Screenshots land in `target/artifacts/`, with
//! an axe-core report for every page (`axe-*.json`; axe is vendored in `tests/vendor/`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kandji_collector::web::{self, ConsoleOptions};
use kandji_sim::{SimConfig, TokenSpec};
use serde_json::{Value, json};

const PASSWORD: &str = "browser-test-password-1";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// axe-core, from its npm package (`tests/vendor/README.md`).
const AXE: &str = include_str!("vendor/axe-4.14.1.min.js");
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path).chain([
        PathBuf::from("/usr/bin"),
        PathBuf::from("/usr/lib/chromium"),
    ]) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

struct Driver {
    child: Child,
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(chromedriver: &PathBuf, profile: &std::path::Path) -> Driver {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let mut tries = 0;
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            tries += 1;
            assert!(tries < 100, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let chromium = find_binary(&["chromium", "chromium-browser", "google-chrome"]);
        let mut opts = json!({
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        });
        if let Some(c) = chromium {
            opts["binary"] = json!(c.display().to_string());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": opts,
            // The console log, to find CSP refusals (a blocked script or style is only logged).
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        Driver {
            child,
            http,
            base,
            session,
        }
    }

    async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(e) = v["value"].get("error") {
            return Err(format!("webdriver {path}: {e} {}", v["value"]["message"]));
        }
        Ok(v["value"].clone())
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Finds `css` and runs `op` on it, retrying while the page is still loading.
    async fn on_element(
        &self,
        css: &str,
        method: reqwest::Method,
        op: &str,
        body: Option<Value>,
    ) -> Value {
        let mut last = String::new();
        for _ in 0..50 {
            let found = self
                .try_cmd(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            match found {
                Ok(v) => {
                    let e = v[ELEMENT].as_str().unwrap_or_default().to_string();
                    match self
                        .try_cmd(method.clone(), &format!("/element/{e}/{op}"), body.clone())
                        .await
                    {
                        Ok(v) => return v,
                        Err(err) => last = err,
                    }
                }
                Err(err) => last = err,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css}: {last}");
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.on_element(
            css,
            reqwest::Method::POST,
            "value",
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        self.on_element(css, reqwest::Method::POST, "click", Some(json!({})))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        self.on_element(css, reqwest::Method::GET, "text", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    async fn source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    async fn title(&self) -> String {
        self.cmd(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    async fn current_url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    async fn exec(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Waits (up to 30 s) until the page has `css`: a boosted form swaps the page in place.
    async fn wait_for(&self, css: &str) {
        let probe = format!(
            "return document.querySelector({}) !== null",
            serde_json::to_string(css).unwrap()
        );
        for _ in 0..300 {
            if self.exec(&probe).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never appeared: {}", self.source().await);
    }

    /// Types `keys` into whatever has the focus (WebDriver key actions: Tab, Enter, text).
    async fn keys(&self, keys: &str) {
        let mut acts = Vec::new();
        for c in keys.chars() {
            acts.push(json!({"type": "keyDown", "value": c.to_string()}));
            acts.push(json!({"type": "keyUp", "value": c.to_string()}));
        }
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": acts}]})),
        )
        .await;
    }

    async fn focused(&self) -> String {
        self.exec("return document.activeElement ? document.activeElement.id : ''")
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Runs axe-core on the current page; fails on a serious or critical violation. The full
    /// report lands in `target/artifacts/axe-NAME.json`.
    async fn axe(&self, name: &str) {
        self.exec(&format!("{AXE}\nreturn typeof axe;")).await;
        let r = self
            .cmd(
                reqwest::Method::POST,
                "/execute/async",
                Some(json!({
                    "script": "const done = arguments[arguments.length - 1]; \
                        axe.run(document, {resultTypes: ['violations']}) \
                          .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, \
                            help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))})))) \
                          .catch(e => done({error: String(e)}));",
                    "args": []
                })),
            )
            .await;
        std::fs::write(
            artifacts().join(format!("axe-{name}.json")),
            serde_json::to_vec_pretty(&r).unwrap(),
        )
        .unwrap();
        let list = r.as_array().unwrap_or_else(|| panic!("axe on {name}: {r}"));
        let bad: Vec<&Value> = list
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        assert!(bad.is_empty(), "axe on {name}: {bad:#?}");
    }

    /// What the page's console logged that a Content-Security-Policy refused.
    async fn csp_refusals(&self) -> Vec<String> {
        let log = self
            .cmd(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        log.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str())
            .filter(|m| m.contains("Content Security Policy"))
            .map(str::to_string)
            .collect()
    }

    /// Clicks something that navigates, and waits until the browser is on the new page.
    async fn click_nav(&self, css: &str) {
        let before = self.current_url().await;
        self.click(css).await;
        for _ in 0..100 {
            if self.current_url().await != before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("clicking {css} did not leave {before}");
    }

    async fn screenshot(&self, name: &str) {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = b64decode(v.as_str().unwrap());
        std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
    }

    /// Reloads `url` until `css`'s text satisfies `ok` (the console refreshes server-side).
    async fn wait_text(&self, url: &str, css: &str, ok: impl Fn(&str) -> bool) -> String {
        for _ in 0..300 {
            self.goto(url).await;
            let t = self.text(css).await;
            if ok(&t) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("timed out waiting on {url} {css}");
    }
}

fn all_but_threats() -> Vec<String> {
    let mut out: Vec<String> = kandji_collector::streams::StreamName::ALL
        .iter()
        .flat_map(|s| s.spec().probes.iter().map(|e| e.endpoint()))
        .filter(|e| !e.contains("threat"))
        .collect();
    out.push("GET /api/v1/settings/licensing".into());
    // Prism exports (not probed by the check: creating one has a cost).
    out.push("POST /api/v1/prism/export".into());
    out.push("GET /api/v1/prism/export/{export_id}".into());
    // The simulator's route template for every Prism category.
    out.push("GET /api/v1/prism/{category}".into());
    out.push("GET /api/v1/prism/count".into());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_flows_in_headless_chromium() {
    let required = std::env::var("KANDJI_BROWSER_TESTS").is_ok_and(|v| v == "1");
    let Some(chromedriver) = find_binary(&["chromedriver"]) else {
        if required {
            panic!(
                "KANDJI_BROWSER_TESTS=1 but chromedriver is not installed (apt-get install chromium chromium-driver)"
            );
        }
        // Straight to stderr: libtest captures eprintln! of passing tests, and this must show.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPING the browser tests: chromedriver is not installed. \
             Install Debian's chromium and chromium-driver and run with KANDJI_BROWSER_TESTS=1 \
             (.ci/run does). ***\n"
        );
        return;
    };
    kandji_api::client::install_crypto_provider();
    let token = "browser-limited-token-7d21";
    let sim = kandji_sim::spawn(SimConfig {
        devices: 60,
        extra_tokens: vec![TokenSpec {
            token: token.into(),
            allow: all_but_threats(),
        }],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = web::start(ConsoleOptions {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        config_sources: Vec::new(),
        allow_custom_endpoints: true,
        generate_password: false,
        secure_cookies: false,
        api_key: None,
        public_url: None,
        key_file: None,
    })
    .await
    .unwrap();
    web::auth::set_password(&started.app.store, PASSWORD)
        .await
        .unwrap();
    let url = started.url.trim_end_matches('/').to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move { web::serve(started, stop).await.unwrap() }
    });
    let d = Driver::start(&chromedriver, &dir.path().join("profile")).await;

    // Log in.
    d.goto(&format!("{url}/sources")).await;
    assert!(d.title().await.starts_with("Log in"));
    d.axe("login").await;
    d.type_into("#password", PASSWORD).await;
    d.click_nav("#login").await;
    assert!(
        d.title().await.starts_with("Sources"),
        "{}",
        d.title().await
    );
    d.screenshot("01-sources").await;
    d.axe("sources").await;

    // The name field's pattern compiles under the `v` flag Chromium uses for `pattern`, and it
    // refuses the path segments `.` and `..` before the server has to.
    let mismatches = d
        .exec(
            "const n = document.getElementById('name'); \
             new RegExp('^(?:' + n.pattern + ')$', 'v'); \
             const r = ['lab', 'a..b', '.', '..', 'a b'].map(x => { n.value = x; return n.validity.patternMismatch; }); \
             n.value = ''; return r;",
        )
        .await;
    assert_eq!(
        mismatches,
        serde_json::json!([false, false, true, true, true]),
        "name pattern"
    );

    // Step 1 with an endpoint nothing answers at (a closed loopback port): the check answers
    // at once, nothing passed, so "save" is disabled and says why.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    d.type_into("#name", "lab").await;
    d.type_into("#token", token).await;
    d.type_into("#endpoint", &format!("http://127.0.0.1:{closed}"))
        .await;
    d.click("#check").await;
    d.wait_for("#matrix").await;
    assert_eq!(
        d.exec("return document.getElementById('save').disabled")
            .await,
        json!(true),
        "nothing passed: save is disabled"
    );
    assert!(d.text("#nothing-passed").await.contains("nothing to save"));
    d.screenshot("02a-check-unreachable").await;
    d.axe("check-unreachable").await;

    // A bad token: refused, and the page says so.
    d.goto(&format!("{url}/sources")).await;
    d.type_into("#name", "lab").await;
    d.type_into("#token", "not-a-token-of-this-tenant").await;
    d.type_into("#endpoint", &sim.base_url()).await;
    d.click("#check").await;
    d.wait_for("#matrix").await;
    assert!(d.source().await.contains("The token was refused"));
    assert_eq!(
        d.exec("return document.getElementById('save').disabled")
            .await,
        json!(true)
    );
    d.screenshot("02b-check-bad-token").await;

    // The add flow by keyboard alone: Tab through name, token, endpoint, region and the
    // button, and Enter runs the check. The token lacks threat details: the matrix says what
    // to tick.
    d.goto(&format!("{url}/sources")).await;
    d.wait_for("#name").await;
    d.exec("document.getElementById('name').focus(); return true")
        .await;
    d.keys("lab").await;
    d.keys(TAB).await;
    assert_eq!(d.focused().await, "token");
    d.keys(token).await;
    d.keys(TAB).await;
    assert_eq!(d.focused().await, "endpoint");
    d.keys(&sim.base_url()).await;
    d.keys(TAB).await;
    assert_eq!(d.focused().await, "region");
    d.keys(TAB).await;
    assert_eq!(d.focused().await, "check");
    d.keys(ENTER).await;
    d.wait_for("#matrix").await;
    let matrix = d.text("#matrix").await;
    assert!(matrix.contains("devices ✓"), "{matrix}");
    assert!(matrix.contains("audit_events ✓"), "{matrix}");
    assert!(
        matrix.contains("threats ✗: tick") && matrix.contains("Kandji → Access → API token"),
        "{matrix}"
    );
    assert!(!d.source().await.contains(token));
    d.screenshot("02-check-matrix").await;
    d.axe("check-matrix").await;
    d.click_nav("#save").await;

    // Watch its streams turn healthy. Threats, which the token may not read, stays in the
    // table with what to tick, and the badge (the worst state) says so, not healthy.
    let table = d
        .wait_text(&format!("{url}/sources/lab"), "#streams", |t| {
            t.contains("healthy")
                && !t.contains("pending")
                && !t.contains("syncing")
                && !t.contains("failing")
        })
        .await;
    assert!(
        table.contains("missing permission: tick 'GET /api/v1/threat-details'"),
        "{table}"
    );
    let state = d.text("#state").await;
    assert_eq!(state, "missing_permission");
    assert!(d.source().await.contains("Re-check permissions"));
    d.screenshot("03-source-healthy").await;
    d.axe("source").await;

    // Settings and a half-typed token survive the status region's refresh: it is swapped in
    // place, the forms are not reloaded. They sit on their own tabs, which switch in place
    // (what is typed on one tab stays while another shows).
    d.click("#tab-settings").await;
    assert_eq!(
        d.exec("return [document.getElementById('panel-settings').hidden, document.getElementById('panel-status').hidden, location.search]").await,
        json!([false, true, "?tab=settings"]),
        "the settings tab shows in place"
    );
    d.on_element(
        "#settings input[name=budget_share]",
        reqwest::Method::POST,
        "clear",
        Some(json!({})),
    )
    .await;
    d.type_into("#settings input[name=budget_share]", "0.35")
        .await;
    d.click("#tab-token").await;
    d.type_into("input[name=token][type=password]", "half-typed-token")
        .await;
    d.exec("document.getElementById('live').dataset.old = '1'; document.body.dispatchEvent(new Event('kc:refresh')); return true")
        .await;
    let mut swapped = false;
    for _ in 0..100 {
        if d.exec("const l = document.getElementById('live'); return !!l && l.dataset.old !== '1'")
            .await
            == json!(true)
        {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swapped, "the status region was not refreshed in place");
    let kept = d
        .exec(
            "return [document.querySelector('#settings input[name=budget_share]').value, \
                document.querySelector('input[name=token][type=password]').value, \
                document.querySelectorAll('#live #streams tbody tr').length > 0, \
                document.querySelectorAll('#live svg title').length > 0]",
        )
        .await;
    assert_eq!(
        kept,
        json!(["0.35", "half-typed-token", true, true]),
        "edits kept across a refresh"
    );
    d.screenshot("03b-edits-kept-across-refresh").await;
    d.axe("source-token-tab").await;
    // Save the settings: back on the settings tab, with a message that says so.
    d.click("#tab-settings").await;
    d.axe("source-settings-tab").await;
    d.click_nav("#save-settings").await;
    assert!(
        d.text("#notice").await.contains("Settings saved"),
        "{}",
        d.source().await
    );
    assert_eq!(
        d.exec("return [document.getElementById('panel-settings').hidden, document.querySelector('#settings input[name=budget_share]').value]").await,
        json!([false, "0.35"]),
        "saved, and shown on the settings tab"
    );
    d.screenshot("03c-settings-saved").await;

    // Find an audit event by search.
    d.goto(&format!("{url}/events?category=audit")).await;
    let summary = d.text("#events tbody tr .summary").await;
    let word = summary
        .split_whitespace()
        .find(|w| w.len() > 3 && w.chars().all(char::is_alphanumeric))
        .unwrap_or("device")
        .to_string();
    d.goto(&format!("{url}/events")).await;
    d.type_into("#q", &word).await;
    d.click_nav("#search").await;
    let rows = d.text("#events tbody").await;
    assert!(
        rows.to_lowercase().contains(&word.to_lowercase()),
        "{word}: {rows}"
    );
    d.screenshot("04-events-search").await;
    d.axe("events").await;
    // Paging: Older, then Newer back to the same first row, then First.
    d.goto(&format!("{url}/events")).await;
    let top = d
        .exec("return document.querySelector('#events tbody tr a').getAttribute('href')")
        .await;
    d.click_nav("#older").await;
    let older = d
        .exec("return document.querySelector('#events tbody tr a').getAttribute('href')")
        .await;
    assert_ne!(older, top, "an older page");
    d.screenshot("04a-events-older").await;
    d.axe("events-older").await;
    d.click_nav("#newer").await;
    assert_eq!(
        d.exec("return document.querySelector('#events tbody tr a').getAttribute('href')")
            .await,
        top,
        "Newer leads back to the newest page"
    );
    assert!(
        !d.source().await.contains("id=\"newer\""),
        "the newest page has no Newer link"
    );
    d.click_nav("#older").await;
    d.click_nav("#first").await;
    assert_eq!(
        d.exec("return document.querySelector('#events tbody tr a').getAttribute('href')")
            .await,
        top,
        "First is the newest page"
    );
    d.click_nav("#events tbody tr .summary").await;
    assert!(d.source().await.contains("id=\"raw\""));
    d.axe("event").await;

    // Open a device (the simulator's names carry markup; it renders as text).
    d.goto(&format!("{url}/devices")).await;
    d.click_nav("#devices tbody tr a.device").await;
    let name = d.text("#device-name").await;
    assert!(!name.is_empty());
    d.screenshot("05-device").await;
    d.axe("device").await;
    // The console's script shows the copy button for the raw record, and puts the viewer's
    // time zone in each time's hover text.
    let enhanced = d
        .exec(
            "const b = document.querySelector('button[data-copy=device-raw]'); \
               const t = document.querySelector('time[datetime]'); \
               return [!!b && !b.hidden, !!t && t.title.includes('(')]",
        )
        .await;
    assert_eq!(
        enhanced,
        json!([true, true]),
        "app.js enhanced the device page"
    );
    d.goto(&format!("{url}/devices?q=script")).await;
    let shown = d.text("#devices tbody").await;
    assert!(
        shown.contains("<script>"),
        "the markup shows as text: {shown}"
    );
    d.screenshot("06-devices-inert-markup").await;
    d.axe("devices").await;
    d.goto(&format!("{url}/users")).await;
    d.axe("users").await;
    // Apps opens on a landing page: most installed, several versions, behind the newest.
    d.goto(&format!("{url}/apps")).await;
    let landing = d
        .exec("return ['#top-apps', '#several-versions', '#outdated'].map(s => document.querySelectorAll(s + ' tbody tr').length)")
        .await;
    let counts: Vec<u64> = serde_json::from_value(landing.clone()).unwrap();
    assert!(counts[0] > 0 && counts[1] > 0, "apps landing: {landing}");
    d.screenshot("06b-apps-landing").await;
    d.axe("apps").await;
    d.goto(&format!("{url}/apps?q=a")).await;
    d.axe("apps-search").await;

    // Revoke the token in the tenant: the source fails with an auth error.
    sim.revoke_token(token);
    let mut state = String::new();
    for _ in 0..30 {
        // "Sync now" (again, should a click race the page's refresh).
        d.goto(&format!("{url}/sources/lab")).await;
        d.click("#sync-all").await;
        for _ in 0..10 {
            d.goto(&format!("{url}/sources/lab")).await;
            state = d.text("#state").await;
            if state == "auth_error" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if state == "auth_error" {
            break;
        }
    }
    assert_eq!(state, "auth_error");
    assert!(d.source().await.contains("rotate it here"));
    d.screenshot("07-auth-error").await;

    // Rotate the token: the status links to the token tab; an empty token is refused next
    // to the field; the new token is re-checked, and the source recovers (the full token
    // also reads threats, which the first one could not).
    d.click_nav("#rotate-hint a").await;
    assert_eq!(
        d.exec("return [document.getElementById('panel-token').hidden, document.getElementById('tab-token').getAttribute('aria-selected')]").await,
        json!([false, "true"])
    );
    d.exec("document.getElementById('new-token').removeAttribute('required'); return true")
        .await;
    d.click_nav("#rotate").await;
    assert!(
        d.text("#token-error").await.contains("Paste the new token"),
        "{}",
        d.source().await
    );
    d.screenshot("07b-token-refused").await;
    d.axe("source-token-refused").await;
    d.type_into("#new-token", sim.token()).await;
    d.click_nav("#rotate").await;
    assert!(
        d.text("#notice").await.contains("Token rotated"),
        "{}",
        d.source().await
    );
    // The source leaves auth_error: every stream runs again on the new token (the web test
    // follows a rotation on to healthy; here the first full sync may still be running).
    let mut recovered = (String::new(), String::new());
    for _ in 0..120 {
        d.goto(&format!("{url}/sources/lab")).await;
        recovered = (d.text("#state").await, d.text("#streams").await);
        if matches!(recovered.0.as_str(), "healthy" | "syncing")
            && !recovered.1.contains("auth_error")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        matches!(recovered.0.as_str(), "healthy" | "syncing")
            && !recovered.1.contains("auth_error"),
        "the rotated token recovers the source: {recovered:?}"
    );
    d.screenshot("07c-token-rotated").await;

    // Delete with purge: a confirmation page first, then the source and its data are gone,
    // from the sources list and from the explorer's filters.
    d.goto(&format!("{url}/sources/lab")).await;
    d.click("#tab-manage").await;
    d.axe("source-manage-tab").await;
    d.click_nav("#delete").await;
    assert!(
        d.title().await.starts_with("Delete lab?"),
        "{}",
        d.title().await
    );
    d.screenshot("08-delete-confirm").await;
    d.axe("delete-confirm").await;
    d.click("#purge").await;
    d.click_nav("#confirm-delete").await;
    assert!(
        d.title().await.starts_with("Sources"),
        "{}",
        d.title().await
    );
    assert!(!d.source().await.contains("/sources/lab\""), "lab is gone");
    d.goto(&format!("{url}/api/devices")).await;
    assert_eq!(d.text("pre").await.trim(), "[]", "no device is left");
    d.goto(&format!("{url}/events")).await;
    assert!(
        !d.source().await.contains("<option>lab</option>"),
        "the source left the filters"
    );
    d.screenshot("09-deleted-and-purged").await;

    // Nothing the pages load or do was refused by the CSP (htmx's own inline styles are off).
    let refused = d.csp_refusals().await;
    assert!(refused.is_empty(), "CSP refusals: {refused:#?}");
    // And the log does show a refusal: an image from another origin (refused before any
    // request is made).
    d.exec("const i = document.createElement('img'); i.src = 'http://127.0.0.2:9/probe.png'; document.body.appendChild(i); return true")
        .await;
    let mut probe = Vec::new();
    for _ in 0..50 {
        probe = d.csp_refusals().await;
        if !probe.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        probe.iter().any(|m| m.contains("probe.png")),
        "the console log shows CSP refusals: {probe:?}"
    );

    let _ = d
        .http
        .delete(format!("{}/session/{}", d.base, d.session))
        .send()
        .await;
    drop(d);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    sim.shutdown().await;
}
