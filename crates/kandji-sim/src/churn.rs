//! The live tenant: lazy, deterministic catch-up one simulated minute at a time.

use crate::catalog::{self, Platform};
use crate::config::Churn;
use crate::derive;
use crate::generator::{audit, audit_late, new_device};
use crate::model::{
    AppChange, AppChangeKind, AuditKind, Behavioral, Changed, Tenant, Threat, VulnDet,
};
use crate::util::{chance, h, pick, uuid_u128};

const MINUTE: i64 = 60_000_000;

/// Bring the tenant up to `now_us`, applying every whole simulated minute that has elapsed.
pub fn catch_up(t: &mut Tenant, churn: &Churn, now_us: i64) {
    let active = churn != &Churn::none();
    while (t.step + 1) * MINUTE <= now_us {
        let s = t.step;
        if active {
            // Each step sees "now" at its own end, so the result does not depend on how far
            // (or in how many requests) the tenant is caught up.
            t.now_us = t.now_us.max((s + 1) * MINUTE);
            apply_step(t, churn, s);
        }
        t.step = s + 1;
    }
    if now_us > t.now_us {
        t.now_us = now_us;
    }
}

fn count(rate_per_hour: f64, scale: f64, hv: u64) -> u64 {
    let lambda = rate_per_hour * scale / 60.0;
    let whole = lambda.floor();
    whole as u64 + u64::from(chance(hv, lambda - whole))
}

