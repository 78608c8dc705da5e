//! Tenant address normalization: turn whatever a user pastes into the canonical API base.
//!
//! This is the SSRF guard: unless the caller explicitly opts in to a custom base URL (for the
//! simulator), the only hosts a token can ever be sent to end in `.api.kandji.io`,
//! `.api.eu.kandji.io` or `.api.iru.com`.

use url::Url;

use crate::error::KandjiError;

/// Tenant region, needed only when the user gives a bare subdomain or a console host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// `*.api.kandji.io` / `*.api.iru.com`.
    #[default]
    Us,
    /// `*.api.eu.kandji.io`.
    Eu,
}

/// The API host suffixes a token may be sent to (without explicit opt-in to a custom URL).
pub const ALLOWED_SUFFIXES: [&str; 3] = [".api.kandji.io", ".api.eu.kandji.io", ".api.iru.com"];

/// A validated API base, e.g. `https://acme.api.kandji.io` (no path, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiBase {
    url: Url,
    custom: bool,
}

impl ApiBase {
    /// Parse a user-supplied tenant address.
    ///
    /// Accepted: `acme`; `acme.kandji.io`, `acme.eu.kandji.io`, `acme.iru.com` (console hosts;
    /// `region` picks US or EU for the bare subdomain and the region-less console hosts);
    /// `acme.api.kandji.io`, `acme.api.eu.kandji.io`, `acme.api.iru.com`; the legacy
    /// `acme.clients.us-1.kandji.io`; any of these with `https://`, a trailing `/api/v1/` and
    /// surrounding whitespace. `acme.api.eu.iru.com` (existence uncertain) maps to
    /// `acme.api.eu.kandji.io`; `acme.iru.com` with [`Region::Eu`] maps to
    /// `acme.api.eu.kandji.io` too.
    ///
    /// With `allow_custom = true`, any other absolute `http://` or `https://` URL (e.g.
    /// `http://127.0.0.1:8080` for the simulator) is accepted as-is, minus a trailing `/api/v1`.
    pub fn parse(input: &str, region: Region, allow_custom: bool) -> Result<Self, KandjiError> {
        let trimmed = input.trim();
        let invalid = |reason: &str| KandjiError::InvalidEndpoint {
            input: trimmed.chars().take(200).collect(),
            reason: reason.to_string(),
        };
        if trimmed.is_empty() {
            return Err(invalid("empty"));
        }
        match kandji_host(trimmed, region) {
            Ok(host) => {
                let url = Url::parse(&format!("https://{host}"))
                    .map_err(|_| invalid("not a valid host"))?;
                Ok(Self { url, custom: false })
            }
            Err(reason) => {
                if allow_custom {
                    if let Some(base) = custom_base(trimmed) {
                        return Ok(base);
                    }
                    return Err(invalid(&format!(
                        "{reason}; and not a valid custom http(s) base URL"
                    )));
                }
                Err(invalid(&reason))
            }
        }
    }

