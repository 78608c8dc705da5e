//! Inventory tables: their typed columns, their removal rule, and the change events a
//! difference between two snapshots of a row produces.

use rusqlite::types::Value;

/// One typed column of an inventory table.
#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub name: &'static str,
    pub sql_type: &'static str,
}

const fn col(name: &'static str, sql_type: &'static str) -> Col {
    Col { name, sql_type }
}

/// The identity of an inventory table. The discriminant indexes [`TABLES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Devices = 0,
    DeviceDetails = 1,
    Apps = 2,
    Compliance = 3,
    Users = 4,
    Blueprints = 5,
    Tags = 6,
    AdeDevices = 7,
    VulnDetections = 8,
}

impl Table {
    pub fn spec(self) -> &'static TableSpec {
        &TABLES[self as usize]
    }
    pub fn name(self) -> &'static str {
        self.spec().name
    }
    pub fn from_name(name: &str) -> Option<Table> {
        ALL.iter().copied().find(|t| t.name() == name)
    }
}

pub const ALL: [Table; 9] = [
    Table::Devices,
    Table::DeviceDetails,
    Table::Apps,
    Table::Compliance,
    Table::Users,
    Table::Blueprints,
    Table::Tags,
    Table::AdeDevices,
    Table::VulnDetections,
];

#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    pub columns: &'static [Col],
    /// A row is marked removed after this many consecutive full sweeps missed it.
    pub remove_after_missed: i64,
    /// What a new, changed, removed or returning row means, as a change event.
    pub noun: &'static str,
    /// Rows belong to one device each (keyed by `device_id`): a device's first snapshot is a
    /// baseline, and a removed device takes its rows with it.
    pub per_device: bool,
    /// How full snapshots of the table arrive: [`Snapshots::Restart`] tables (Prism exports)
    /// are compared set-wise when the snapshot ends, because an interrupted export starts
    /// over; the others walk pages that resume, and count misses row by row.
    pub snapshots: Snapshots,
}

/// How a table's full snapshots arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshots {
    /// Resumable walks (and per-device reads): each row's sweep and misses are kept.
    Resume,
    /// Whole exports that restart when interrupted, one per value of this column (`""`: one
    /// for the whole table): staged, then compared set-wise.
    Restart(&'static str),
}

impl TableSpec {
    pub fn typed_ddl(&self) -> String {
        self.columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.sql_type))
            .collect::<Vec<_>>()
            .join(", ")
    }
    pub fn col_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