fn apply_step(t: &mut Tenant, c: &Churn, s: i64) {
    let seed = t.seed;
    let su = s as u64;
    let base = s * MINUTE;
    let scale = t.churn_scale;
    let mut k = 0u64;
    let mut rnd = |tag: u64| {
        k += 1;
        h(&[seed, su, tag, k])
    };
    let ts_of = |hv: u64| base + (hv % MINUTE as u64) as i64;

    for _ in 0..count(c.enroll, scale, rnd(1)) {
        let hv = rnd(2);
        let idx = t.next_idx;
        t.next_idx += 1;
        let ts = ts_of(hv);
        let mut d = new_device(t, idx, ts);
        d.missing = false;
        d.last_seen = ts;
        d.last_enrollment = ts;
        d.changed_at = ts;
        if let Some(u) = d.user {
            t.user_devices[u as usize] += 1;
        }
        let blueprint = d.blueprint;
        t.by_id.insert(t.device_uuid(idx), idx);
        t.devices.push(d);
        t.rev += 1;
        audit(t, ts, AuditKind::DeviceEnrolled { blueprint }, idx);
    }
    for _ in 0..count(c.unenroll, scale, rnd(3)) {
        if t.devices.len() <= 1 {
            break;
        }
        let hv = rnd(4);
        let p = pick(hv, t.devices.len());
        unenroll(t, p, ts_of(hv >> 7));
    }
    if t.devices.is_empty() {
        return;
    }
    for _ in 0..count(c.app_changes, scale, rnd(5)) {
        let hv = rnd(6);
        let p = pick(hv, t.devices.len());
        let ts = ts_of(hv >> 5);
        let d = t.devices[p].clone();
        let apps = derive::device_apps(t, &d);
        let change = match (hv >> 13) % 3 {
            0 => {
                let range = match d.platform {
                    Platform::Mac => 0..derive::ios_base(),
                    Platform::IPhone | Platform::IPad => derive::ios_base()..derive::tv_base(),
                    Platform::AppleTv => derive::tv_base()..derive::n_apps(),
                    // Their apps are static (see `render::android_apps`).
                    Platform::Android | Platform::Windows => continue,
                };
                let app = (range.start + pick(hv >> 17, range.len())) as u16;
                if apps.iter().any(|a| a.app == app) {
                    AppChange {
                        app,
                        kind: AppChangeKind::Update,
                        ts,
                    }
                } else {
                    AppChange {
                        app,
                        kind: AppChangeKind::Install,
                        ts,
                    }
                }
            }
            1 if !apps.is_empty() => {
                let a = apps[pick(hv >> 17, apps.len())];
                AppChange {
                    app: a.app,
                    kind: AppChangeKind::Remove,
                    ts,
                }
            }
            _ if !apps.is_empty() => {
                let a = apps[pick(hv >> 17, apps.len())];
                AppChange {
                    app: a.app,
                    kind: AppChangeKind::Update,
                    ts,
                }
            }
            _ => continue,
        };
        let delta: i32 = match change.kind {
            AppChangeKind::Install => 1,
            AppChangeKind::Remove => -1,
            AppChangeKind::Update => 0,
        };
        t.app_overlay.entry(d.idx).or_default().push(change);
        t.log(ts, d.idx, Changed::App(change.app, change.kind));
        let dm = &mut t.devices[p];
        dm.app_count = (i32::from(dm.app_count) + delta).max(0) as u16;
        dm.changed_at = dm.changed_at.max(ts);
        dm.missing = false;
    }
    for _ in 0..count(c.compliance_flips, scale, rnd(7)) {
        let hv = rnd(8);
        let p = pick(hv, t.devices.len());
        let ts = ts_of(hv >> 5);
        let d = t.devices[p].clone();
        let items = derive::device_items(t, &d);
        let params = derive::device_params(t, &d);
        let total = items.len() + params.len();
        if total == 0 {
            continue;
        }
        let j = pick(hv >> 11, total);
        let (is_param, i) = if j < items.len() {
            (false, items[j])
        } else {
            (true, params[j - items.len()])
        };
        let st = (hv >> 23) as u8 % 16;
        t.status_overlay
            .entry(d.idx)
            .or_default()
            .push((is_param, i, st));
        t.log(ts, d.idx, Changed::Status(is_param, i));
        let dm = &mut t.devices[p];
        dm.changed_at = dm.changed_at.max(ts);
        dm.missing = false;
    }
    for _ in 0..count(c.filevault_toggles, scale, rnd(9)) {
        let hv = rnd(10);
        let p = pick(hv, t.devices.len());
        let d = &mut t.devices[p];
        if d.platform == Platform::Mac {
            let ts = ts_of(hv >> 5);
            d.filevault = !d.filevault;
            d.changed_at = d.changed_at.max(ts);
            d.missing = false;
            let idx = d.idx;
            t.log(ts, idx, Changed::FileVault);
        }
    }
    for _ in 0..count(c.os_updates, scale, rnd(11)) {
        let hv = rnd(12);
        let p = pick(hv, t.devices.len());
        let d = &mut t.devices[p];
        if usize::from(d.os) + 1 < d.platform.os_versions().len() {
            let ts = ts_of(hv >> 5);
            d.os += 1;
            d.changed_at = d.changed_at.max(ts);
            d.missing = false;
            let idx = d.idx;
            t.log(ts, idx, Changed::Os);
        }
    }
    for _ in 0..count(c.blueprint_changes, scale, rnd(13)) {
        let hv = rnd(14);
        let p = pick(hv, t.devices.len());
        let nb = t.blueprints.len();
        let ts = ts_of(hv >> 5);
        let d = &mut t.devices[p];
        let from = d.blueprint;
        d.blueprint = pick(hv >> 19, nb) as u16;
        if d.blueprint != from {
            d.changed_at = d.changed_at.max(ts);
            d.missing = false;
            let (idx, to) = (d.idx, d.blueprint);
            t.rev += 1;
            t.log(ts, idx, Changed::Blueprint);
            audit(t, ts, AuditKind::DeviceBlueprintChanged { from, to }, idx);
        }
    }
    for _ in 0..count(c.threats, scale, rnd(15)) {
        let hv = rnd(16);
        let p = pick(hv, t.devices.len());
        let d = &t.devices[p];
        if d.platform != Platform::Mac || !t.licensed_edr {
            continue;
        }
        let ts = ts_of(hv >> 5);
        let th = Threat {
            device: d.idx,
            blueprint: d.blueprint,
            ts,
            kind: pick(hv >> 9, catalog::THREATS.len()) as u8,
            status: (hv >> 21) as u8 % 3,
            file_no: (hv >> 29) as u16 % 20,
        };
        let idx = d.idx;
        t.threats.push(th);
        let ti = (t.threats.len() - 1) as u32;
        device_audit(
            t,
            c,
            ts,
            rnd(25),
            AuditKind::EdrDetection { threat: ti },
            idx,
        );
    }
    for _ in 0..count(c.behavioral, scale, rnd(17)) {
        let hv = rnd(18);
        let p = pick(hv, t.devices.len());
        let d = &t.devices[p];
        if d.platform != Platform::Mac || !t.licensed_edr {
            continue;
        }
        let b = Behavioral {
            id: uuid_u128("bdlive", &[seed, su, hv]),
            device: d.idx,
            blueprint: d.blueprint,
            ts: ts_of(hv >> 5),
            rule: pick(hv >> 9, catalog::BD_RULES.len()) as u8,
            status: (hv >> 21) as u8 % 3,
        };
        t.behavioral.push(b);
    }
    for _ in 0..count(c.vulnerabilities, scale, rnd(19)) {
        let hv = rnd(20);
        let p = pick(hv, t.devices.len());
        let d = &t.devices[p];
        if d.platform != Platform::Mac || !t.licensed_vuln {
            continue;
        }
        let ts = ts_of(hv >> 5);
        let v = VulnDet {
            device: d.idx,
            blueprint: d.blueprint,
            cve: pick(hv >> 9, t.n_cves) as u8,
            ts,
            remediated_at: None,
        };
        let idx = d.idx;
        t.vulns.push(v);
        let vi = (t.vulns.len() - 1) as u32;
        device_audit(
            t,
            c,
            ts,
            rnd(26),
            AuditKind::VulnDetection { vuln: vi },
            idx,
        );
    }
    // Remediations: an open detection is fixed (its app updated or removed) and leaves the
    // feed. Its index stays, so cursors into the list keep their places.
    for _ in 0..count(c.vuln_remediations, scale, rnd(23)) {
        let hv = rnd(24);
        if t.vulns.is_empty() {
            break;
        }
        let i = pick(hv, t.vulns.len());
        if t.vulns[i].open() {
            let ts = ts_of(hv >> 5);
            t.vulns[i].remediated_at = Some(ts);
            let device = t.vulns[i].device;
            if t.device_pos(device).is_some() {
                audit(t, ts, AuditKind::VulnRemediated { vuln: i as u32 }, device);
            }
        }
    }
    for _ in 0..count(c.admin_events, 1.0, rnd(21)) {
        let hv = rnd(22);
        let ts = ts_of(hv >> 5);
        let (kind, target) = crate::generator::admin_kind(t, hv);
        audit(t, ts, kind, target);
    }
    // Events within a step are generated out of order; keep the tail sorted.
    let from = t.audit.partition_point(|e| e.ts < base);
    t.audit[from..].sort_by_key(|e| (e.ts, e.ulid));
    let from = t.behavioral.partition_point(|b| b.ts < base);
    t.behavioral[from..].sort_by_key(|b| (b.ts, b.id));
}

