//! Phantom-token backends: trade the opaque token a client holds for the JWT it stands for.
//!
//! Two backends, chosen per policy: Redis (`GET <key_prefix><token>`, the value is the JWT; a
//! missing key means revoked or unknown) and an RFC 7662 introspection endpoint (form POST with the
//! client's credentials; `application/jwt` answers carry the JWT itself, JSON answers carry
//! `active` and the claims, and optionally the JWT in a `jwt` member). The caller (`mod.rs`) checks
//! or decodes the JWT, builds the identity and caches the result; this file only talks to the
//! backend and says what it answered.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::client::{self, ClientOpts, Request, Url};
use crate::redis::RedisClient;

/// What the backend said about a token.
#[derive(Debug)]
pub enum Answer {
    /// The JWT to forward (claims still to be checked or decoded by the caller).
    Jwt(String),
    /// Introspection JSON with `active: true` but no JWT: claims only.
    Claims(Map<String, Value>),
    /// Unknown, expired or revoked.
    Inactive,
}

/// The backend could not answer (down, timed out, or answered nonsense): 503 for uncached tokens.
#[derive(Debug)]
pub struct Unavailable(pub String);

/// Redis lookup.
pub async fn redis_lookup(
    redis: &RedisClient,
    prefix: &str,
    token: &[u8],
) -> Result<Answer, Unavailable> {
    let mut key = Vec::with_capacity(prefix.len() + token.len());
    key.extend_from_slice(prefix.as_bytes());
    key.extend_from_slice(token);
    match redis.get(&key).await {
        Ok(None) => Ok(Answer::Inactive),
        Ok(Some(v)) => match String::from_utf8(v) {
            Ok(jwt) if !jwt.trim().is_empty() => Ok(Answer::Jwt(jwt.trim().to_owned())),
            _ => Err(Unavailable(
                "phantom token store holds a non-JWT value".into(),
            )),
        },
        Err(e) => Err(Unavailable(format!("redis: {e}"))),
    }
}

/// RFC 7662 introspection call.
/// An RFC 7662 introspection endpoint and how to reach it.
pub struct Endpoint<'a> {
    pub url: &'a Url,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    /// Roots from the policy's `ca_file`; None = the system roots.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

pub async fn introspect(
    ep: &Endpoint<'_>,
    token: &[u8],
    timeout: Duration,
) -> Result<Answer, Unavailable> {
    let (url, client_id, client_secret) = (ep.url, ep.client_id, ep.client_secret);
    let token = std::str::from_utf8(token).map_err(|_| Unavailable("token is not text".into()))?;
    let body = client::form_urlencode(&[("token", token), ("token_type_hint", "access_token")]);
    let auth = client::basic_auth(client_id, client_secret);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "application/jwt, application/json"),
    ];
    let req = Request {
        method: "POST",
        url,
        headers: &headers,
        body: body.as_bytes(),
    };
    let opts = ClientOpts {
        connect_timeout: timeout,
        timeout,
        max_body: 256 * 1024,
        tls: ep.tls.clone(),
    };
    let resp = client::send(&req, &opts)
        .await
        .map_err(|e| Unavailable(format!("introspection: {e}")))?;
    if resp.status != 200 {
        return Err(Unavailable(format!(
            "introspection endpoint answered {}",
            resp.status
        )));
    }
    let ctype = resp
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("application/jwt")
        || ctype.starts_with("application/token-introspection+jwt")
    {
        let jwt = String::from_utf8(resp.body)
            .map_err(|_| Unavailable("introspection JWT is not text".into()))?;
        return Ok(Answer::Jwt(jwt.trim().to_owned()));
    }
    let v: Map<String, Value> = serde_json::from_slice(&resp.body)
        .map_err(|_| Unavailable("introspection answer is not a JSON object".into()))?;
    if v.get("active") != Some(&Value::Bool(true)) {
        return Ok(Answer::Inactive);
    }
    if let Some(jwt) = v.get("jwt").and_then(Value::as_str) {
        return Ok(Answer::Jwt(jwt.to_owned()));
    }
    Ok(Answer::Claims(v))
}

/// The claims of a JWT from a trusted store, without checking its signature (policies with
/// `verify` check it instead). `None`: not a JWT with a JSON object payload.
pub fn decode_claims(jwt: &str) -> Option<Map<String, Value>> {
    let mut parts = jwt.split('.');
    let (_, Some(p), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let payload = URL_SAFE_NO_PAD.decode(p).ok()?;
    serde_json::from_slice(&payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_unverified_claims() {
        let p = URL_SAFE_NO_PAD.encode(br#"{"sub":"a","exp":5}"#);
        let c = decode_claims(&format!("e30.{p}.sig")).unwrap();
        assert_eq!(c["sub"], "a");
        assert!(decode_claims("a.b").is_none());
        assert!(decode_claims("e30.!!.x").is_none());
    }
}
