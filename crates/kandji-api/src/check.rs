//! Permission check: probe every endpoint the chosen streams need, at minimal cost, and report a
//! matrix (Ok / MissingPermission / NotLicensed / Other) plus the tenant's licence counts.

use crate::api::{path_segment, paths};
use crate::budget::Priority;
use crate::client::KandjiClient;
use crate::error::KandjiError;
use crate::models::Licensing;

/// One endpoint a stream needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointSpec {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub template: &'static str,
    /// The permission the user must tick in Kandji → Access → API token (UI name where known,
    /// else `"GET <path>"`).
    pub permission_name: &'static str,
    /// Cheapest probe query.
    pub probe_query: &'static [(&'static str, &'static str)],
}

impl EndpointSpec {
    /// `"GET /api/v1/devices"`.
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

const fn spec(
    template: &'static str,
    permission_name: &'static str,
    probe_query: &'static [(&'static str, &'static str)],
) -> EndpointSpec {
    EndpointSpec {
        method: "GET",
        template,
        permission_name,
        probe_query,
    }
}

const fn post(template: &'static str, permission_name: &'static str) -> EndpointSpec {
    EndpointSpec {
        method: "POST",
        template,
        permission_name,
        probe_query: &[],
    }
}

/// Endpoints the streams call that are not probed: a probe of `POST /prism/export` would
/// create an export, and the others need an id that only a run has. The permission list
/// ([`EndpointSpec::permission_name`]) names them beside the probed ones.
pub mod calls {
    use super::{EndpointSpec, post, spec};
    use crate::api::paths;

    /// Starts a Prism export (details and apps snapshots).
    pub const PRISM_EXPORT: EndpointSpec = post(paths::PRISM_EXPORT, "POST /api/v1/prism/export");
    /// Polls a Prism export until its signed URL is ready.
    pub const PRISM_EXPORT_ID: EndpointSpec = spec(
        paths::PRISM_EXPORT_ID,
        "GET /api/v1/prism/export/{export_id}",
        &[],
    );
    /// One device: the evidence a device was deleted (404) before it is marked removed.
    pub const DEVICE: EndpointSpec = spec(paths::DEVICE, "Device ID", &[]);
    /// The licence counts: how the planner sizes the fleet (every source).
    pub const LICENSING: EndpointSpec =
        spec(paths::LICENSING, "GET /api/v1/settings/licensing", &[]);
}

/// The device id privilege probes aim at: the nil UUID, which no device has.
pub const NIL_DEVICE_ID: &str = "00000000-0000-0000-0000-000000000000";

/// A sensitive read the collector never needs: holding it is a privilege to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensitiveEndpoint {
    /// Path template (always read with `GET` and [`NIL_DEVICE_ID`]).
    pub template: &'static str,
    /// What the permission lets the token read, for the warning.
    pub reads: &'static str,
    /// The permission's short name.
    pub permission_name: &'static str,
}

/// The device secrets: the FileVault key, the Activation Lock bypass code, the unlock PIN and
/// the recovery password. Reading them is audited as "Access to sensitive data".
pub const SENSITIVE: [SensitiveEndpoint; 4] = [
    SensitiveEndpoint {
        template: "/api/v1/devices/{device_id}/secrets/filevaultkey",
        reads: "FileVault recovery keys",
        permission_name: "GET /api/v1/devices/{device_id}/secrets/filevaultkey",
    },
    SensitiveEndpoint {
        template: "/api/v1/devices/{device_id}/secrets/bypasscode",
        reads: "Activation Lock bypass codes",
        permission_name: "GET /api/v1/devices/{device_id}/secrets/bypasscode",
    },
    SensitiveEndpoint {
        template: "/api/v1/devices/{device_id}/secrets/unlockpin",
        reads: "device unlock PINs",
        permission_name: "GET /api/v1/devices/{device_id}/secrets/unlockpin",
    },
    SensitiveEndpoint {
        template: "/api/v1/devices/{device_id}/secrets/recoverypassword",
        reads: "recovery lock passwords",
        permission_name: "GET /api/v1/devices/{device_id}/secrets/recoverypassword",
    },
];

