//! The planner: estimates a source's requests per hour from the fleet size and the schedules,
//! and refuses or warns when a configuration would overspend its budget share.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::streams::StreamName;

use crate::store::Table;
use crate::streams::drivers::prism_snapshot::FULL_EXPORT_EVERY;
pub use crate::streams::{Assumptions, FleetSize};
use crate::streams::{Cost, Driver, Output};

/// The fleet size from the licence counts: Macs plus iOS, iPadOS and tvOS devices (users are
/// assumed one per device for the plan).
pub fn fleet_size(l: &kandji_api::models::Licensing) -> FleetSize {
    let c = l.counts.clone().unwrap_or_default();
    let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
    let macs = n(c.macos_count).max(n(c.computers_count));
    let devices = macs + n(c.ios_count) + n(c.ipados_count) + n(c.tvos_count);
    FleetSize {
        devices,
        users: devices,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Estimated requests per hour per stream.
    pub per_stream: BTreeMap<StreamName, f64>,
    pub total_per_hour: f64,
    /// Our share of the tenant's hourly budget, in requests.
    pub share_per_hour: f64,
    /// Requests for one full sweep (the device list, details, posture and apps), as at first
    /// sync.
    pub full_sweep_requests: f64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Ok,
    /// Above 80 % of the share: works, but leaves little room for retries and bursts.
    Warn(String),
    /// Above the share: the collector would be throttled or starve other tools.
    Refuse(String),
}

fn runs_per_hour(interval: Duration) -> f64 {
    3600.0 / interval.as_secs_f64().max(1.0)
}

/// Requests one run of the stream costs (its declaration's cost function).
fn per_run(stream: StreamName, fleet: FleetSize, interval: Duration, a: &Assumptions) -> f64 {
    (stream.spec().cost)(&Cost {
        fleet,
        interval,
        assumptions: a,
    })
}

/// Estimates the source's spend and judges it against its share.
pub fn plan(
    fleet: FleetSize,
    streams: &[StreamName],
    intervals: &BTreeMap<StreamName, Duration>,
    hourly_limit: u32,
    budget_share: f64,
    a: &Assumptions,
) -> Plan {
    let mut per_stream = BTreeMap::new();
    for &s in streams {
        let interval = intervals
            .get(&s)
            .copied()
            .unwrap_or_else(|| s.default_interval());
        per_stream.insert(s, per_run(s, fleet, interval, a) * runs_per_hour(interval));
    }
    let total: f64 = per_stream.values().sum();
    let share = f64::from(hourly_limit) * budget_share;
    // The bulk of a first sync: the device list, and each Prism snapshot's full export.
    let full_sweep: f64 = StreamName::ALL
        .iter()
        .filter(|s| {
            let spec = s.spec();
            spec.driver == Driver::PrismSnapshot || spec.output == Output::Table(Table::Devices)
        })
        .map(|&s| per_run(s, fleet, FULL_EXPORT_EVERY, a))
        .sum();
    let biggest = per_stream
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(s, r)| format!("{s} {r:.0}/h"))
        .unwrap_or_default();
    let verdict = if total > share {
        Verdict::Refuse(format!(
            "the schedules need about {total:.0} requests/hour but the share is {share:.0} \
             ({:.0} % of {hourly_limit}); the largest is {biggest}: lengthen its interval or disable it",
            budget_share * 100.0
        ))
    } else if total > 0.8 * share {
        Verdict::Warn(format!(
            "the schedules need about {total:.0} requests/hour, {:.0} % of the {share:.0} share; \
             retries and first syncs may be throttled (largest: {biggest})",
            100.0 * total / share
        ))
    } else {
        Verdict::Ok
    };
    Plan {
        per_stream,
        total_per_hour: total,
        share_per_hour: share,
        full_sweep_requests: full_sweep,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> BTreeMap<StreamName, Duration> {
        StreamName::ALL
            .iter()
            .map(|s| (*s, s.default_interval()))
            .collect()
    }

    #[test]
    fn defaults_for_10k_devices_fit_ten_percent_of_the_tenant_budget() {
        let fleet = FleetSize {
            devices: 10_000,
            users: 8_000,
        };
        let p = plan(
            fleet,
            &StreamName::ALL,
            &defaults(),
            10_000,
            0.5,
            &Assumptions::default(),
        );
        assert!(p.total_per_hour <= 1_000.0, "{p:?}");
        assert_eq!(p.verdict, Verdict::Ok);
        assert!(p.full_sweep_requests <= 100.0, "{}", p.full_sweep_requests);
    }

    #[test]
    fn an_aggressive_schedule_is_refused_with_numbers() {
        let fleet = FleetSize {
            devices: 50_000,
            users: 40_000,
        };
        let mut iv = defaults();
        iv.insert(StreamName::Devices, Duration::from_secs(30));
        let p = plan(
            fleet,
            &StreamName::ALL,
            &iv,
            10_000,
            0.5,
            &Assumptions::default(),
        );
        match p.verdict {
            Verdict::Refuse(msg) => {
                assert!(msg.contains("devices"), "{msg}");
                assert!(msg.contains("5000"), "{msg}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn near_the_share_warns() {
        let fleet = FleetSize {
            devices: 10_000,
            users: 10_000,
        };
        let mut iv = defaults();
        iv.insert(StreamName::Devices, Duration::from_secs(600)); // 34 pages × 6/h = 204
        let p = plan(
            fleet,
            &[StreamName::Devices],
            &iv,
            10_000,
            0.025,
            &Assumptions::default(),
        );
        assert!(matches!(p.verdict, Verdict::Warn(_)), "{p:?}");
    }
}
