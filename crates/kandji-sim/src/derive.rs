//! Per-device rows derived from `(seed, device, ...)` plus the live overlay.

use crate::catalog::{self, Platform};
use crate::model::{AppChangeKind, Device, Tenant};
use crate::util::{chance, h, hs, pick};

/// Global app catalog layout: system Mac apps, popular Mac apps, tail apps, iOS apps, tvOS apps.
pub const SYS: usize = 0;
pub fn n_sys() -> usize {
    catalog::MAC_SYSTEM_APPS.len()
}
pub fn n_pop() -> usize {
    catalog::MAC_APPS.len()
}
pub fn n_tail() -> usize {
    catalog::TAIL_VENDORS.len() * catalog::TAIL_PRODUCTS.len()
}
pub fn pop_base() -> usize {
    SYS + n_sys()
}
pub fn tail_base() -> usize {
    pop_base() + n_pop()
}
pub fn ios_base() -> usize {
    tail_base() + n_tail()
}
pub fn tv_base() -> usize {
    ios_base() + catalog::IOS_APPS.len()
}
pub fn n_apps() -> usize {
    tv_base() + catalog::TV_APPS.len()
}

/// Static description of an app of the global catalog.
#[derive(Debug, Clone)]
pub struct AppMeta {
    pub name: String,
    pub bundle_id: String,
    pub vendor: String,
    pub team_id: String,
    pub source: &'static str,
    pub category: &'static str,
    pub path: String,
    pub mac: bool,
}

/// The catalog entry of an app, built once.
pub fn app_meta_ref(app: usize) -> &'static AppMeta {
    static TABLE: std::sync::OnceLock<Vec<AppMeta>> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| (0..n_apps()).map(app_meta).collect());
    &t[app.min(t.len() - 1)]
}

pub fn app_meta(app: usize) -> AppMeta {
    if app < pop_base() {
        let a = &catalog::MAC_SYSTEM_APPS[app - SYS];
        let dir = if a.source == "Apple" {
            "/System/Applications"
        } else {
            "/Applications"
        };
        return AppMeta {
            name: a.name.to_owned(),
            bundle_id: a.bundle_id.to_owned(),
            vendor: a.vendor.to_owned(),
            team_id: a.team_id.to_owned(),
            source: a.source,
            category: a.category,
            path: format!("{dir}/{}.app", a.name),
            mac: true,
        };
    }
    if app < tail_base() {
        let a = &catalog::MAC_APPS[app - pop_base()];
        return AppMeta {
            name: a.name.to_owned(),
            bundle_id: a.bundle_id.to_owned(),
            vendor: a.vendor.to_owned(),
            team_id: a.team_id.to_owned(),
            source: a.source,
            category: a.category,
            path: format!("/Applications/{}.app", a.name),
            mac: true,
        };
    }
    if app < ios_base() {
        let i = app - tail_base();
        let v = catalog::TAIL_VENDORS[i / catalog::TAIL_PRODUCTS.len()];
        let p = catalog::TAIL_PRODUCTS[i % catalog::TAIL_PRODUCTS.len()];
        let name = if i % 53 == 7 {
            format!("{v} {p} {}", catalog::XSS[i % catalog::XSS.len()])
        } else {
            format!("{v} {p}")
        };
        return AppMeta {
            bundle_id: format!(
                "com.{}.{}",
                v.to_lowercase().replace(' ', ""),
                p.to_lowercase()
            ),
            vendor: format!("{v} Software, Inc."),
            team_id: format!("{:010X}", hs("team", &[i as u64]) % 0xFF_FFFF_FFFF),
            source: if i.is_multiple_of(5) {
                "Mac App Store"
            } else {
                "Identified Developer"
            },
            category: "public.app-category.utilities",
            path: format!("/Applications/{v} {p}.app"),
            name,
            mac: true,
        };
    }
    if app < tv_base() {
        let n = catalog::IOS_APPS[app - ios_base()];
        return AppMeta {
            name: n.to_owned(),
            bundle_id: format!(
                "com.{}.ios",
                n.chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .collect::<String>()
                    .to_lowercase()
            ),
            vendor: format!("{} Inc.", n.split(' ').next().unwrap_or(n)),
            team_id: format!("{:010X}", hs("team", &[app as u64]) % 0xFF_FFFF_FFFF),
            source: "App Store",
            category: "public.app-category.business",
            path: String::new(),
            mac: false,
        };
    }
    let n = catalog::TV_APPS[(app - tv_base()).min(catalog::TV_APPS.len() - 1)];
    AppMeta {
        name: n.to_owned(),
        bundle_id: format!(
            "com.{}.tvos",
            n.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        ),
        vendor: format!("{} Inc.", n.split(' ').next().unwrap_or(n)),
        team_id: String::new(),
        source: "App Store",
        category: "public.app-category.entertainment",
        path: String::new(),
        mac: false,
    }
}

/// Version string of an app at a version step.
pub fn app_version(app: usize, step: u32) -> String {
    let hv = hs("appver", &[app as u64]);
    let major = 1 + hv % 30;
    let minor = (hv >> 8) % 10 + u64::from(step) / 3;
    let patch = u64::from(step) % 3 + (hv >> 16) % 4;
    format!("{major}.{minor}.{patch}")
}

/// An app version's build number, as Prism's `short_version` carries it: the spec's example
/// has `version: "7.9.11"` beside `short_version: "70911000"` (openapi.yaml, `/prism/apps`).
pub fn app_build(version: &str) -> String {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    format!("{a}{b:02}{c:02}000")
}

/// An installed app on a device.
#[derive(Debug, Clone, Copy)]
pub struct AppInst {
    pub app: u16,
    pub ver: u32,
    pub installed_at: i64,
    pub changed_at: i64,
}

