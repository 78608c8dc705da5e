//! Internal events log and count in one place: emitting one moves its metric.

use kandji_collector::internal_events::{
    CheckpointReset, CursorRestarted, StreamRunFailed, StreamRunFinished, emit,
};

#[test]
fn each_event_counts_what_it_logs() {
    let handle = kandji_collector::web::metrics_handle().expect("the recorder installs");
    emit(StreamRunFinished {
        source: "ev-src",
        stream: "tags",
        pages: 1,
        records: 3,
        requests: 2,
        missing: Some("filevault not collected".into()),
    });
    let err = std::io::Error::other("boom");
    emit(StreamRunFailed {
        source: "ev-src",
        stream: "devices",
        kind: "server",
        error: &err,
    });
    emit(CursorRestarted {
        source: "ev-src",
        stream: "audit_events",
        restart: 1,
        max: 3,
        error: &err,
    });
    emit(CheckpointReset {
        source: "ev-src",
        stream: "threats",
        key: "",
        reason: &err,
    });
    kandji_api::events::emit(kandji_api::events::BudgetWaited {
        priority: kandji_api::Priority::Bulk,
        wait: std::time::Duration::from_millis(1500),
    });
    let text = handle.render();
    let has = |metric: &str, labels: &[&str]| {
        text.lines().any(|l| {
            l.starts_with(metric) && labels.iter().all(|x| l.contains(x)) && !l.ends_with(" 0")
        })
    };
    assert!(
        has(
            "kandji_stream_runs_total",
            &["source=\"ev-src\"", "stream=\"tags\""]
        ),
        "{text}"
    );
    assert!(has("kandji_stream_requests_total", &["stream=\"tags\""]));
    assert!(has(
        "kandji_stream_degraded_runs_total",
        &["stream=\"tags\""]
    ));
    assert!(has(
        "kandji_errors_total",
        &["stream=\"devices\"", "type=\"server\""]
    ));
    assert!(has(
        "kandji_cursor_restarts_total",
        &["stream=\"audit_events\""]
    ));
    assert!(has(
        "kandji_checkpoint_resets_total",
        &["stream=\"threats\""]
    ));
    assert!(has("kandji_budget_wait_ms_total", &["priority=\"bulk\""]));
}
