//! The `kandji-sim` binary: first stdout line is the base URL; flags reach the tenant.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn binary_prints_base_url_first_and_honours_flags() {
    let dir = std::env::temp_dir().join(format!("kandji-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.json");
    std::fs::write(
        &tokens,
        r#"[{"token": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "allow": ["GET /api/v1/tags"]}]"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kandji-sim"))
        .args([
            "--devices",
            "30",
            "--port",
            "0",
            "--clock-speed",
            "0",
            "--no-edr",
            "--hourly-limit",
            "100",
        ])
        .arg("--tokens")
        .arg(&tokens)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run kandji-sim");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let mut second = String::new();
    out.read_line(&mut second).unwrap();
    let base = first.trim().to_owned();
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "first line: {first:?}"
    );
    let token = second
        .trim()
        .strip_prefix("token: ")
        .expect("default token printed")
        .to_owned();
    assert_eq!(token, kandji_sim::DEFAULT_TOKEN);

    let c = common::client();
    let get = |path: &str, tok: &str| {
        c.get(format!("{base}{path}"))
            .bearer_auth(tok.to_owned())
            .send()
    };
    let r = get("/api/v1/devices", &token).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-hour"], "100");
    assert_eq!(r.headers()["x-total-count"], "30");
    assert_eq!(
        get("/api/v1/threat-details", &token)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        get("/api/v1/tags", "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/api/v1/devices", "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")
            .await
            .unwrap()
            .status(),
        403
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn many_tenants_print_one_line_each_and_answer_on_their_own_ports() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kandji-sim"))
        .args(["--tenants", "3", "--devices", "4", "--clock-speed", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run kandji-sim");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let c = common::client();
    let mut seen = Vec::new();
    for i in 0..3 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "NAME BASE_URL TOKEN: {line:?}");
        assert_eq!(parts[0], format!("acme{i}"));
        let r = c
            .get(format!("{}/api/v1/devices", parts[1]))
            .bearer_auth(parts[2])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{line}");
        seen.push((parts[1].to_string(), parts[2].to_string()));
    }
    // One tenant's token is not another's.
    let r = c
        .get(format!("{}/api/v1/devices", seen[0].0))
        .bearer_auth(&seen[1].1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // --tenants needs free ports.
    let bad = Command::new(env!("CARGO_BIN_EXE_kandji-sim"))
        .args(["--tenants", "2", "--port", "9999"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--port 0"));
    child.kill().unwrap();
    child.wait().unwrap();
}