pub static TABLES: [TableSpec; 9] = [
    TableSpec {
        name: "devices",
        columns: &[
            col("device_name", "TEXT"),
            col("serial_number", "TEXT"),
            col("platform", "TEXT"),
            col("model", "TEXT"),
            col("os_version", "TEXT"),
            col("blueprint_id", "TEXT"),
            col("blueprint_name", "TEXT"),
            col("user_id", "TEXT"),
            col("user_email", "TEXT"),
            col("user_name", "TEXT"),
            col("asset_tag", "TEXT"),
            col("tags", "TEXT"),
            col("last_check_in", "INTEGER"),
            col("mdm_enabled", "INTEGER"),
            col("agent_installed", "INTEGER"),
        ],
        remove_after_missed: 2,
        noun: "device",
        per_device: false,
        snapshots: Snapshots::Resume,
    },
    TableSpec {
        name: "device_details",
        columns: &[
            col("category", "TEXT"),
            col("last_changed_at", "INTEGER"),
            col("posture", "TEXT"),
        ],
        remove_after_missed: 1,
        noun: "device_detail",
        per_device: true,
        snapshots: Snapshots::Restart("category"),
    },
    TableSpec {
        name: "apps",
        columns: &[
            col("name", "TEXT"),
            col("bundle_id", "TEXT"),
            col("version", "TEXT"),
            col("path", "TEXT"),
        ],
        remove_after_missed: 1,
        noun: "app",
        per_device: true,
        snapshots: Snapshots::Restart(""),
    },
    TableSpec {
        name: "compliance",
        columns: &[
            col("kind", "TEXT"),
            col("item_id", "TEXT"),
            col("name", "TEXT"),
            col("status", "TEXT"),
            col("reported_at", "INTEGER"),
        ],
        remove_after_missed: 1,
        noun: "compliance_item",
        per_device: true,
        snapshots: Snapshots::Resume,
    },
    TableSpec {
        name: "users",
        columns: &[
            col("email", "TEXT"),
            col("name", "TEXT"),
            col("active", "INTEGER"),
            col("archived", "INTEGER"),
            col("department", "TEXT"),
            col("job_title", "TEXT"),
            col("device_count", "INTEGER"),
        ],
        remove_after_missed: 1,
        noun: "user",
        per_device: false,
        snapshots: Snapshots::Resume,
    },
    TableSpec {
        name: "blueprints",
        columns: &[col("name", "TEXT"), col("computers_count", "INTEGER")],
        remove_after_missed: 1,
        noun: "blueprint",
        per_device: false,
        snapshots: Snapshots::Resume,
    },
    TableSpec {
        name: "tags",
        columns: &[col("name", "TEXT")],
        remove_after_missed: 1,
        noun: "tag",
        per_device: false,
        snapshots: Snapshots::Resume,
    },
    TableSpec {
        name: "ade_devices",
        columns: &[
            col("serial_number", "TEXT"),
            col("model", "TEXT"),
            col("device_family", "TEXT"),
            col("blueprint_id", "TEXT"),
            col("user_id", "TEXT"),
            col("mdm_device_id", "TEXT"),
            col("profile_status", "TEXT"),
        ],
        remove_after_missed: 1,
        noun: "ade_device",
        per_device: false,
        snapshots: Snapshots::Resume,
    },
    TableSpec {
        name: "vuln_detections",
        columns: &[
            col("cve_id", "TEXT"),
            col("bundle_id", "TEXT"),
            col("software", "TEXT"),
            col("version", "TEXT"),
            col("severity", "TEXT"),
            col("cvss_score", "REAL"),
            col("detected_at", "INTEGER"),
        ],
        remove_after_missed: 1,
        noun: "vulnerability_detection",
        per_device: true,
        snapshots: Snapshots::Resume,
    },
];

/// A change event derived from two snapshots of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub event_type: &'static str,
    pub summary: String,
    pub severity: &'static str,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(s) => s.clone(),
        Value::Blob(b) => format!("<{} bytes>", b.len()),
    }
}

fn get<'a>(spec: &TableSpec, row: &'a [Value], col: &str) -> Option<&'a Value> {
    spec.col_index(col).and_then(|i| row.get(i))
}

fn label(table: Table, key: &str, row: &[Value]) -> String {
    let spec = table.spec();
    let name_col = match table {
        Table::Devices => "device_name",
        Table::Users => "email",
        Table::AdeDevices => "serial_number",
        Table::VulnDetections => "cve_id",
        Table::DeviceDetails => "category",
        _ => "name",
    };
    match get(spec, row, name_col).map(text) {
        Some(n) if !n.is_empty() => n,
        _ => key.to_string(),
    }
}

/// The change events for a row that appeared for the first time.
pub fn created(table: Table, key: &str, new: &[Value]) -> Option<Change> {
    let what = label(table, key, new);
    let (event_type, summary) = match table {
        Table::Devices => ("device_enrolled", format!("Device enrolled: {what}")),
        Table::Apps => (
            "app_installed",
            format!(
                "App installed: {what} {} on device {}",
                get(table.spec(), new, "version")
                    .map(text)
                    .unwrap_or_default(),
                key.split('|').next().unwrap_or_default()
            ),
        ),
        Table::Users => ("user_added", format!("Directory user added: {what}")),
        // Details, compliance, blueprints, tags and ADE rows appearing is not news by itself;
        // a new vulnerability detection is news through its feed's own event.
        _ => return None,
    };
    Some(Change {
        event_type,
        summary,
        severity: "informational",
    })
}

