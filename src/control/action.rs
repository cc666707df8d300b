//! The control API as data: every request the socket takes is parsed into one [`Action`]
//! (or refused with an [`ApiError`] that says why); the server only moves bytes, the loop
//! thread only acts. [`parse`] is pure, so that arbitrary input can be thrown at it.

use crate::model::{Amounts, Class, Resource};
use serde::{Deserialize, Serialize};

/// The largest request body accepted (bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// The longest tenant name or UUID accepted in a request.
pub const MAX_TENANT: usize = 256;

/// The longest note on an intent.
pub const MAX_NOTE: usize = 1024;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read status, tenants, explanations, overrides, intents and metrics.
    Reader,
    /// Also change overrides, intents, the policy and pause/resume.
    Admin,
}

/// One request of the control API.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Status,
    Tenants,
    Explain { tenant: String },
    OverrideList,
    OverrideSet { tenant: String, spec: OverrideSpec },
    OverrideClear { tenant: String },
    IntentList,
    IntentAdd(IntentSpec),
    IntentCancel { id: u64 },
    PolicyReload,
    Pause,
    Resume,
    Metrics,
}

impl Action {
    /// The role a caller needs for this action.
    pub fn needs(&self) -> Role {
        match self {
            Action::Status
            | Action::Tenants
            | Action::Explain { .. }
            | Action::OverrideList
            | Action::IntentList
            | Action::Metrics => Role::Reader,
            Action::OverrideSet { .. }
            | Action::OverrideClear { .. }
            | Action::IntentAdd(_)
            | Action::IntentCancel { .. }
            | Action::PolicyReload
            | Action::Pause
            | Action::Resume => Role::Admin,
        }
    }

    /// Whether it changes state (and goes to the audit log).
    pub fn changes(&self) -> bool {
        self.needs() == Role::Admin
    }

    /// A short description for the audit log.
    pub fn describe(&self) -> String {
        match self {
            Action::Status => "status".into(),
            Action::Tenants => "tenants".into(),
            Action::Explain { tenant } => format!("explain {tenant}"),
            Action::OverrideList => "override list".into(),
            Action::OverrideSet { tenant, spec } => format!(
                "override set {tenant} {}",
                serde_json::to_string(spec).unwrap_or_default()
            ),
            Action::OverrideClear { tenant } => format!("override clear {tenant}"),
            Action::IntentList => "intent list".into(),
            Action::IntentAdd(spec) => format!(
                "intent add {}",
                serde_json::to_string(spec).unwrap_or_default()
            ),
            Action::IntentCancel { id } => format!("intent cancel {id}"),
            Action::PolicyReload => "policy reload".into(),
            Action::Pause => "pause".into(),
            Action::Resume => "resume".into(),
            Action::Metrics => "metrics".into(),
        }
    }
}

/// Amounts as an operator writes them, each in its named unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quantities {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_bytes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_bytes_per_s: Option<f64>,
}

impl Quantities {
    /// In the pipeline's units (memory in KiB).
    pub fn amounts(&self) -> Amounts {
        Amounts {
            cpu: self.cpu_cores,
            mem: self.mem_mib.map(|m| m * 1024.0),
            disk: self.disk_bytes_per_s,
            net: self.net_bytes_per_s,
        }
    }

    /// From the pipeline's units.
    pub fn of(a: &Amounts) -> Quantities {
        Quantities {
            cpu_cores: a.cpu,
            mem_mib: a.mem.map(|k| k / 1024.0),
            disk_bytes_per_s: a.disk,
            net_bytes_per_s: a.net,
        }
    }

    pub fn is_empty(&self) -> bool {
        Resource::ALL
            .iter()
            .all(|r| self.amounts().get(*r).is_none())
    }

    fn check(&self, what: &str) -> Result<(), ApiError> {
        let a = self.amounts();
        for r in Resource::ALL {
            if let Some(v) = *a.get(r)
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(ApiError::bad(format!(
                    "{what}.{}: {v} is not a finite number ≥ 0",
                    field_name(r)
                )));
            }
        }
        Ok(())
    }
}

/// The request field of a resource's amount.
pub fn field_name(r: Resource) -> &'static str {
    match r {
        Resource::Cpu => "cpu_cores",
        Resource::Mem => "mem_mib",
        Resource::Disk => "disk_bytes_per_s",
        Resource::Net => "net_bytes_per_s",
    }
}

/// `PUT /v1/overrides/{tenant}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverrideSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<Class>,
    pub min: Quantities,
    pub max: Quantities,
    pub freeze: bool,
    /// Seconds until it expires (None: until cleared).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<f64>,
}

