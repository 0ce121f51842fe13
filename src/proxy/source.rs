//! Where template placeholders get their values for one request (`transform::template::Source`).
//!
//! Owns [`RequestValues`]: borrowed views of the request (its [`RequestView`]), the route (for
//! path parameters of its `path_template`), the caller's identity and the request id. Nothing is
//! copied until a template renders; a query parameter is decoded only when it needs decoding.

use std::borrow::Cow;

use crate::auth::identity::Identity;
use crate::config::{PathMatch, RouteConfig};
use crate::http::view::RequestView;
use crate::transform::template::{percent_decode, query_param, Source};

/// The request a template renders from.
pub(crate) struct RequestValues<'a> {
    pub view: &'a RequestView<'a>,
    pub route: &'a RouteConfig,
    pub identity: Option<&'a Identity>,
    pub rid: &'a [u8],
}

impl Source for RequestValues<'_> {
    fn param(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        match &self.route.path {
            PathMatch::Template(t) => {
                crate::router::template_param(t, self.view.path, name).map(percent_decode)
            }
            _ => None,
        }
    }

    fn query(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        let q = memchr::memchr(b'?', self.view.target)?;
        query_param(&self.view.target[q + 1..], name)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.view.fields.get(name.as_bytes())
    }

    fn identity(&self, name: &str) -> Option<&[u8]> {
        let id = self.identity?;
        let fact = match name {
            "subject" => id.subject.as_deref(),
            "consumer" => id.consumer.as_deref(),
            "tenant" => id.tenant.as_deref(),
            "tier" => id.tier.as_deref(),
            _ => id
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
        };
        fact.map(str::as_bytes)
    }

    fn request_id(&self) -> &[u8] {
        self.rid
    }

    fn client_ip(&self) -> &[u8] {
        self.view.peer.ip.as_bytes()
    }

    fn method(&self) -> &[u8] {
        self.view.method
    }

    fn path(&self) -> &[u8] {
        self.view.path
    }
}