/// The change event for a row that was removed and is back: a reopened vulnerability
/// detection, else what a new row means.
pub fn reappeared(table: Table, key: &str, new: &[Value]) -> Option<Change> {
    match table {
        Table::VulnDetections => Some(Change {
            event_type: "vulnerability_detected",
            summary: format!(
                "Vulnerability detected again: {} in {key}",
                label(table, key, new)
            ),
            severity: "informational",
        }),
        _ => created(table, key, new),
    }
}

/// The change events for a row that was marked removed.
pub fn removed(table: Table, key: &str, old: &[Value]) -> Option<Change> {
    let what = label(table, key, old);
    let (event_type, summary, severity) = match table {
        Table::Devices => ("device_removed", format!("Device removed: {what}"), "low"),
        Table::Apps => (
            "app_removed",
            format!(
                "App removed: {what} from device {}",
                key.split('|').next().unwrap_or_default()
            ),
            "informational",
        ),
        Table::Users => (
            "user_removed",
            format!("Directory user removed: {what}"),
            "informational",
        ),
        Table::VulnDetections => (
            "vulnerability_resolved",
            format!("Vulnerability no longer detected: {what} in {key}"),
            "informational",
        ),
        _ => return None,
    };
    Some(Change {
        event_type,
        summary,
        severity,
    })
}

/// The change events between two snapshots of the same row.
pub fn changed(table: Table, key: &str, old: &[Value], new: &[Value]) -> Vec<Change> {
    let spec = table.spec();
    let what = label(table, key, new);
    let differs = |c: &str| get(spec, old, c) != get(spec, new, c);
    let val = |row: &[Value], c: &str| get(spec, row, c).map(text).unwrap_or_default();
    let mut out = Vec::new();
    match table {
        Table::Devices => {
            if differs("os_version") {
                out.push(Change {
                    event_type: "os_updated",
                    summary: format!(
                        "OS updated on {what}: {} → {}",
                        val(old, "os_version"),
                        val(new, "os_version")
                    ),
                    severity: "informational",
                });
            }
            if differs("blueprint_id") {
                out.push(Change {
                    event_type: "blueprint_changed",
                    summary: format!(
                        "Blueprint changed on {what}: {} → {}",
                        val(old, "blueprint_name"),
                        val(new, "blueprint_name")
                    ),
                    severity: "informational",
                });
            }
            if differs("user_id") {
                let show = |row: &[Value]| {
                    let e = val(row, "user_email");
                    if e.is_empty() {
                        "(unassigned)".to_string()
                    } else {
                        e
                    }
                };
                out.push(Change {
                    event_type: "user_reassigned",
                    summary: format!("User reassigned on {what}: {} → {}", show(old), show(new)),
                    severity: "informational",
                });
            }
        }
        Table::Apps if differs("version") => {
            out.push(Change {
                event_type: "app_updated",
                summary: format!(
                    "App updated: {what} {} → {} on device {}",
                    val(old, "version"),
                    val(new, "version"),
                    key.split('|').next().unwrap_or_default()
                ),
                severity: "informational",
            });
        }
        Table::Compliance if differs("status") => {
            let failing = matches!(
                val(new, "status").to_ascii_uppercase().as_str(),
                "ERROR" | "FAILED" | "INCOMPATIBLE" | "WARNING"
            );
            out.push(Change {
                event_type: "compliance_status_changed",
                summary: format!(
                    "Compliance {} '{what}': {} → {}",
                    val(new, "kind"),
                    val(old, "status"),
                    val(new, "status")
                ),
                severity: if failing { "medium" } else { "informational" },
            });
        }
        Table::DeviceDetails if differs("posture") && !val(old, "posture").is_empty() => {
            let category = val(new, "category");
            let event_type = match category.as_str() {
                "filevault" => "filevault_toggled",
                "application_firewall" => "firewall_toggled",
                "gatekeeper_and_xprotect" => "gatekeeper_toggled",
                _ => "posture_changed",
            };
            out.push(Change {
                event_type,
                summary: format!(
                    "{category} changed on device {}: {} → {}",
                    key.split('|').nth(1).unwrap_or_default(),
                    val(old, "posture"),
                    val(new, "posture")
                ),
                severity: "low",
            });
        }
        _ => {}
    }
    out
}