/// `POST /v1/intents`: upcoming demand of one tenant, one amount per resource it names
/// (the tenant's total usage of that resource during the window).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentSpec {
    pub tenant: String,
    /// Unix seconds.
    pub start_unix_s: i64,
    pub duration_s: i64,
    pub demand: Quantities,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A refused request: the HTTP status and a message for the operator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: 404,
            message: message.into(),
        }
    }
    /// A tenant named by neither a name nor a UUID on this host.
    pub fn unknown_tenant(tenant: &str) -> Self {
        ApiError::not_found(format!(
            "no tenant named {tenant:?} on this host, nor one with that UUID (`prescient \
             tenants` lists the names, `prescient tenants --json` the UUIDs too)"
        ))
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: 503,
            message: message.into(),
        }
    }
}

/// Parse one request into an action.
pub fn parse(method: &str, path: &str, body: &[u8]) -> Result<Action, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError {
            status: 413,
            message: format!("request body over {MAX_BODY} bytes"),
        });
    }
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let no_body = |a: Action| {
        if body.iter().all(u8::is_ascii_whitespace) {
            Ok(a)
        } else {
            Err(ApiError::bad(format!("{method} {path} takes no body")))
        }
    };
    let wrong_method = |allowed: &str| ApiError {
        status: 405,
        message: format!("{method} is not allowed on {path} (use {allowed})"),
    };
    match segments.as_slice() {
        ["metrics"] => match method {
            "GET" => Ok(Action::Metrics),
            _ => Err(wrong_method("GET")),
        },
        ["v1", "status"] => match method {
            "GET" => no_body(Action::Status),
            _ => Err(wrong_method("GET")),
        },
        ["v1", "tenants"] => match method {
            "GET" => no_body(Action::Tenants),
            _ => Err(wrong_method("GET")),
        },
        ["v1", "tenants", tenant, "explain"] => match method {
            "GET" => no_body(Action::Explain {
                tenant: tenant_of(tenant)?,
            }),
            _ => Err(wrong_method("GET")),
        },
        ["v1", "overrides"] => match method {
            "GET" => no_body(Action::OverrideList),
            _ => Err(wrong_method("GET")),
        },
        ["v1", "overrides", tenant] => match method {
            "PUT" => {
                let spec: OverrideSpec = json(body)?;
                spec.min.check("min")?;
                spec.max.check("max")?;
                if let Some(ttl) = spec.ttl_seconds
                    && !(ttl.is_finite()
                        && (1.0..=crate::allocate::overrides::MAX_TTL_S).contains(&ttl))
                {
                    return Err(ApiError::bad(format!(
                        "ttl_seconds (the command's --ttl): {ttl} s is not between 1 s and \
                         2592000 s (30 days)"
                    )));
                }
                Ok(Action::OverrideSet {
                    tenant: tenant_of(tenant)?,
                    spec,
                })
            }
            "DELETE" => no_body(Action::OverrideClear {
                tenant: tenant_of(tenant)?,
            }),
            _ => Err(wrong_method("PUT or DELETE")),
        },
        ["v1", "intents"] => match method {
            "GET" => no_body(Action::IntentList),
            "POST" => {
                let spec: IntentSpec = json(body)?;
                tenant_of(&spec.tenant)?;
                spec.demand.check("demand")?;
                if spec.demand.is_empty() {
                    return Err(ApiError::bad(
                        "demand: name at least one of cpu_cores, mem_mib, disk_bytes_per_s, \
                         net_bytes_per_s",
                    ));
                }
                if spec.note.as_ref().is_some_and(|n| n.len() > MAX_NOTE) {
                    return Err(ApiError::bad(format!("note: longer than {MAX_NOTE} bytes")));
                }
                Ok(Action::IntentAdd(spec))
            }
            _ => Err(wrong_method("GET or POST")),
        },
        ["v1", "intents", id] => match method {
            "DELETE" => {
                let id = id.parse().map_err(|_| {
                    ApiError::bad(format!("intent id {id:?} is not a whole number"))
                })?;
                no_body(Action::IntentCancel { id })
            }
            _ => Err(wrong_method("DELETE")),
        },
        ["v1", "policy", "reload"] => match method {
            "POST" => no_body(Action::PolicyReload),
            _ => Err(wrong_method("POST")),
        },
        ["v1", "pause"] => match method {
            "POST" => no_body(Action::Pause),
            _ => Err(wrong_method("POST")),
        },
        ["v1", "resume"] => match method {
            "POST" => no_body(Action::Resume),
            _ => Err(wrong_method("POST")),
        },
        _ => Err(ApiError::not_found(format!(
            "no such endpoint: {path} (see docs/operations.md for the API)"
        ))),
    }
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("request body: {e}")))
}