/// What one privilege probe found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum PrivilegeFinding {
    /// 403 (or 401 from a token that works elsewhere): the token cannot read it. Good.
    NotGranted,
    /// 404 for the nil id (the permission check passed, the device does not exist), or a
    /// 200: the token can read it. Warn.
    Granted,
    /// Anything else (rate limit, server error, no such route): could not tell.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// One privilege probe: what was sent and what it found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrivilegeProbe {
    /// The request as sent: `GET /api/v1/devices/00000000-…/secrets/filevaultkey`.
    pub request: String,
    /// The permission, as the list names it.
    pub permission_name: String,
    /// What it lets the token read.
    pub reads: String,
    /// The outcome.
    pub finding: PrivilegeFinding,
}

impl PrivilegeProbe {
    /// The warning to show when the privilege is granted.
    pub fn warning(&self) -> Option<String> {
        (self.finding == PrivilegeFinding::Granted).then(|| {
            format!(
                "this token can read {}; the collector doesn't need that, untick \"{}\" in Kandji (Access > API tokens)",
                self.reads, self.permission_name
            )
        })
    }
}

/// The endpoints the collector's streams probe, named by endpoint. A stream lists the ones it
/// needs in its declaration; [`KandjiClient::check`] probes each distinct one once.
pub mod probes {
    use super::{EndpointSpec, spec};
    use crate::api::paths;

    /// The device list (also how `{device_id}` probes find a device).
    pub const DEVICES: EndpointSpec = spec(paths::DEVICES, "Device list", &[("limit", "1")]);
    /// One device's library items and parameters.
    pub const DEVICE_STATUS: EndpointSpec = spec(paths::DEVICE_STATUS, "Device Status", &[]);
    /// Prism `device_information` (Prism exports, `POST /prism/export`, are not probed: a probe would create one).
    pub const PRISM_DEVICE_INFO: EndpointSpec = spec(
        "/api/v1/prism/device_information",
        "GET /api/v1/prism/device_information",
        &[("limit", "1")],
    );
    /// Prism `apps`.
    pub const PRISM_APPS: EndpointSpec = spec(
        "/api/v1/prism/apps",
        "GET /api/v1/prism/apps",
        &[("limit", "1")],
    );
    /// The audit log.
    pub const AUDIT: EndpointSpec = spec(
        paths::AUDIT_EVENTS,
        "GET /api/v1/audit/events",
        &[("limit", "1")],
    );
    /// EDR threat details (licensed feature).
    pub const THREATS: EndpointSpec = spec(
        paths::THREATS,
        "GET /api/v1/threat-details",
        &[("limit", "1")],
    );
    /// EDR behavioral detections (licensed feature).
    pub const BEHAVIORAL: EndpointSpec = spec(
        paths::BEHAVIORAL,
        "GET /api/v1/behavioral-detections",
        &[("limit", "1")],
    );
    /// Vulnerability Management detections (licensed feature).
    pub const VULNS: EndpointSpec = spec(
        paths::VULN_DETECTIONS,
        "GET /api/v1/vulnerability-management/detections",
        &[("size", "1")],
    );
    /// Directory users.
    pub const USERS: EndpointSpec = spec(paths::USERS, "List users", &[]);
    /// Blueprints.
    pub const BLUEPRINTS: EndpointSpec =
        spec(paths::BLUEPRINTS, "List Blueprints", &[("limit", "1")]);
    /// Tags.
    pub const TAGS: EndpointSpec = spec(paths::TAGS, "GET /api/v1/tags", &[]);
    /// Automated Device Enrollment devices.
    pub const ADE: EndpointSpec = spec(paths::ADE_DEVICES, "List ADE devices", &[("page", "1")]);
}

/// What one stream needs probed: its name (as the caller knows it), the budget priority its
/// probes spend at, and its endpoints.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSet<'a> {
    /// The caller's name for the stream.
    pub stream: &'a str,
    /// The budget priority of its probes.
    pub priority: Priority,
    /// The endpoints it needs.
    pub endpoints: &'a [EndpointSpec],
}