    /// The base URL as a string, e.g. `https://acme.api.kandji.io` (no trailing slash).
    pub fn as_str(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    /// The host name (or IP) of the base.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// Whether this is a caller-approved custom base (not a Kandji/Iru API host).
    pub fn is_custom(&self) -> bool {
        self.custom
    }

    /// Build a full URL for `path` (which must start with `/api/v1/`).
    pub fn join(&self, path: &str) -> Url {
        let mut url = self.url.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(None);
        url
    }
}

impl std::fmt::Display for ApiBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `host` is a Kandji/Iru API host a token may be sent to.
pub fn is_allowed_host(host: &str) -> bool {
    ALLOWED_SUFFIXES
        .iter()
        .any(|suffix| host.strip_suffix(suffix).is_some_and(valid_subdomain))
}

/// A tenant subdomain: 1–63 chars of `[a-z0-9-]`, not starting or ending with `-`.
pub fn valid_subdomain(sub: &str) -> bool {
    !sub.is_empty()
        && sub.len() <= 63
        && sub
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !sub.starts_with('-')
        && !sub.ends_with('-')
}

/// Strip scheme, `/api/v1/` suffix; return the lower-cased host or why it is refused.
fn kandji_host(input: &str, region: Region) -> Result<String, String> {
    let mut rest = input;
    let lower_prefix = rest.get(..8).map(str::to_ascii_lowercase);
    if lower_prefix.as_deref() == Some("https://") {
        rest = &rest[8..];
    } else if rest.contains("://") {
        return Err("only https:// is accepted for Kandji hosts".into());
    }
    // Path: allow only "", "/", "/api", "/api/v1", "/api/v1/".
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = path.trim_end_matches('/');
    if !(path.is_empty() || path == "/api" || path == "/api/v1") {
        return Err("unexpected path (only a trailing /api/v1/ is allowed)".into());
    }
    if host.contains(['@', ':', '?', '#', ' ', '\t', '\\']) {
        return Err("host contains a port, credentials or invalid characters".into());
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let sub = labels.first().copied().unwrap_or_default();
    if !valid_subdomain(sub) {
        return Err("invalid subdomain (letters, digits and '-' only)".into());
    }
    let tail = labels[1..].join(".");
    let canonical = match (tail.as_str(), region) {
        ("", Region::Us) | ("kandji.io", Region::Us) | ("api.kandji.io", _) => {
            format!("{sub}.api.kandji.io")
        }
        ("clients.us-1.kandji.io", _) => format!("{sub}.api.kandji.io"),
        ("", Region::Eu)
        | ("kandji.io", Region::Eu)
        | ("eu.kandji.io", _)
        | ("api.eu.kandji.io", _)
        | ("api.eu.iru.com", _)
        | ("iru.com", Region::Eu) => format!("{sub}.api.eu.kandji.io"),
        ("iru.com", Region::Us) | ("api.iru.com", _) => format!("{sub}.api.iru.com"),
        _ => return Err("not a Kandji or Iru host".into()),
    };
    debug_assert!(is_allowed_host(&canonical));
    Ok(canonical)
}

fn custom_base(input: &str) -> Option<ApiBase> {
    let mut url = Url::parse(input).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/');
    let path = path
        .strip_suffix("/api/v1")
        .or_else(|| path.strip_suffix("/api"))
        .unwrap_or(path)
        .to_string();
    url.set_path(&path);
    Some(ApiBase { url, custom: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepted_forms() {
        let us = Region::Us;
        let eu = Region::Eu;
        let cases: &[(&str, Region, &str)] = &[
            ("acme", us, "https://acme.api.kandji.io"),
            ("acme", eu, "https://acme.api.eu.kandji.io"),
            ("  acme  ", us, "https://acme.api.kandji.io"),
            ("acme.kandji.io", us, "https://acme.api.kandji.io"),
            ("acme.kandji.io", eu, "https://acme.api.eu.kandji.io"),
            ("acme.eu.kandji.io", us, "https://acme.api.eu.kandji.io"),
            ("acme.iru.com", us, "https://acme.api.iru.com"),
            ("acme.iru.com", eu, "https://acme.api.eu.kandji.io"),
            ("acme.api.kandji.io", eu, "https://acme.api.kandji.io"),
            ("acme.api.eu.kandji.io", us, "https://acme.api.eu.kandji.io"),
            ("acme.api.iru.com", us, "https://acme.api.iru.com"),
            ("acme.api.eu.iru.com", us, "https://acme.api.eu.kandji.io"),
            (
                "acme.clients.us-1.kandji.io",
                us,
                "https://acme.api.kandji.io",
            ),
            (
                "https://acme.api.kandji.io/api/v1/",
                us,
                "https://acme.api.kandji.io",
            ),
            (
                "HTTPS://ACME.api.kandji.io/api/v1",
                us,
                "https://acme.api.kandji.io",
            ),
            (
                "https://acme.clients.us-1.kandji.io/api/v1/",
                us,
                "https://acme.api.kandji.io",
            ),
            (
                "\thttps://my-org2.kandji.io/\n",
                us,
                "https://my-org2.api.kandji.io",
            ),
            ("acme.api.kandji.io.", us, "https://acme.api.kandji.io"),
        ];
        for (input, region, want) in cases {
            let got =
                ApiBase::parse(input, *region, false).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.as_str(), *want, "{input}");
            assert!(is_allowed_host(got.host()));
            assert!(!got.is_custom());
        }
    }

    #[test]
    fn refused_forms() {
        for input in [
            "",
            "http://acme.api.kandji.io",
            "evil.com",
            "acme.api.kandji.io.evil.com",
            "acme.kandji.io@evil.com",
            "https://evil.com/acme.api.kandji.io",
            "acme.api.kandji.io:8443",
            "-acme",
            "ac_me",
            "acme.api.kandji.io/other",
            "acme.api.kandji.io?x=1",
            "http://127.0.0.1:8080",
            "ftp://acme.kandji.io",
            "a.b.kandji.io",
        ] {
            let err = ApiBase::parse(input, Region::Us, false).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("Accepted forms"), "{input}: {msg}");
        }
    }

    #[test]
    fn custom_only_with_opt_in() {
        let b = ApiBase::parse("http://127.0.0.1:4567/api/v1/", Region::Us, true).unwrap();
        assert_eq!(b.as_str(), "http://127.0.0.1:4567");
        assert!(b.is_custom());
        assert_eq!(
            b.join("/api/v1/devices").as_str(),
            "http://127.0.0.1:4567/api/v1/devices"
        );
        // Kandji forms still canonicalize with allow_custom.
        let k = ApiBase::parse("acme", Region::Us, true).unwrap();
        assert!(!k.is_custom());
        assert!(ApiBase::parse("http://user:pw@127.0.0.1:1", Region::Us, true).is_err());
        assert!(ApiBase::parse("not a url", Region::Us, true).is_err());
    }

    proptest! {
        #[test]
        fn never_outside_allowed_suffixes(input in ".{0,60}", eu in any::<bool>()) {
            let region = if eu { Region::Eu } else { Region::Us };
            if let Ok(b) = ApiBase::parse(&input, region, false) {
                prop_assert!(is_allowed_host(b.host()), "{input:?} -> {}", b.as_str());
                prop_assert!(b.as_str().starts_with("https://"));
            }
        }

        #[test]
        fn never_outside_allowed_suffixes_hostlike(
            scheme in prop::sample::select(vec!["", "https://", "http://", "HTTPS://"]),
            labels in prop::collection::vec("[a-zA-Z0-9@:_.-]{0,12}", 1..6),
            path in prop::sample::select(vec!["", "/", "/api/v1/", "/x", "?q"]),
        ) {
            let input = format!("{scheme}{}{path}", labels.join("."));
            if let Ok(b) = ApiBase::parse(&input, Region::Us, false) {
                prop_assert!(is_allowed_host(b.host()), "{input:?} -> {}", b.as_str());
            }
        }
    }
}
