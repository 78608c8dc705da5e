//! Token hygiene from the audit feed: the token's age, who created it, its last permission
//! change, and the warnings that come before the 401s and 403s (its creator removed, a
//! permission it needs removed, rotation due).
//!
//! Pure: it reads the audit events the `audit_events` stream already stored (no request is
//! spent). A token is found by its name as Kandji shows it (`new_state.label`; `name` too,
//! for leniency); after a rotation the newest token created under that name is the one.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::streams::Permission;

/// The audit event types the token's history is read from (`target_type.action`).
pub const TOKEN_EVENT_TYPES: [&str; 3] =
    ["api_token.create", "api_token.update", "api_token.delete"];

/// The event types that remove an admin (the creator of a token). The live feed's
/// `target_type` for admins is not documented beyond `admin` [NOTES §8.7]; the simulator
/// says `admin_user`; both are read.
pub const ADMIN_REMOVAL_TYPES: [&str; 3] = ["admin.delete", "admin_user.delete", "user.delete"];

/// What the collector warns about a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenWarning {
    /// Older than `rotate_after`.
    RotationDue {
        age_days: u64,
        rotate_after_days: u64,
    },
    /// The admin who created it was removed: Kandji may delete their tokens with them.
    CreatorRemoved { creator: String, at: i64 },
    /// A permission the collector needs was removed from it.
    PermissionRemoved {
        permission: String,
        needed_by: Vec<String>,
        at: i64,
    },
    /// The token was deleted in Kandji.
    Deleted { at: i64 },
}

impl TokenWarning {
    /// The health state it puts the source's token in.
    pub fn state(&self) -> &'static str {
        match self {
            Self::RotationDue { .. } => "token_rotation_due",
            Self::CreatorRemoved { .. } => "token_creator_removed",
            Self::PermissionRemoved { .. } => "token_permission_removed",
            Self::Deleted { .. } => "token_deleted",
        }
    }

    /// The message people read.
    pub fn message(&self) -> String {
        match self {
            Self::RotationDue {
                age_days,
                rotate_after_days,
            } => format!(
                "rotate token: it is {age_days} days old (rotate after {rotate_after_days} days)"
            ),
            Self::CreatorRemoved { creator, .. } => format!(
                "the admin who created this token ({creator}) was removed; Kandji may delete \
                 their tokens with them: create a new token and rotate before the 401s start"
            ),
            Self::PermissionRemoved {
                permission,
                needed_by,
                ..
            } => format!(
                "permission {permission} was removed from this token; {} will fail with 403 \
                 until it is ticked again",
                needed_by.join(", ")
            ),
            Self::Deleted { .. } => {
                "this token was deleted in Kandji: rotate it before the 401s start".to_string()
            }
        }
    }
}

/// What the audit feed says about the source's token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenHistory {
    /// Its name as Kandji shows it.
    pub name: String,
    /// Its id in the audit feed, once an event named it.
    pub token_id: Option<String>,
    /// When it was created (ms), if the feed still holds the event (about a year).
    pub created_at: Option<i64>,
    /// Who created it (the admin's id).
    pub created_by: Option<String>,
    /// Its first event in the feed (ms): a lower bound of its age when the creation is
    /// older than the feed.
    pub first_seen_at: Option<i64>,
    /// Its age in days (at least this, when only `first_seen_at` is known).
    pub age_days: Option<u64>,
    /// The last change of its permissions: (when, who).
    pub last_permission_change: Option<(i64, String)>,
    /// Its permissions as last set (`"GET /api/v1/devices"`).
    pub permissions: Vec<String>,
    pub warnings: Vec<TokenWarning>,
}

struct Ev<'a> {
    at: i64,
    action: &'a str,
    target_type: &'a str,
    target_id: &'a str,
    actor_id: &'a str,
    raw: &'a Value,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn label(v: &Value) -> Option<&str> {
    let ns = v.get("new_state")?;
    ns.get("label")
        .and_then(Value::as_str)
        .or_else(|| ns.get("name").and_then(Value::as_str))
}

/// `"GET /api/v1/devices/{}/status"`: method and path with every `{param}` alike, so the
/// feed's `{id}` and the streams' `{device_id}` compare equal.
fn norm(method: &str, path: &str) -> String {
    let mut out = String::new();
    let mut skip = false;
    for c in path.trim().trim_end_matches('/').chars() {
        match c {
            '{' => {
                skip = true;
                out.push_str("{}");
            }
            '}' => skip = false,
            _ if skip => {}
            _ => out.push(c),
        }
    }
    format!("{} {out}", method.trim().to_ascii_uppercase())
}

fn permissions_of(v: &Value) -> Option<BTreeSet<String>> {
    let list = v.get("new_state")?.get("permissions")?.as_array()?;
    Some(
        list.iter()
            .map(|p| norm(s(p, "http_method"), s(p, "path")))
            .collect(),
    )
}