/// The outcome of one probe.
#[derive(Debug)]
pub enum ProbeResult {
    /// The token can read this endpoint.
    Ok,
    /// 401/403 for a missing permission: tick `permission_name` on the token.
    MissingPermission {
        /// The permission to enable.
        permission_name: String,
    },
    /// The tenant has no licence for the feature (EDR, Vulnerability Management).
    NotLicensed,
    /// 403 on a licence-gated endpoint that does not say which: tick `permission_name`, and
    /// if it is ticked the tenant lacks the feature.
    NotLicensedOrDenied {
        /// The permission to enable.
        permission_name: String,
    },
    /// Could not be probed (e.g. no device to probe `/devices/{id}/status` with).
    Untested {
        /// Why.
        reason: String,
    },
    /// Anything else (network, 5xx, invalid token …).
    Other(KandjiError),
}

impl ProbeResult {
    /// A short status word: `ok`, `missing_permission`, `not_licensed`, `untested`, or the error kind.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::MissingPermission { .. } => "missing_permission",
            Self::NotLicensed => "not_licensed",
            Self::NotLicensedOrDenied { .. } => "not_licensed_or_denied",
            Self::Untested { .. } => "untested",
            Self::Other(e) => e.kind(),
        }
    }
}

/// One row of the matrix.
#[derive(Debug)]
pub struct EndpointCheck {
    /// `"GET /api/v1/devices"`.
    pub endpoint: String,
    /// The permission name to show the user.
    pub permission_name: String,
    /// The streams (as the caller named them) that need it.
    pub streams: Vec<String>,
    /// Outcome.
    pub result: ProbeResult,
}

/// The permission matrix and licence counts.
#[derive(Debug)]
pub struct CheckReport {
    /// One row per distinct endpoint.
    pub endpoints: Vec<EndpointCheck>,
    /// `/settings/licensing`, if readable.
    pub licensing: Result<Licensing, KandjiError>,
}

impl CheckReport {
    /// Whether every probed endpoint is readable.
    pub fn all_ok(&self) -> bool {
        self.endpoints
            .iter()
            .all(|e| matches!(e.result, ProbeResult::Ok))
    }

    /// Streams that can run (every endpoint they need is Ok).
    pub fn runnable(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .endpoints
            .iter()
            .flat_map(|e| e.streams.clone())
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
            .into_iter()
            .filter(|k| {
                self.endpoints
                    .iter()
                    .filter(|e| e.streams.contains(k))
                    .all(|e| matches!(e.result, ProbeResult::Ok))
            })
            .collect()
    }

    /// The row of an endpoint (`"GET /api/v1/devices"`).
    pub fn get(&self, endpoint: &str) -> Option<&EndpointCheck> {
        self.endpoints.iter().find(|e| e.endpoint == endpoint)
    }
}

fn classify(spec: &EndpointSpec, r: Result<serde_json::Value, KandjiError>) -> ProbeResult {
    match r {
        Ok(_) => ProbeResult::Ok,
        Err(KandjiError::PermissionDenied { .. }) => ProbeResult::MissingPermission {
            permission_name: spec.permission_name.to_string(),
        },
        Err(KandjiError::NotLicensed { .. }) => ProbeResult::NotLicensed,
        Err(KandjiError::NotLicensedOrDenied { .. }) => ProbeResult::NotLicensedOrDenied {
            permission_name: spec.permission_name.to_string(),
        },
        Err(e) => ProbeResult::Other(e),
    }
}

/// How long `check` waits for the host's first answer before it calls the host unreachable.
pub const CHECK_REACH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(12);

