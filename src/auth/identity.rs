//! The verified caller and the headers it becomes.
//!
//! An [`Identity`] is built once per verification (JWT claims, an API key's consumer, or a phantom
//! token's exchanged JWT), cached per worker behind an `Rc`, and read by the connection driver: its
//! `headers` are appended to the upstream request after every client-sent copy of a managed
//! identity header has been dropped, so a client can never forge them. Values that could break a
//! header line (CR, LF, other control bytes) are left out rather than passed on.

use serde_json::{Map, Value};

use crate::config::auth::{Consumer, IdentityMap, Requirement};

pub const CONSUMER_HEADER: &str = "x-consumer-id";
pub const TENANT_HEADER: &str = "x-tenant-id";
pub const TIER_HEADER: &str = "x-consumer-tier";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: Option<String>,
    pub consumer: Option<String>,
    pub tenant: Option<String>,
    pub tier: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// (lower-cased name, value) added to the upstream request.
    pub headers: Vec<(String, String)>,
    /// Unix seconds after which this identity must not be used (a token's `exp`).
    pub expires: Option<u64>,
}

fn header_safe(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// A claim as header text: strings as they are, numbers and booleans printed, arrays of those
/// comma-joined; objects and nulls give nothing.
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .filter(|i| !i.is_array())
                .filter_map(claim_text)
                .collect();
            (!parts.is_empty()).then(|| parts.join(","))
        }
        _ => None,
    }
}

/// A roles/scope claim as a list: an array of strings, or one space-separated string (OAuth `scope`).
fn claim_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn push(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    if !header_safe(&value) || value.is_empty() {
        return;
    }
    match headers.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => {
            v.push(',');
            v.push_str(&value);
        }
        None => headers.push((name.to_owned(), value)),
    }
}

impl Identity {
    /// From a verified claims set.
    pub fn from_claims(
        claims: &Map<String, Value>,
        map: &IdentityMap,
        expires: Option<u64>,
    ) -> Self {
        let mut headers = Vec::new();
        for (claim, header) in &map.claims_to_headers {
            if let Some(text) = claims.get(claim).and_then(claim_text) {
                // a space-separated scope becomes a comma list like roles
                let text = if claim == &map.scopes_claim {
                    text.split_whitespace().collect::<Vec<_>>().join(",")
                } else {
                    text
                };
                push(&mut headers, header, text);
            }
        }
        let text = |c: &Option<String>| c.as_ref().and_then(|c| claims.get(c)).and_then(claim_text);
        let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        let tenant = text(&map.tenant_claim);
        let tier = text(&map.tier_claim);
        if let Some(t) = &tenant {
            push(&mut headers, TENANT_HEADER, t.clone());
        }
        if let Some(t) = &tier {
            push(&mut headers, TIER_HEADER, t.clone());
        }
        Identity {
            consumer: subject.clone(),
            subject,
            tenant,
            tier,
            roles: claim_list(claims.get(&map.roles_claim)),
            scopes: claim_list(claims.get(&map.scopes_claim)),
            headers,
            expires,
        }
    }

    /// From an API key's consumer.
    pub fn from_consumer(c: &Consumer) -> Self {
        let mut headers = Vec::new();
        push(&mut headers, CONSUMER_HEADER, c.id.clone());
        if let Some(t) = &c.tenant {
            push(&mut headers, TENANT_HEADER, t.clone());
        }
        if let Some(t) = &c.tier {
            push(&mut headers, TIER_HEADER, t.clone());
        }
        Identity {
            subject: None,
            consumer: Some(c.id.clone()),
            tenant: c.tenant.clone(),
            tier: c.tier.clone(),
            headers,
            ..Identity::default()
        }
    }

    /// Adds (or replaces) the Authorization header sent upstream (phantom tokens).
    pub fn with_authorization(mut self, jwt: &str) -> Self {
        self.headers.retain(|(n, _)| n != "authorization");
        if header_safe(jwt) {
            self.headers
                .push(("authorization".into(), format!("Bearer {jwt}")));
        }
        self
    }

    /// Does this identity meet a route's `require_roles` / `require_scopes`?
    pub fn satisfies(&self, r: &Requirement) -> bool {
        let check = |need: &[String], have: &[String]| {
            if need.is_empty() {
                return true;
            }
            if r.all {
                need.iter().all(|n| have.contains(n))
            } else {
                need.iter().any(|n| have.contains(n))
            }
        };
        check(&r.roles, &self.roles) && check(&r.scopes, &self.scopes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> IdentityMap {
        IdentityMap {
            tenant_claim: Some("tid".into()),
            ..IdentityMap::default()
        }
    }

    #[test]
    fn claims_become_headers() {
        let c = serde_json::json!({"sub":"alice","roles":["admin","dev"],"scope":"read write","tid":"t1"});
        let id = Identity::from_claims(c.as_object().unwrap(), &map(), Some(5));
        assert_eq!(
            id.headers,
            vec![
                ("x-user-id".to_string(), "alice".to_string()),
                (
                    "x-user-roles".to_string(),
                    "admin,dev,read,write".to_string()
                ),
                ("x-tenant-id".to_string(), "t1".to_string()),
            ]
        );
        assert_eq!(id.scopes, vec!["read", "write"]);
        let any = Requirement {
            roles: vec!["admin".into(), "x".into()],
            scopes: vec![],
            all: false,
        };
        assert!(id.satisfies(&any));
        let all = Requirement { all: true, ..any };
        assert!(!id.satisfies(&all));
    }

    #[test]
    fn unsafe_values_are_dropped() {
        let c = serde_json::json!({"sub":"a\r\nX-Evil: 1"});
        let id = Identity::from_claims(c.as_object().unwrap(), &map(), None);
        assert!(id.headers.is_empty());
    }
}