/// A tenant name or UUID from a path segment, percent-decoded and checked.
fn tenant_of(raw: &str) -> Result<String, ApiError> {
    let decoded = percent_decode(raw)
        .ok_or_else(|| ApiError::bad(format!("tenant {raw:?}: bad percent-encoding")))?;
    if decoded.is_empty() || decoded.len() > MAX_TENANT {
        return Err(ApiError::bad(format!(
            "tenant: a name or UUID of 1 … {MAX_TENANT} bytes"
        )));
    }
    if decoded.chars().any(char::is_control) {
        return Err(ApiError::bad("tenant: control characters are not allowed"));
    }
    Ok(decoded)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encode a tenant name for a request path.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_into_actions() {
        assert_eq!(parse("GET", "/v1/status", b""), Ok(Action::Status));
        assert_eq!(parse("GET", "/v1/tenants/", b""), Ok(Action::Tenants));
        assert_eq!(
            parse("GET", "/v1/tenants/web%201/explain", b""),
            Ok(Action::Explain {
                tenant: "web 1".into()
            })
        );
        let a = parse(
            "PUT",
            "/v1/overrides/db",
            br#"{"class":"gold","min":{"cpu_cores":2},"ttl_seconds":60}"#,
        )
        .unwrap();
        let Action::OverrideSet { tenant, spec } = &a else {
            panic!("{a:?}")
        };
        assert_eq!(tenant, "db");
        assert_eq!(spec.class, Some(Class::Gold));
        assert_eq!(spec.min.amounts().cpu, Some(2.0));
        assert_eq!(a.needs(), Role::Admin);
        assert_eq!(
            parse("DELETE", "/v1/intents/7", b""),
            Ok(Action::IntentCancel { id: 7 })
        );
        assert_eq!(parse("GET", "/metrics", b"").unwrap().needs(), Role::Reader);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let e = |m, p, b: &[u8]| parse(m, p, b).unwrap_err();
        assert_eq!(e("GET", "/v2/x", b"").status, 404);
        assert_eq!(e("POST", "/v1/status", b"").status, 405);
        let unknown = e("PUT", "/v1/overrides/db", br#"{"clas":"gold"}"#);
        assert!(unknown.message.contains("clas"), "{unknown}");
        let neg = e("PUT", "/v1/overrides/db", br#"{"max":{"mem_mib":-1}}"#);
        assert!(neg.message.contains("max.mem_mib"), "{neg}");
        let ttl = e(
            "PUT",
            "/v1/overrides/db",
            br#"{"freeze":true,"ttl_seconds":0}"#,
        );
        assert!(ttl.message.contains("ttl_seconds"), "{ttl}");
        let no_demand = e(
            "POST",
            "/v1/intents",
            br#"{"tenant":"db","start_unix_s":1,"duration_s":60,"demand":{}}"#,
        );
        assert!(no_demand.message.contains("demand"), "{no_demand}");
        assert_eq!(e("GET", "/v1/tenants/%zz/explain", b"").status, 400);
        assert_eq!(e("DELETE", "/v1/intents/x", b"").status, 400);
        assert_eq!(
            e("GET", "/v1/status", &vec![b'x'; MAX_BODY + 1]).status,
            413
        );
    }

    proptest::proptest! {
        /// Whatever arrives, parsing answers an action or an error, never a panic.
        #[test]
        fn arbitrary_requests_never_panic(
            method in "[A-Z]{0,8}|\\PC{0,8}",
            path in "(/v1|/metrics|/v1/overrides|/v1/intents|/v1/tenants)?(/\\PC{0,12}){0,4}",
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let _ = parse(&method, &path, &body);
        }

        /// Near-valid bodies: every JSON shape the endpoints could be sent.
        #[test]
        fn arbitrary_json_never_panics(
            tenant in "\\PC{0,300}",
            json in "\\{(\"[a-z_]{1,12}\": ?(-?[0-9]{1,20}(\\.[0-9]{1,5})?(e[0-9]{1,3})?|\"\\PC{0,8}\"|null|true|\\{\\}|\\[\\]),? ?){0,6}\\}",
        ) {
            let path = format!("/v1/overrides/{}", percent_encode(&tenant));
            if let Ok(Action::OverrideSet { spec, .. }) = parse("PUT", &path, json.as_bytes()) {
                for r in Resource::ALL {
                    for v in [spec.min.amounts().get(r), spec.max.amounts().get(r)] {
                        proptest::prop_assert!(v.is_none_or(|v| v.is_finite() && v >= 0.0));
                    }
                }
            }
            let _ = parse("POST", "/v1/intents", json.as_bytes());
        }
    }

    #[test]
    fn percent_encoding_round_trips() {
        for s in ["web-1", "a b/c%d", "ünï"] {
            assert_eq!(percent_decode(&percent_encode(s)).as_deref(), Some(s));
        }
    }
}