/// Reads the token's history from `events` ((occurred_at ms, event_type, raw JSON), oldest
/// first: [`TOKEN_EVENT_TYPES`] and [`ADMIN_REMOVAL_TYPES`]) and says what to warn about.
/// `needed` is the permission list of the source's streams. `None` when no event names it.
pub fn token_history(
    events: &[(i64, String, String)],
    name: &str,
    needed: &[Permission],
    now_ms: i64,
    rotate_after: Duration,
) -> Option<TokenHistory> {
    let parsed: Vec<(i64, Value)> = events
        .iter()
        .filter_map(|(at, _, raw)| serde_json::from_str::<Value>(raw).ok().map(|v| (*at, v)))
        .collect();
    let evs: Vec<Ev<'_>> = parsed
        .iter()
        .map(|(at, v)| Ev {
            at: *at,
            action: s(v, "action"),
            target_type: s(v, "target_type"),
            target_id: s(v, "target_id"),
            actor_id: s(v, "actor_id"),
            raw: v,
        })
        .collect();
    let name = name.trim();
    let named =
        |e: &Ev<'_>| e.target_type == "api_token" && label(e.raw).map(str::trim) == Some(name);
    // The newest token created under the name (a rotation makes a new one); else the newest
    // event that names it.
    let token_id = evs
        .iter()
        .rev()
        .find(|e| named(e) && e.action == "create")
        .or_else(|| evs.iter().rev().find(|e| named(e)))
        .map(|e| e.target_id.to_string())?;
    let mine: Vec<&Ev<'_>> = evs
        .iter()
        .filter(|e| e.target_type == "api_token" && e.target_id == token_id)
        .collect();
    let created = mine.iter().find(|e| e.action == "create");
    let created_at = created.map(|e| e.at);
    let created_by = created.map(|e| e.actor_id.to_string());
    let first_seen_at = mine.first().map(|e| e.at);
    let age_from = created_at.or(first_seen_at);
    let age_days = age_from.map(|t| (now_ms.saturating_sub(t).max(0) / 86_400_000) as u64);
    let mut warnings = Vec::new();
    let rotate_days = rotate_after.as_secs() / 86_400;
    if let Some(age) = age_days
        && age_from.is_some_and(|t| now_ms.saturating_sub(t) >= rotate_after.as_millis() as i64)
    {
        warnings.push(TokenWarning::RotationDue {
            age_days: age,
            rotate_after_days: rotate_days,
        });
    }
    // Its permissions over time; the last change that removed or added one.
    let mut current: Option<BTreeSet<String>> = None;
    let mut last_change: Option<(i64, String)> = None;
    let mut removed_last: Vec<(String, i64)> = Vec::new();
    for e in &mine {
        let Some(p) = permissions_of(e.raw) else {
            continue;
        };
        match &current {
            Some(before) if *before != p => {
                removed_last = before.difference(&p).map(|x| (x.clone(), e.at)).collect();
                last_change = Some((e.at, e.actor_id.to_string()));
            }
            None if e.action != "create" => {
                last_change = Some((e.at, e.actor_id.to_string()));
            }
            _ => {}
        }
        current = Some(p);
    }
    for (perm, at) in removed_last {
        let needed_by: Vec<String> = needed
            .iter()
            .filter(|n| norm(n.method, n.path) == perm)
            .flat_map(|n| n.needed_by.iter().map(|s| s.to_string()))
            .collect();
        if !needed_by.is_empty() {
            warnings.push(TokenWarning::PermissionRemoved {
                permission: perm.replace("{}", "{id}"),
                needed_by,
                at,
            });
        }
    }
    if let Some(creator) = &created_by
        && let Some(e) = evs.iter().find(|e| {
            e.action == "delete"
                && e.target_id == creator
                && matches!(e.target_type, "admin" | "admin_user" | "user")
                && created_at.is_some_and(|c| e.at >= c)
        })
    {
        let who = {
            let email = s(e.raw.get("new_state").unwrap_or(&Value::Null), "email");
            if email.is_empty() {
                creator.clone()
            } else {
                email.to_string()
            }
        };
        warnings.push(TokenWarning::CreatorRemoved {
            creator: who,
            at: e.at,
        });
    }
    if let Some(e) = mine.iter().find(|e| e.action == "delete") {
        warnings.push(TokenWarning::Deleted { at: e.at });
    }
    Some(TokenHistory {
        name: name.to_string(),
        token_id: Some(token_id),
        created_at,
        created_by,
        first_seen_at,
        age_days,
        last_permission_change: last_change,
        permissions: current.map(|p| p.into_iter().collect()).unwrap_or_default(),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::{StreamName, permissions};
    use serde_json::json;

    const DAY: i64 = 86_400_000;

    fn ev(
        at: i64,
        action: &str,
        target_type: &str,
        target_id: &str,
        actor: &str,
        ns: Value,
    ) -> (i64, String, String) {
        let v = json!({"action": action, "actor_id": actor, "actor_type": "user",
            "target_id": target_id, "target_type": target_type, "new_state": ns, "occurred_at": ""});
        (at, format!("{target_type}.{action}"), v.to_string())
    }

    fn perms(list: &[(&str, &str)]) -> Value {
        Value::Array(
            list.iter()
                .map(|(m, p)| json!({"http_method": m, "path": p}))
                .collect(),
        )
    }

    #[test]
    fn age_creator_and_permission_changes() {
        let needed = permissions(&[StreamName::AuditEvents, StreamName::Threats]);
        let full = perms(&[
            ("GET", "/api/v1/audit/events"),
            ("GET", "/api/v1/threat-details"),
            ("GET", "/api/v1/settings/licensing"),
        ]);
        let less = perms(&[
            ("GET", "/api/v1/audit/events"),
            ("GET", "/api/v1/settings/licensing"),
        ]);
        let events = vec![
            ev(
                0,
                "create",
                "api_token",
                "t1",
                "admin-a",
                json!({"label": "collector", "permissions": full}),
            ),
            ev(
                10 * DAY,
                "create",
                "api_token",
                "t9",
                "admin-b",
                json!({"label": "other", "permissions": []}),
            ),
        ];
        let h = token_history(
            &events,
            "collector",
            &needed,
            30 * DAY,
            Duration::from_secs(90 * 86_400),
        )
        .unwrap();
        assert_eq!(h.token_id.as_deref(), Some("t1"));
        assert_eq!(h.created_by.as_deref(), Some("admin-a"));
        assert_eq!(h.age_days, Some(30));
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
        assert_eq!(h.last_permission_change, None);

        // 91 days: rotation due.
        let h = token_history(
            &events,
            "collector",
            &needed,
            91 * DAY,
            Duration::from_secs(90 * 86_400),
        )
        .unwrap();
        assert_eq!(
            h.warnings,
            vec![TokenWarning::RotationDue {
                age_days: 91,
                rotate_after_days: 90
            }]
        );

        // A permission the threats stream needs removed, then the creator removed.
        let mut more = events.clone();
        more.push(ev(
            20 * DAY,
            "update",
            "api_token",
            "t1",
            "admin-c",
            json!({"label": "collector", "permissions": less}),
        ));
        more.push(ev(
            25 * DAY,
            "delete",
            "admin_user",
            "admin-a",
            "admin-c",
            json!({"email": "a@acme.io"}),
        ));
        let h = token_history(
            &more,
            "collector",
            &needed,
            30 * DAY,
            Duration::from_secs(90 * 86_400),
        )
        .unwrap();
        assert_eq!(
            h.last_permission_change,
            Some((20 * DAY, "admin-c".to_string()))
        );
        assert_eq!(
            h.warnings,
            vec![
                TokenWarning::PermissionRemoved {
                    permission: "GET /api/v1/threat-details".into(),
                    needed_by: vec!["threats".into()],
                    at: 20 * DAY
                },
                TokenWarning::CreatorRemoved {
                    creator: "a@acme.io".into(),
                    at: 25 * DAY
                },
            ]
        );
        // A rotation: a new token under the same name is the one from then on.
        more.push(ev(
            40 * DAY,
            "create",
            "api_token",
            "t2",
            "admin-c",
            json!({"label": "collector", "permissions": full}),
        ));
        let h = token_history(
            &more,
            "collector",
            &needed,
            41 * DAY,
            Duration::from_secs(90 * 86_400),
        )
        .unwrap();
        assert_eq!(h.token_id.as_deref(), Some("t2"));
        assert_eq!(h.age_days, Some(1));
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
        assert_eq!(
            token_history(&more, "nope", &needed, 0, Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn a_removed_permission_the_collector_does_not_need_is_no_warning() {
        let needed = permissions(&[StreamName::AuditEvents]);
        let events = vec![
            ev(
                0,
                "create",
                "api_token",
                "t1",
                "a",
                json!({"label": "c", "permissions": perms(&[("GET", "/api/v1/audit/events"), ("GET", "/api/v1/users")])}),
            ),
            ev(
                DAY,
                "update",
                "api_token",
                "t1",
                "a",
                json!({"label": "c", "permissions": perms(&[("GET", "/api/v1/audit/events")])}),
            ),
        ];
        let h = token_history(
            &events,
            "c",
            &needed,
            2 * DAY,
            Duration::from_secs(90 * 86_400),
        )
        .unwrap();
        assert!(h.warnings.is_empty());
        assert_eq!(h.last_permission_change, Some((DAY, "a".to_string())));
        assert_eq!(h.permissions, vec!["GET /api/v1/audit/events".to_string()]);
    }
}
