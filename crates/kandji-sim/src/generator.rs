//! Deterministic generation of the initial tenant from the seed.

use std::collections::HashMap;

use crate::catalog::{self, Platform};
use crate::config::SimConfig;
use crate::model::{
    AuditEvent, AuditKind, Behavioral, Blueprint, Device, TAG_COUNT, Tenant, Threat, User, VulnDet,
};
use crate::util::{chance, h, hs, pick, uuid_u128};

const DAY: i64 = 86_400_000_000;

/// Build a fresh device with generation index `idx`, enrolled at `enrolled`.
pub fn new_device(t: &Tenant, idx: u32, enrolled: i64) -> Device {
    let seed = t.seed;
    let i = u64::from(idx);
    let r = hs("platform", &[seed, i]) % 100;
    // A separate draw, so that the Apple devices keep their platforms whatever the shares.
    let other = (hs("family", &[seed, i]) % 1_000_000) as f64 / 1_000_000.0;
    let platform = if other < t.android_share {
        Platform::Android
    } else if other < t.android_share + t.windows_share {
        Platform::Windows
    } else {
        match r {
            0..55 => Platform::Mac,
            55..80 => Platform::IPhone,
            80..95 => Platform::IPad,
            _ => Platform::AppleTv,
        }
    };
    let model = pick(hs("model", &[seed, i]), platform.models().len()) as u8;
    let n_os = platform.os_versions().len();
    // Skew to newer OS versions.
    let os =
        (n_os - 1 - pick(hs("os", &[seed, i]), n_os).min(pick(hs("os2", &[seed, i]), n_os))) as u8;
    let nb = t.blueprints.len().max(1);
    let blueprint = pick(hs("bp", &[seed, i]), nb) as u16;
    let user = if platform == Platform::AppleTv
        || t.users.is_empty()
        || hs("assigned", &[seed, i]) % 10 < 2
    {
        None
    } else {
        Some(pick(hs("user", &[seed, i]), t.users.len()) as u32)
    };
    let mut tags = 0u32;
    for tg in 0..TAG_COUNT {
        if chance(hs("tag", &[seed, i, tg as u64]), 0.12) {
            tags |= 1 << tg;
        }
    }
    let missing = chance(hs("missing", &[seed, i]), 0.03);
    let richness = match platform {
        Platform::Mac => 5 + (hs("rich", &[seed, i]) % 40) as u8,
        _ => 10 + (hs("rich", &[seed, i]) % 70) as u8,
    }
    .saturating_add(t.app_richness)
    .min(100);
    let mut d = Device {
        idx,
        platform,
        model,
        os,
        blueprint,
        user,
        tags,
        first_enrollment: enrolled,
        last_enrollment: enrolled,
        changed_at: enrolled,
        missing,
        last_seen: 0,
        filevault: platform == Platform::Mac && hs("fv", &[seed, i]) % 10 < 8,
        richness,
        app_count: 0,
        // The agent runs on Macs and Windows PCs.
        agent: matches!(platform, Platform::Mac | Platform::Windows),
    };
    if chance(hs("reenroll", &[seed, i]), 0.1) {
        d.last_enrollment =
            (enrolled + (hs("re2", &[seed, i]) % (30 * DAY as u64)) as i64).min(t.now_us);
        d.changed_at = d.last_enrollment;
    }
    d.last_seen =
        (d.last_enrollment + (hs("seen", &[seed, i]) % (20 * DAY as u64)) as i64).min(t.now_us);
    d.app_count = crate::derive::base_app_count(seed, &d);
    d
}

fn push_audit(t: &mut Tenant, ts: i64, kind: AuditKind, target: u32, salt: u64) {
    let rnd = h(&[t.seed, ts as u64, target as u64, salt]);
    let ms = (ts.max(0) / 1000) as u64;
    let ulid = (u128::from(ms) << 80) | (u128::from(rnd) << 16) | u128::from(salt as u16);
    t.audit.push(AuditEvent {
        ulid,
        ts,
        kind,
        target,
    });
}

