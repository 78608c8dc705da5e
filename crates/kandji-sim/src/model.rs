//! The compact tenant state. Per-device rows are derived on demand (see `derive`).

use std::collections::HashMap;

use crate::catalog::{self, Platform};
use crate::util::{h, hs, pick, uuid_of, uuid_u128};

/// One enrolled (or removed) device. Everything else is derived from `(seed, idx)`.
#[derive(Debug, Clone)]
pub struct Device {
    pub idx: u32,
    pub platform: Platform,
    pub model: u8,
    pub os: u8,
    pub blueprint: u16,
    pub user: Option<u32>,
    pub tags: u32,
    pub first_enrollment: i64,
    pub last_enrollment: i64,
    /// Last change of any derived data (Prism `last_changed_at` / `updated_at`).
    pub changed_at: i64,
    /// A missing device stopped checking in at `changed_at`-independent `last_seen`.
    pub missing: bool,
    pub last_seen: i64,
    pub filevault: bool,
    /// Tail-app richness in percent (Mac/iOS app count driver).
    pub richness: u8,
    pub app_count: u16,
    pub agent: bool,
}

#[derive(Debug, Clone)]
pub struct User {
    pub idx: u32,
    pub first: u16,
    pub last: u16,
    pub archived: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Blueprint {
    pub idx: u16,
    pub name: String,
    pub items: Vec<u16>,
    pub params: Vec<u16>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    DeviceEnrolled {
        blueprint: u16,
    },
    DeviceDeleted,
    DeviceBlueprintChanged {
        from: u16,
        to: u16,
    },
    BlueprintUpdated,
    LibraryItemUpdated,
    ApiTokenUpdated,
    UserUpdated,
    EdrDetection {
        threat: u32,
    },
    VulnDetection {
        vuln: u32,
    },
    // The rest of what the spec says the feed carries (target: as noted).
    /// target: blueprint idx.
    BlueprintCreated,
    /// target: a number naming a blueprint that no longer exists.
    BlueprintDeleted,
    /// target: blueprint idx.
    BlueprintParamsUpdated,
    /// target: library item idx.
    LibraryItemCreated,
    /// target: library item idx.
    LibraryItemDeleted,
    /// An admin read a device secret (0 FileVault recovery key, 1 recovery lock password,
    /// 2 activation lock bypass code); target: device idx.
    SecretViewed {
        secret: u8,
    },
    /// target: device idx.
    MdmRemoved,
    /// target: admin number.
    AdminCreated,
    /// target: admin number.
    AdminDeleted,
    /// target: admin number (the new owner).
    TenantOwnerUpdated,
    /// target: token number.
    ApiTokenCreated,
    /// target: token number.
    ApiTokenDeleted,
    /// target: user idx.
    DirectoryUserDeleted,
    /// A detection fixed; target: device idx.
    VulnRemediated {
        vuln: u32,
    },
    /// A threat remediated by the agent; target: device idx.
    EdrRemediated {
        threat: u32,
    },
    /// An admin released a quarantined file; target: device idx.
    EdrAdminAction {
        threat: u32,
    },
    /// An event a test wrote (an API token's life, an admin removed); target: its index in
    /// `Tenant::scripted_audit`.
    Scripted,
}

/// An audit event written by a test (`SimHandle::script_audit`), rendered as the feed's
/// other events are (id and time from the feed).
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedAudit {
    pub action: String,
    pub actor_id: String,
    pub actor_type: String,
    pub target_id: String,
    pub target_type: String,
    pub target_component: String,
    pub new_state: serde_json::Value,
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub ulid: u128,
    pub ts: i64,
    pub kind: AuditKind,
    /// Device idx, blueprint idx, library item idx, or user idx depending on `kind`.
    pub target: u32,
}

#[derive(Debug, Clone)]
pub struct Threat {
    pub device: u32,
    pub blueprint: u16,
    pub ts: i64,
    pub kind: u8,
    pub status: u8,
    pub file_no: u16,
}

#[derive(Debug, Clone)]
pub struct Behavioral {
    pub id: u128,
    pub device: u32,
    pub blueprint: u16,
    pub ts: i64,
    pub rule: u8,
    pub status: u8,
}

#[derive(Debug, Clone)]
pub struct VulnDet {
    pub device: u32,
    pub blueprint: u16,
    pub cve: u8,
    pub ts: i64,
    /// When it was remediated (the app updated or removed): it leaves the detections feed
    /// and the truth.
    pub remediated_at: Option<i64>,
}

impl VulnDet {
    pub fn open(&self) -> bool {
        self.remediated_at.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppChangeKind {
    Install,
    Remove,
    Update,
}

#[derive(Debug, Clone, Copy)]
pub struct AppChange {
    pub app: u16,
    pub kind: AppChangeKind,
    pub ts: i64,
}

/// What a churn step changed on a device, kept so that tests can tell an event the tenant's
/// history explains from a false one.
#[derive(Debug, Clone, Copy)]
pub enum Changed {
    /// An app was installed, updated or removed.
    App(u16, AppChangeKind),
    /// A library item's (`false`) or parameter's (`true`) status was set.
    Status(bool, u16),
    FileVault,
    Os,
    Blueprint,
}

/// One entry of the churn history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryEntry {
    pub ts: i64,
    pub device: u32,
    pub what: Changed,
}

/// The churn history keeps at most this many entries (the oldest go first), so a simulator
/// that runs for weeks stays bounded.
pub const HISTORY_CAP: usize = 500_000;

/// The whole simulated tenant.
#[derive(Debug)]
pub struct Tenant {
    pub seed: u64,
    pub name: String,
    pub start_us: i64,
    pub devices: Vec<Device>,
    pub by_id: HashMap<u128, u32>,
    pub removed: Vec<(Device, i64)>,
    pub next_idx: u32,
    pub users: Vec<User>,
    pub user_devices: Vec<u32>,
    pub blueprints: Vec<Blueprint>,
    pub audit: Vec<AuditEvent>,
    pub threats: Vec<Threat>,
    pub behavioral: Vec<Behavioral>,
    pub vulns: Vec<VulnDet>,
    pub app_overlay: HashMap<u32, Vec<AppChange>>,
    /// device idx -> (is_param, index, status index) overrides.
    pub status_overlay: HashMap<u32, Vec<(bool, u16, u8)>>,
    /// Per-device changes in the order they happened (see `HISTORY_CAP`).
    pub history: std::collections::VecDeque<HistoryEntry>,
    /// Last applied simulated minute (absolute minutes since the epoch).
    pub step: i64,
    /// Bumped whenever the device list changes.
    pub rev: u64,
    pub now_us: i64,
    pub churn_scale: f64,
    /// Added to every new device's richness (see `SimConfig::app_richness`).
    pub app_richness: u8,
    /// EDR is licensed: threats, behavioral detections, their audit events and the EDR
    /// library item exist only then.
    pub licensed_edr: bool,
    /// Vulnerability Management is licensed: detections and their audit events exist only
    /// then.
    pub licensed_vuln: bool,
    /// How many CVEs this tenant's detections draw from: 15 + 1 per 10 devices, at most
    /// `catalog::MAX_CVES` (a fleet of 400 has more than one page of 50 vulnerabilities).
    pub n_cves: usize,
    /// See `SimConfig::android_share` and `windows_share`.
    pub android_share: f64,
    pub windows_share: f64,
    /// Tags in `/tags`: the 12 devices carry, and with `large_tenant` thousands more that no
    /// device carries (yet), as a tenant that has used tags for years has.
    pub n_tags: usize,
    /// Audit events written by tests (`AuditKind::Scripted`).
    pub scripted_audit: Vec<ScriptedAudit>,
}

pub const TAG_COUNT: usize = 12;

impl Tenant {
    /// Records a churn change in the history.
    pub fn log(&mut self, ts: i64, device: u32, what: Changed) {
        if self.history.len() >= HISTORY_CAP {
            self.history.pop_front();
        }
        self.history.push_back(HistoryEntry { ts, device, what });
    }