/// An audit event a device reports: on time, or (`Churn::late_audit`) late, dated up to
/// `late_audit_max_hours` earlier.
fn device_audit(t: &mut Tenant, c: &Churn, ts: i64, hv: u64, kind: AuditKind, idx: u32) {
    if c.late_audit > 0.0 && chance(hv, c.late_audit) {
        let max_us = (c.late_audit_max_hours.max(0.0) * 3_600_000_000.0) as u64;
        let delay = 1 + (hv >> 11) % max_us.max(1);
        audit_late(t, ts - delay as i64, kind, idx);
    } else {
        audit(t, ts, kind, idx);
    }
}

/// Unenrols the device at list position `p` at `ts`: it leaves every listing (the later ones
/// shift one place left), and the audit feed logs `device.delete`.
pub fn unenroll(t: &mut Tenant, p: usize, ts: i64) {
    let d = t.devices.remove(p);
    t.by_id.remove(&t.device_uuid(d.idx));
    if let Some(u) = d.user {
        t.user_devices[u as usize] = t.user_devices[u as usize].saturating_sub(1);
    }
    t.app_overlay.remove(&d.idx);
    t.status_overlay.remove(&d.idx);
    let idx = d.idx;
    t.removed.push((d, ts));
    t.rev += 1;
    audit(t, ts, AuditKind::DeviceDeleted, idx);
}