impl KandjiClient {
    /// Probe every endpoint `streams` need (once each, `limit=1`/`size=1`), plus licensing.
    ///
    /// 403 → `MissingPermission` (or `NotLicensed` when the body says the feature is not
    /// enabled). 401 → `MissingPermission` too when the token works on another probe or on
    /// licensing; otherwise the token itself is invalid and every row is `Other(Unauthorized)`.
    pub async fn check(&self, wants: &[ProbeSet<'_>]) -> CheckReport {
        let mut rows: Vec<(EndpointSpec, Vec<String>, Priority)> = Vec::new();
        for want in wants {
            for spec in want.endpoints {
                match rows
                    .iter_mut()
                    .find(|(s, _, _)| s.template == spec.template)
                {
                    Some((_, ks, p)) => {
                        if !ks.iter().any(|k| k == want.stream) {
                            ks.push(want.stream.to_string());
                        }
                        *p = (*p).min(want.priority);
                    }
                    None => rows.push((*spec, vec![want.stream.to_string()], want.priority)),
                }
            }
        }
        let mut first_device: Option<Result<Option<String>, ()>> = None;
        let mut endpoints = Vec::with_capacity(rows.len());
        // Until the host answers once, every probe shares one deadline; an unreachable host
        // fails the rest without trying each of them.
        let deadline = tokio::time::Instant::now() + CHECK_REACH_DEADLINE;
        let mut answered = false;
        let mut unreachable: Option<(String, String)> = None;
        for (spec, kinds, priority) in rows {
            if let Some((host, message)) = &unreachable {
                endpoints.push(EndpointCheck {
                    endpoint: spec.endpoint(),
                    permission_name: spec.permission_name.to_string(),
                    streams: kinds,
                    result: ProbeResult::Other(KandjiError::Unreachable {
                        endpoint: spec.endpoint(),
                        host: host.clone(),
                        message: message.clone(),
                    }),
                });
                continue;
            }
            let query = spec
                .probe_query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let probe = async {
                if spec.template.contains("{device_id}") {
                    let id = match &first_device {
                        Some(r) => r.clone(),
                        None => {
                            let r = self.first_device_id().await.map_err(|_| ());
                            first_device = Some(r.clone());
                            r
                        }
                    };
                    match id {
                        Ok(Some(id)) => {
                            let path = spec.template.replace("{device_id}", &path_segment(&id));
                            classify(
                                &spec,
                                self.get_raw(spec.template, path, query, priority).await,
                            )
                        }
                        Ok(None) => ProbeResult::Untested {
                            reason: "the tenant has no device to probe with".into(),
                        },
                        Err(()) => ProbeResult::Untested {
                            reason: "could not list a device id (GET /api/v1/devices)".into(),
                        },
                    }
                } else {
                    classify(
                        &spec,
                        self.get_raw(spec.template, spec.template.to_string(), query, priority)
                            .await,
                    )
                }
            };
            let result = if answered {
                probe.await
            } else {
                match tokio::time::timeout_at(deadline, probe).await {
                    Ok(r) => r,
                    Err(_) => ProbeResult::Other(KandjiError::Unreachable {
                        endpoint: spec.endpoint(),
                        host: self.base().host().to_string(),
                        message: format!("no answer within {} s", CHECK_REACH_DEADLINE.as_secs()),
                    }),
                }
            };
            match &result {
                ProbeResult::Other(KandjiError::Unreachable { host, message, .. }) => {
                    unreachable = Some((host.clone(), message.clone()));
                }
                ProbeResult::Untested { .. } => {}
                _ => answered = true,
            }
            tracing::debug!(endpoint = %spec.endpoint(), status = result.status(), "permission probe");
            endpoints.push(EndpointCheck {
                endpoint: spec.endpoint(),
                permission_name: spec.permission_name.to_string(),
                streams: kinds,
                result,
            });
        }
        let licensing = match &unreachable {
            Some((host, message)) => Err(KandjiError::Unreachable {
                endpoint: format!("GET {}", crate::api::paths::LICENSING),
                host: host.clone(),
                message: message.clone(),
            }),
            None => self.licensing().await,
        };
        // Whether a missing permission answers 401 or 403 is uncertain on the live API: if the
        // token demonstrably works elsewhere, a 401 on one endpoint is a missing permission.
        let token_works = licensing.is_ok()
            || endpoints
                .iter()
                .any(|e| matches!(e.result, ProbeResult::Ok));
        if token_works {
            for e in &mut endpoints {
                if matches!(
                    e.result,
                    ProbeResult::Other(KandjiError::Unauthorized { .. })
                ) {
                    e.result = ProbeResult::MissingPermission {
                        permission_name: e.permission_name.clone(),
                    };
                }
            }
        }
        settle_by_family(&mut endpoints);
        CheckReport {
            endpoints,
            licensing,
        }
    }

    /// Looks for privileges the collector does not need, with safe probes only: one `GET` per
    /// [`SENSITIVE`] endpoint, aimed at [`NIL_DEVICE_ID`] (a device that cannot exist), so a
    /// granted permission answers 404 and never returns a secret. No other method, and never a
    /// real device id. Costs 4 requests (plus licensing, to tell a 401 apart).
    pub async fn review_privileges(&self) -> Vec<PrivilegeProbe> {
        let mut out = Vec::with_capacity(SENSITIVE.len());
        let mut token_works: Option<bool> = None;
        for s in SENSITIVE {
            let path = s.template.replace("{device_id}", NIL_DEVICE_ID);
            let r = self
                .get_raw(s.template, path.clone(), Vec::new(), Priority::Inventory)
                .await;
            let finding = match r {
                Ok(_) | Err(KandjiError::NotFound { .. }) => PrivilegeFinding::Granted,
                Err(KandjiError::PermissionDenied { .. }) => PrivilegeFinding::NotGranted,
                Err(KandjiError::Unauthorized { .. }) => {
                    let works = match token_works {
                        Some(w) => w,
                        None => {
                            let w = self.licensing().await.is_ok();
                            token_works = Some(w);
                            w
                        }
                    };
                    if works {
                        PrivilegeFinding::NotGranted
                    } else {
                        PrivilegeFinding::Unknown {
                            reason: "the token itself was refused (401)".into(),
                        }
                    }
                }
                Err(e) => PrivilegeFinding::Unknown {
                    reason: e.to_string(),
                },
            };
            tracing::debug!(endpoint = s.template, finding = ?finding, "privilege probe");
            out.push(PrivilegeProbe {
                request: format!("GET {path}"),
                permission_name: s.permission_name.to_string(),
                reads: s.reads.to_string(),
                finding,
            });
        }
        out
    }

    async fn first_device_id(&self) -> Result<Option<String>, KandjiError> {
        let body = self
            .get_raw(
                paths::DEVICES,
                paths::DEVICES.to_string(),
                vec![("limit".into(), "1".into())],
                Priority::Inventory,
            )
            .await?;
        Ok(body
            .as_array()
            .and_then(|a| a.first())
            .and_then(|d| d.get("device_id"))
            .and_then(crate::models::lenient::string_from_value))
    }
}

/// The licence a gated endpoint belongs to (EDR, Vulnerability Management).
fn licence_family(endpoint: &str) -> Option<&'static str> {
    if endpoint.contains("/threat-details") || endpoint.contains("/behavioral-detections") {
        Some("edr")
    } else if endpoint.contains("/vulnerability-management/") {
        Some("vulnerability_management")
    } else {
        None
    }
}