    pub fn device_pos(&self, idx: u32) -> Option<usize> {
        self.devices.binary_search_by_key(&idx, |d| d.idx).ok()
    }

    pub fn device_by_uuid(&self, id: u128) -> Option<&Device> {
        let idx = *self.by_id.get(&id)?;
        self.device_pos(idx).map(|p| &self.devices[p])
    }

    /// An active or removed device by idx.
    pub fn any_device(&self, idx: u32) -> Option<&Device> {
        if let Some(p) = self.device_pos(idx) {
            return Some(&self.devices[p]);
        }
        self.removed
            .iter()
            .find(|(d, _)| d.idx == idx)
            .map(|(d, _)| d)
    }

    pub fn device_uuid(&self, idx: u32) -> u128 {
        crate::util::canon_uuid(uuid_u128("device", &[self.seed, u64::from(idx)]))
    }
    pub fn device_id(&self, idx: u32) -> String {
        uuid_of(self.device_uuid(idx))
    }

    pub fn serial(&self, idx: u32, p: Platform) -> String {
        const CH: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
        let mut v = hs("serial", &[self.seed, u64::from(idx)]);
        let len = if p == Platform::Mac { 10 } else { 12 };
        let mut s = String::with_capacity(len);
        for i in 0..len {
            s.push(CH[(v % CH.len() as u64) as usize] as char);
            v /= CH.len() as u64;
            if i == 9 {
                v = hs("serial2", &[self.seed, u64::from(idx)]);
            }
        }
        s
    }

