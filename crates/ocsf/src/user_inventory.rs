//! User Inventory Info (5003, Discovery): directory users.

use serde_json::{Value, json};

use crate::common::{Base, Raw, finish};
use crate::{Context, InventoryRecord};

pub(crate) fn user_object(r: &Raw<'_>, fallback_uid: &str) -> Value {
    let mut u = json!({"uid": r.s("id").unwrap_or_else(|| fallback_uid.to_string())});
    if let Some(e) = r.s("email") {
        u["email_addr"] = json!(e.clone());
        u["name"] = json!(e);
    }
    if let Some(n) = r.s("name") {
        u["full_name"] = json!(n);
    }
    // Directory users are not Kandji admins: User (1); the job title stays in `unmapped`.
    u["type_id"] = json!(1);
    u["type"] = json!("User");
    if let Some(d) = r.s("department") {
        u["org"] = json!({"ou_name": d});
    }
    if let Some(i) = r.get("integration").filter(|i| i.is_object()) {
        let mut g = json!({"type": i.get("type").cloned().unwrap_or(Value::Null)});
        if let Some(n) = i.get("name") {
            g["name"] = n.clone();
        }
        if let Some(id) = i.get("uuid") {
            g["uid"] = id.clone();
        }
        u["groups"] = json!([g]);
    }
    u
}

pub(crate) fn from_row(ctx: &Context<'_>, row: &InventoryRecord<'_>, uid: &str) -> Value {
    let r = Raw::new(row.raw);
    let user = user_object(&r, row.key);
    let base = Base {
        class_uid: 5003,
        class_name: "User Inventory Info",
        category_uid: 5,
        category_name: "Discovery",
        activity_id: 2,
        activity_name: "Collect",
        severity_id: 1,
        time: r.t("updated_at").unwrap_or(row.observed_at),
        log_name: "users",
        uid,
        message: None,
    };
    let mut m = base.build(ctx);
    m.insert("user".into(), user);
    let mut unmapped = r.unmapped();
    if let Some(at) = row.removed_at {
        let u = unmapped.get_or_insert_with(|| json!({}));
        u["removed_at"] = json!(at);
    }
    finish(m, unmapped)
}