fn base_has(seed: u64, d: &Device, app: usize) -> bool {
    let hv = h(&[seed, u64::from(d.idx), app as u64, 0xA99]);
    let r = f64::from(d.richness) / 100.0;
    match d.platform {
        Platform::Mac => {
            if app < pop_base() {
                true
            } else if app < tail_base() {
                chance(hv, 0.35 + r)
            } else if app < ios_base() {
                chance(hv, 0.3 + r * 1.2)
            } else {
                false
            }
        }
        Platform::IPhone | Platform::IPad => {
            if app >= ios_base() && app < tv_base() {
                app - ios_base() < 6 || chance(hv, r)
            } else {
                false
            }
        }
        Platform::AppleTv => app >= tv_base() && chance(hv, 0.5),
        // Their apps are not in the Apple catalog (see `render::android_apps`).
        Platform::Android | Platform::Windows => false,
    }
}

fn app_range(p: Platform) -> std::ops::Range<usize> {
    match p {
        Platform::Mac => 0..ios_base(),
        Platform::IPhone | Platform::IPad => ios_base()..tv_base(),
        Platform::AppleTv => tv_base()..n_apps(),
        Platform::Android | Platform::Windows => 0..0,
    }
}

/// Number of base apps (used at generation time, before any overlay).
pub fn base_app_count(seed: u64, d: &Device) -> u16 {
    app_range(d.platform)
        .filter(|&a| base_has(seed, d, a))
        .count() as u16
}

/// The apps installed on a device now.
pub fn device_apps(t: &Tenant, d: &Device) -> Vec<AppInst> {
    let seed = t.seed;
    let mut out: Vec<AppInst> = app_range(d.platform)
        .filter(|&a| base_has(seed, d, a))
        .map(|a| {
            let hv = h(&[seed, u64::from(d.idx), a as u64, 0x1E5]);
            let span = (t.start_us - d.first_enrollment).max(1);
            let installed = d.first_enrollment + (hv % span as u64) as i64;
            AppInst {
                app: a as u16,
                ver: (hv >> 40) as u32 % 3,
                installed_at: installed,
                changed_at: installed,
            }
        })
        .collect();
    if let Some(changes) = t.app_overlay.get(&d.idx) {
        for c in changes {
            let pos = out.iter().position(|x| x.app == c.app);
            match (c.kind, pos) {
                (AppChangeKind::Install, None) => out.push(AppInst {
                    app: c.app,
                    ver: 3,
                    installed_at: c.ts,
                    changed_at: c.ts,
                }),
                (AppChangeKind::Remove, Some(p)) => {
                    out.remove(p);
                }
                (AppChangeKind::Update, Some(p)) => {
                    out[p].ver += 1;
                    out[p].changed_at = c.ts;
                }
                _ => {}
            }
        }
        out.sort_by_key(|a| a.app);
    }
    out
}

/// Library items that apply to a device (its blueprint's items filtered by platform).
pub fn device_items(t: &Tenant, d: &Device) -> Vec<u16> {
    let bit = match d.platform {
        Platform::Mac => 1,
        Platform::IPhone => 2,
        Platform::IPad => 4,
        Platform::AppleTv => 8,
        // Apple library items only.
        Platform::Android | Platform::Windows => 0,
    };
    t.blueprints
        .get(usize::from(d.blueprint))
        .map(|b| {
            b.items
                .iter()
                .copied()
                .filter(|&i| catalog::LIBRARY_ITEMS[usize::from(i)].3 & bit != 0)
                .collect()
        })
        .unwrap_or_default()
}

pub fn device_params(t: &Tenant, d: &Device) -> Vec<u16> {
    if d.platform != Platform::Mac {
        return Vec::new();
    }
    t.blueprints
        .get(usize::from(d.blueprint))
        .map(|b| b.params.clone())
        .unwrap_or_default()
}

fn overlay_status(t: &Tenant, d: &Device, is_param: bool, i: u16) -> Option<u8> {
    t.status_overlay
        .get(&d.idx)?
        .iter()
        .rev()
        .find(|(p, x, _)| *p == is_param && *x == i)
        .map(|(_, _, s)| *s)
}

/// Status string of a library item on a device.
pub fn item_status(t: &Tenant, d: &Device, item: u16) -> &'static str {
    let profile = catalog::LIBRARY_ITEMS[usize::from(item)].2;
    let list = if profile {
        catalog::PROFILE_STATUSES
    } else {
        catalog::ITEM_STATUSES
    };
    let s = overlay_status(t, d, false, item)
        .map(usize::from)
        .unwrap_or_else(|| {
            pick(
                h(&[t.seed, u64::from(d.idx), u64::from(item), 0x57A]),
                list.len(),
            )
        });
    list[s % list.len()]
}

pub fn param_status(t: &Tenant, d: &Device, p: u16) -> &'static str {
    let list = catalog::PARAM_STATUSES;
    let s = overlay_status(t, d, true, p)
        .map(usize::from)
        .unwrap_or_else(|| {
            pick(
                h(&[t.seed, u64::from(d.idx), u64::from(p), 0x9A9]),
                list.len(),
            )
        });
    list[s % list.len()]
}

/// When the status of an item/param was last reported.
pub fn status_reported_at(t: &Tenant, d: &Device, is_param: bool, i: u16) -> i64 {
    let hv = h(&[t.seed, u64::from(d.idx), u64::from(i), u64::from(is_param)]);
    let base = d.last_enrollment + (hv % 86_400_000_000) as i64;
    if overlay_status(t, d, is_param, i).is_some() {
        d.changed_at.max(base)
    } else {
        base.min(t.now_us)
    }
}