/// An admin-side audit event, weighted as a tenant's activity log would be (assumed rates):
/// mostly blueprint, library-item and user updates, then creations and deletions, secrets
/// read, API tokens and admins managed, and now and then an MDM removal or an owner change.
pub fn admin_kind(t: &Tenant, hv: u64) -> (AuditKind, u32) {
    let nb = t.blueprints.len().max(1);
    let nl = catalog::LIBRARY_ITEMS.len();
    let pick_dev = || {
        t.devices
            .get(pick(hv >> 8, t.devices.len().max(1)))
            .map_or(0, |d| d.idx)
    };
    let r = (hv % 100) as u8;
    match r {
        0..18 => (AuditKind::BlueprintUpdated, pick(hv >> 8, nb) as u32),
        18..36 => (AuditKind::LibraryItemUpdated, pick(hv >> 8, nl) as u32),
        36..42 => (AuditKind::ApiTokenUpdated, 0),
        42..56 => (
            AuditKind::UserUpdated,
            pick(hv >> 8, t.users.len().max(1)) as u32,
        ),
        56..60 => (AuditKind::BlueprintCreated, pick(hv >> 8, nb) as u32),
        60..62 => (AuditKind::BlueprintDeleted, (hv >> 8) as u32 % 1000),
        62..68 => (AuditKind::BlueprintParamsUpdated, pick(hv >> 8, nb) as u32),
        68..73 => (AuditKind::LibraryItemCreated, pick(hv >> 8, nl) as u32),
        73..76 => (AuditKind::LibraryItemDeleted, pick(hv >> 8, nl) as u32),
        76..82 if !t.devices.is_empty() => (
            AuditKind::SecretViewed {
                secret: ((hv >> 20) % 3) as u8,
            },
            pick_dev(),
        ),
        82..84 if !t.devices.is_empty() => (AuditKind::MdmRemoved, pick_dev()),
        84..86 => (AuditKind::AdminCreated, (hv >> 8) as u32 % 20),
        86..87 => (AuditKind::AdminDeleted, (hv >> 8) as u32 % 20),
        87..88 => (AuditKind::TenantOwnerUpdated, (hv >> 8) as u32 % 20),
        88..91 => (AuditKind::ApiTokenCreated, (hv >> 8) as u32 % 50),
        91..93 => (AuditKind::ApiTokenDeleted, (hv >> 8) as u32 % 50),
        93..96 if !t.users.is_empty() => (
            AuditKind::DirectoryUserDeleted,
            pick(hv >> 8, t.users.len()) as u32,
        ),
        96..100 if t.licensed_edr && !t.threats.is_empty() => {
            let k = pick(hv >> 8, t.threats.len());
            let th = &t.threats[k];
            let kind = if r < 98 {
                AuditKind::EdrRemediated { threat: k as u32 }
            } else {
                AuditKind::EdrAdminAction { threat: k as u32 }
            };
            (kind, th.device)
        }
        _ => (AuditKind::BlueprintUpdated, pick(hv >> 8, nb) as u32),
    }
}

/// Append an audit event at the end (live events are never older than history).
pub fn audit(t: &mut Tenant, ts: i64, kind: AuditKind, target: u32) {
    let salt = t.audit.len() as u64;
    push_audit(t, ts, kind, target, salt);
}

/// An audit event a device reports late: it occurred at `ts`, before events already in the
/// feed, and takes its place in time order (a walk that passed that place never sees it).
pub fn audit_late(t: &mut Tenant, ts: i64, kind: AuditKind, target: u32) {
    let salt = t.audit.len() as u64;
    push_audit(t, ts, kind, target, salt);
    if let Some(e) = t.audit.pop() {
        let at = t.audit.partition_point(|x| (x.ts, x.ulid) < (e.ts, e.ulid));
        t.audit.insert(at, e);
    }
}