/// A 403 that did not say why is settled by its licence family: if another endpoint of the
/// family answered, the tenant has the feature and the token lacks this permission; if
/// another said "not licensed", so is this one. Otherwise it stays "not licensed or not
/// permitted".
fn settle_by_family(endpoints: &mut [EndpointCheck]) {
    let family_says = |endpoints: &[EndpointCheck], fam: &str, f: fn(&ProbeResult) -> bool| {
        endpoints
            .iter()
            .any(|e| licence_family(&e.endpoint) == Some(fam) && f(&e.result))
    };
    let settled: Vec<Option<ProbeResult>> = endpoints
        .iter()
        .map(|e| {
            let ProbeResult::NotLicensedOrDenied { permission_name } = &e.result else {
                return None;
            };
            let fam = licence_family(&e.endpoint)?;
            if family_says(endpoints, fam, |r| matches!(r, ProbeResult::Ok)) {
                Some(ProbeResult::MissingPermission {
                    permission_name: permission_name.clone(),
                })
            } else if family_says(endpoints, fam, |r| matches!(r, ProbeResult::NotLicensed)) {
                Some(ProbeResult::NotLicensed)
            } else {
                None
            }
        })
        .collect();
    for (e, s) in endpoints.iter_mut().zip(settled) {
        if let Some(r) = s {
            e.result = r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_name_their_endpoint_and_permission() {
        assert_eq!(probes::DEVICE_STATUS.permission_name, "Device Status");
        assert_eq!(probes::DEVICES.endpoint(), "GET /api/v1/devices");
        assert_eq!(probes::VULNS.probe_query, &[("size", "1")]);
    }
}