    pub fn device_name(&self, d: &Device) -> String {
        let hv = hs("dname", &[self.seed, u64::from(d.idx)]);
        let model = &d.platform.models()[usize::from(d.model)];
        if crate::util::chance(hs("dxss", &[self.seed, u64::from(d.idx)]), 0.03) {
            return format!(
                "{} {}",
                catalog::XSS[pick(hv, catalog::XSS.len())],
                model.short
            );
        }
        match d.user {
            Some(u) if !hv.is_multiple_of(4) => {
                let user = &self.users[u as usize];
                format!(
                    "{}'s {}",
                    catalog::FIRST_NAMES[usize::from(user.first)],
                    model.short
                )
            }
            _ => format!("{}-{:05}", model.short.replace(' ', ""), d.idx),
        }
    }

    pub fn asset_tag(&self, idx: u32) -> String {
        let hv = hs("asset", &[self.seed, u64::from(idx)]);
        if hv.is_multiple_of(3) {
            String::new()
        } else {
            format!("ACME-{:06}", hv % 1_000_000)
        }
    }

    pub fn mac_address(&self, idx: u32) -> String {
        let v = hs("mac", &[self.seed, u64::from(idx)]).to_be_bytes();
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            v[0] & 0xfe,
            v[1],
            v[2],
            v[3],
            v[4],
            v[5]
        )
    }

    pub fn blueprint_uuid(&self, b: u16) -> u128 {
        crate::util::canon_uuid(uuid_u128("blueprint", &[self.seed, u64::from(b)]))
    }
    pub fn blueprint_id(&self, b: u16) -> String {
        uuid_of(self.blueprint_uuid(b))
    }
    pub fn blueprint_name(&self, b: u16) -> &str {
        self.blueprints
            .get(usize::from(b))
            .map(|b| b.name.as_str())
            .unwrap_or("")
    }

    /// Tag `i`'s name: the catalog's for the first [`TAG_COUNT`], `team-0013`… after them.
    pub fn tag_name(&self, i: usize) -> std::borrow::Cow<'static, str> {
        match catalog::TAG_NAMES.get(i) {
            Some(n) if i < TAG_COUNT => std::borrow::Cow::Borrowed(n),
            _ => std::borrow::Cow::Owned(format!("team-{:04}", i + 1)),
        }
    }
    pub fn tag_uuid(&self, t: usize) -> u128 {
        crate::util::canon_uuid(uuid_u128("tag", &[self.seed, t as u64]))
    }
    pub fn tag_names(&self, d: &Device) -> Vec<&'static str> {
        (0..TAG_COUNT)
            .filter(|t| d.tags & (1 << t) != 0)
            .map(|t| catalog::TAG_NAMES[t])
            .collect()
    }

    pub fn user_uuid(&self, u: u32) -> u128 {
        crate::util::canon_uuid(uuid_u128("user", &[self.seed, u64::from(u)]))
    }
    pub fn user_name(&self, u: u32) -> String {
        let user = &self.users[u as usize];
        format!(
            "{} {}",
            catalog::FIRST_NAMES[usize::from(user.first)],
            catalog::LAST_NAMES[usize::from(user.last)]
        )
    }
    pub fn user_email(&self, u: u32) -> String {
        let user = &self.users[u as usize];
        let f: String = catalog::FIRST_NAMES[usize::from(user.first)]
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .collect();
        let l: String = catalog::LAST_NAMES[usize::from(user.last)]
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .collect();
        format!(
            "{}.{}{}@{}.io",
            f.to_lowercase(),
            l.to_lowercase(),
            u,
            self.name
        )
    }
    /// Legacy integer id (Prism `device__user_id`, `/users` `deprecated_user_id`).
    pub fn user_legacy_id(&self, u: u32) -> u64 {
        30_000 + u64::from(u)
    }

    pub fn library_item_uuid(&self, i: u16) -> u128 {
        crate::util::canon_uuid(uuid_u128("libitem", &[self.seed, u64::from(i)]))
    }
    pub fn parameter_uuid(&self, i: u16) -> u128 {
        crate::util::canon_uuid(uuid_u128("param", &[i as u64]))
    }
    pub fn ade_token_uuid(&self, i: u64) -> u128 {
        crate::util::canon_uuid(uuid_u128("adetoken", &[self.seed, i]))
    }

    /// Last check-in: devices check in every 15 minutes at a per-device phase.
    pub fn last_check_in(&self, d: &Device) -> i64 {
        if d.missing {
            return d.last_seen;
        }
        let period = 900_000_000i64;
        let phase = (h(&[self.seed, u64::from(d.idx), 77]) % 900_000_000) as i64;
        let now = self.now_us;
        let periodic = now - ((now - phase).rem_euclid(period));
        periodic.max(d.changed_at).max(d.last_enrollment).min(now)
    }
}