pub fn generate(cfg: &SimConfig, start_us: i64) -> Tenant {
    let seed = cfg.seed;
    let n = cfg.devices;
    let mut t = Tenant {
        seed,
        name: cfg.tenant.clone(),
        start_us,
        devices: Vec::with_capacity(n + n / 10),
        by_id: HashMap::with_capacity(n + n / 10),
        removed: Vec::new(),
        next_idx: n as u32,
        users: Vec::new(),
        user_devices: Vec::new(),
        blueprints: Vec::new(),
        audit: Vec::new(),
        threats: Vec::new(),
        behavioral: Vec::new(),
        vulns: Vec::new(),
        app_overlay: HashMap::new(),
        status_overlay: HashMap::new(),
        history: std::collections::VecDeque::new(),
        step: start_us.div_euclid(60_000_000),
        rev: 0,
        now_us: start_us,
        churn_scale: (n as f64 / 1000.0).max(0.05),
        app_richness: cfg.app_richness,
        licensed_edr: cfg.licensed_edr,
        licensed_vuln: cfg.licensed_vuln,
        n_cves: (catalog::CVES.len() + n / 10).min(catalog::MAX_CVES),
        android_share: cfg.android_share.clamp(0.0, 1.0),
        windows_share: cfg.windows_share.clamp(0.0, 1.0),
        scripted_audit: Vec::new(),
        n_tags: if cfg.large_tenant { 2_500 } else { TAG_COUNT },
    };

    // Blueprints.
    let nb = if cfg.large_tenant {
        350
    } else {
        (4 + n / 2000).min(catalog::BLUEPRINT_NAMES.len())
    };
    for b in 0..nb {
        let hv = hs("bpitems", &[seed, b as u64]);
        let items: Vec<u16> = (0..catalog::LIBRARY_ITEMS.len())
            .filter(|&i| i < 2 || chance(h(&[hv, i as u64]), 0.6))
            // Without EDR there is no EDR policy to assign.
            .filter(|&i| {
                cfg.licensed_edr || catalog::LIBRARY_ITEMS[i].1 != "threat-security-policy"
            })
            .map(|i| i as u16)
            .collect();
        let params: Vec<u16> = (0..catalog::PARAMETERS.len())
            .filter(|&i| chance(h(&[hv, i as u64, 1]), 0.7))
            .map(|i| i as u16)
            .collect();
        let created_at = start_us - 700 * DAY + (hv % (100 * DAY as u64)) as i64;
        t.blueprints.push(Blueprint {
            idx: b as u16,
            name: match catalog::BLUEPRINT_NAMES.get(b) {
                Some(n) => (*n).to_owned(),
                None => format!(
                    "{} {}",
                    catalog::BLUEPRINT_NAMES[b % catalog::BLUEPRINT_NAMES.len()],
                    b
                ),
            },
            items,
            params,
            created_at,
        });
    }

    // Users.
    let nu = (n * 8 / 10).max(5);
    for u in 0..nu {
        let hv = hs("user", &[seed, u as u64]);
        t.users.push(User {
            idx: u as u32,
            first: pick(hv, catalog::FIRST_NAMES.len()) as u16,
            last: pick(hv >> 20, catalog::LAST_NAMES.len()) as u16,
            archived: chance(mix2(hv), 0.03),
            created_at: start_us - 800 * DAY + ((hv >> 7) % (790 * DAY as u64)) as i64,
        });
    }
    t.user_devices = vec![0; nu];

    // Devices, enrolled over the last two years.
    for i in 0..n {
        let enrolled =
            start_us - 730 * DAY + (hs("enrolled", &[seed, i as u64]) % (729 * DAY as u64)) as i64;
        let d = new_device(&t, i as u32, enrolled);
        if let Some(u) = d.user {
            t.user_devices[u as usize] += 1;
        }
        t.by_id.insert(t.device_uuid(d.idx), d.idx);
        t.devices.push(d);
    }

    // Audit history: enrollments, admin activity, EDR and vulnerability detections.
    for p in 0..t.devices.len() {
        let (idx, fe, blueprint) = (
            t.devices[p].idx,
            t.devices[p].first_enrollment,
            t.devices[p].blueprint,
        );
        if fe > start_us - 365 * DAY {
            push_audit(&mut t, fe, AuditKind::DeviceEnrolled { blueprint }, idx, 1);
        }
    }
    let admin = 40 + n / 100;
    for a in 0..admin {
        let hv = hs("admin", &[seed, a as u64]);
        let ts = start_us - 365 * DAY + (hv % (365 * DAY as u64)) as i64;
        let (kind, target) = admin_kind(&t, hv);
        push_audit(&mut t, ts, kind, target, 2 + a as u64);
    }
    for p in 0..t.devices.len() {
        let d = t.devices[p].clone();
        if d.platform != Platform::Mac {
            continue;
        }
        let i = u64::from(d.idx);
        let hv = hs("threats", &[seed, i]);
        if cfg.licensed_edr && chance(hv, 0.05) {
            for k in 0..(1 + hv % 3) {
                let hk = h(&[hv, k]);
                let ts = start_us - (hk % (90 * DAY as u64)) as i64;
                let th = Threat {
                    device: d.idx,
                    blueprint: d.blueprint,
                    ts,
                    kind: pick(hk >> 3, catalog::THREATS.len()) as u8,
                    status: (hk >> 20) as u8 % 3,
                    file_no: (hk >> 30) as u16 % 20,
                };
                t.threats.push(th);
                let ti = (t.threats.len() - 1) as u32;
                push_audit(
                    &mut t,
                    ts,
                    AuditKind::EdrDetection { threat: ti },
                    d.idx,
                    3 + k,
                );
            }
        }
        let hb = hs("behavioral", &[seed, i]);
        if cfg.licensed_edr && chance(hb, 0.04) {
            let ts = start_us - (hb % (60 * DAY as u64)) as i64;
            t.behavioral.push(Behavioral {
                id: uuid_u128("bd", &[seed, i]),
                device: d.idx,
                blueprint: d.blueprint,
                ts,
                rule: pick(hb >> 5, catalog::BD_RULES.len()) as u8,
                status: (hb >> 17) as u8 % 3,
            });
        }
        let hvv = hs("vulns", &[seed, i]);
        let nv = if cfg.licensed_vuln { hvv % 4 } else { 0 };
        for k in 0..nv {
            let hk = h(&[hvv, k, 9]);
            let ts = start_us - (hk % (120 * DAY as u64)) as i64;
            let cve = pick(hk >> 9, t.n_cves) as u8;
            if t.vulns
                .iter()
                .rev()
                .take(4)
                .any(|v| v.device == d.idx && v.cve == cve)
            {
                continue;
            }
            t.vulns.push(VulnDet {
                device: d.idx,
                blueprint: d.blueprint,
                cve,
                ts,
                remediated_at: None,
            });
            let vi = (t.vulns.len() - 1) as u32;
            push_audit(
                &mut t,
                ts,
                AuditKind::VulnDetection { vuln: vi },
                d.idx,
                10 + k,
            );
        }
    }
    t.audit.sort_by_key(|e| (e.ts, e.ulid));
    t.threats.sort_by_key(|x| (x.ts, x.device));
    fix_threat_refs(&mut t);
    t.vulns.sort_by_key(|v| (v.ts, v.device, v.cve));
    fix_vuln_refs(&mut t);
    t.behavioral.sort_by_key(|b| (b.ts, b.id));
    t
}

fn mix2(v: u64) -> u64 {
    crate::util::mix(v ^ 0xdead_beef)
}

/// After sorting threats, point the EDR audit events at the right rows again.
fn fix_threat_refs(t: &mut Tenant) {
    let mut by_key: HashMap<(u32, i64), u32> = HashMap::new();
    for (i, th) in t.threats.iter().enumerate() {
        by_key.insert((th.device, th.ts), i as u32);
    }
    for e in &mut t.audit {
        if let AuditKind::EdrDetection { threat } = &mut e.kind
            && let Some(i) = by_key.get(&(e.target, e.ts))
        {
            *threat = *i;
        }
    }
}

fn fix_vuln_refs(t: &mut Tenant) {
    let mut by_key: HashMap<(u32, i64), u32> = HashMap::new();
    for (i, v) in t.vulns.iter().enumerate() {
        by_key.insert((v.device, v.ts), i as u32);
    }
    for e in &mut t.audit {
        if let AuditKind::VulnDetection { vuln } = &mut e.kind
            && let Some(i) = by_key.get(&(e.target, e.ts))
        {
            *vuln = *i;
        }
    }
}
