//! At-least-once across `kill -9`: the real binary (`run --no-console`) collects from a
//! simulated tenant and delivers to a local webhook receiver; it is killed with SIGKILL
//! several times while delivering, then restarted. In the end every record's current version
//! has arrived, and every repeat is a repeat of an id (which the receiver can drop).

mod common;
mod receivers;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use kandji_collector::store::Store;
use kandji_sim::Churn;
use receivers::*;

fn spawn(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kandji-collector"))
        .args([
            "--config",
            &config.display().to_string(),
            "run",
            "--no-console",
        ])
        .env("HOOK_TOKEN", "Bearer hook-token")
        .env("HOOK_HMAC", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

fn received(rx: &Receiver) -> (usize, BTreeSet<String>) {
    let st = rx.state.lock().unwrap();
    (st.ids.len(), st.ids.iter().cloned().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_while_delivering_loses_nothing() {
    let mut cfg = sim_config(60, 33);
    cfg.churn = Churn::none();
    let sim = kandji_sim::spawn(cfg).await.expect("sim");
    let (rx, base) = receiver().await;
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, sim.token()).expect("token");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[[sources]]\nname = \"acme\"\nendpoint = {:?}\ntoken_file = {token_file:?}\n\
             allow_custom_endpoint = true\nper_second = 50\n\
             [[sources.sinks]]\ntype = \"webhook\"\nname = \"hook\"\nformat = \"raw\"\nurl = \"{base}/hook\"\n\
             auth_env = \"HOOK_TOKEN\"\nhmac_secret_env = \"HOOK_HMAC\"\nbatch_size = 40\n",
            dir.path().join("data"),
            sim.base_url()
        ),
    )
    .expect("config");
    // Slow the receiver down so deliveries are in flight when the kills land.
    rx.delay_ms.store(15, std::sync::atomic::Ordering::SeqCst);
    let mut kills = 0;
    let mut last = 0;
    for _ in 0..3 {
        let mut child = spawn(&config);
        // Kill once this run has delivered something new.
        for _ in 0..3000 {
            if received(&rx).0 > last + 40 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill().expect("SIGKILL"); // no destructor, no flush, no graceful shutdown
        child.wait().expect("wait");
        kills += 1;
        last = received(&rx).0;
    }
    assert_eq!(kills, 3);
    // Restart and let it catch up.
    rx.delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    let mut child = spawn(&config);
    let data = dir.path().join("data");
    let mut done = false;
    for _ in 0..6000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Ok(store) = Store::open_read_only(&data) else {
            continue;
        };
        let ready = count(
            &store,
            "SELECT COUNT(*) FROM stream_status WHERE source = 'acme' AND last_success_at IS NOT NULL",
        ) >= 10;
        let want = expected_ids(&store);
        if ready && received(&rx).1.is_superset(&want) {
            done = true;
            break;
        }
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    let store = Store::open(&data).expect("store");
    let want = expected_ids(&store);
    let (n, got) = received(&rx);
    assert!(
        done && got.is_superset(&want),
        "missing {} of {} records",
        want.difference(&got).count(),
        want.len()
    );
    assert_eq!(rx.state.lock().unwrap().bad_signatures, 0);
    // Repeats are repeats of ids, nothing else.
    assert!(n >= got.len());
}
