//! Every key of the config format, derived from the raw serde structs themselves, so that the
//! documentation tests (the example file uses every key) can never lag behind the format.
//!
//! How: [`all_keys`] deserialises [`RawConfig`] from [`Collector`], a `Deserializer` that holds no
//! data. Serde's derived code hands `deserialize_struct` the `fields: &'static [&'static str]` of
//! each struct (renames applied, as they are written in TOML); the collector records them under the
//! current path and then feeds each field a placeholder value through the same collector, so nested
//! structs, `Option`s, arrays (one element) and maps (one key, written `*`) are walked too. Values
//! whose type accepts several shapes (`deserialize_any`: durations, sizes, `listen`, endpoints,
//! `key`, `local_share`) get a placeholder string first; when that shape is refused, the walk
//! restarts with the next shape (integer, float, boolean, empty array) for that path.
//!
//! One shape is invisible this way: a table reached through `deserialize_any` (the `{ addr, weight }`
//! form of an endpoint) is read through serde's `MapAccessDeserializer`, which drops the field list,
//! so [`all_keys`] walks `RawEndpointTable` at its place explicitly.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess};
use serde::Deserialize;

use super::raw::{RawConfig, RawEndpointTable};

/// Placeholder shapes tried, in order, for a value read with `deserialize_any`.
const SHAPES: usize = 5;

/// Every key path of the format, like `upstream.endpoints.weight` or `tier.*.quotas` (`*`: a
/// name the user chooses). Arrays are transparent: `route.auth` is the `auth` key of any route.
pub(crate) fn all_keys() -> BTreeSet<String> {
    let mut keys = walk::<RawConfig>(&[]);
    keys.extend(walk::<RawEndpointTable>(&["upstream", "endpoints"]));
    keys
}

/// The keys of `T`, under `prefix`.
fn walk<T: for<'de> Deserialize<'de>>(prefix: &[&str]) -> BTreeSet<String> {
    let mut shapes: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let out = RefCell::new(BTreeSet::new());
        let c = Collector {
            path: prefix.iter().map(|s| s.to_string()).collect(),
            out: &out,
            shapes: &shapes,
        };
        match T::deserialize(c) {
            Ok(_) => return out.into_inner(),
            Err(Error::Retry(path)) => {
                let n = shapes.entry(path.clone()).or_insert(0);
                *n += 1;
                assert!(*n < SHAPES, "no placeholder shape fits {path}");
            }
            Err(Error::Custom(m)) => panic!("walking the raw config: {m}"),
        }
    }
}

#[derive(Debug)]
enum Error {
    /// The value at this path refused its placeholder shape: try the next one.
    Retry(String),
    Custom(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Custom(msg.to_string())
    }
}

#[derive(Clone)]
struct Collector<'a> {
    path: Vec<String>,
    out: &'a RefCell<BTreeSet<String>>,
    shapes: &'a BTreeMap<String, usize>,
}

impl Collector<'_> {
    fn child(&self, seg: &str) -> Self {
        let mut c = self.clone();
        c.path.push(seg.to_owned());
        c
    }

    fn key(&self) -> String {
        self.path.join(".")
    }
}

impl<'de> Deserializer<'de> for Collector<'_> {
    type Error = Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let key = self.key();
        let r = match self.shapes.get(&key).copied().unwrap_or(0) {
            0 => v.visit_str("x"),
            1 => v.visit_i64(1),
            2 => v.visit_f64(0.5),
            3 => v.visit_bool(true),
            _ => v.visit_seq(Elements(None)),
        };
        r.map_err(|_| Error::Retry(key))
    }

    fn deserialize_bool<V: de::Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_bool(true)
    }

    fn deserialize_i64<V: de::Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_i64(1)
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: de::Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_seq(Elements(Some(self)))
    }

    fn deserialize_map<V: de::Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.out.borrow_mut().insert(self.child("*").key());
        v.visit_map(Fields {
            names: &["*"],
            next: 0,
            parent: self,
        })
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        for f in fields {
            self.out.borrow_mut().insert(self.child(f).key());
        }
        v.visit_map(Fields {
            names: fields,
            next: 0,
            parent: self,
        })
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct tuple tuple_struct enum identifier ignored_any
    }
}

/// A one-element sequence (`Some`) or an empty one.
struct Elements<'a>(Option<Collector<'a>>);

impl<'de> SeqAccess<'de> for Elements<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|c| seed.deserialize(c)).transpose()
    }
}

/// A struct's fields (or a map's one `*` key), each with a placeholder value.
struct Fields<'a> {
    names: &'static [&'static str],
    next: usize,
    parent: Collector<'a>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(name) = self.names.get(self.next) else {
            return Ok(None);
        };
        let key: de::value::StrDeserializer<'_, Error> = name.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let name = self.names[self.next];
        self.next += 1;
        seed.deserialize(self.parent.child(name))
    }
}

/// Whether `value` has the key path `segs` (`*`: any key; arrays: any element).
fn present(value: &toml::Value, segs: &[&str]) -> bool {
    let Some((first, rest)) = segs.split_first() else {
        return true;
    };
    match value {
        toml::Value::Array(items) => items.iter().any(|v| present(v, segs)),
        toml::Value::Table(t) if *first == "*" => t.values().any(|v| present(v, rest)),
        toml::Value::Table(t) => t.get(*first).is_some_and(|v| present(v, rest)),
        _ => false,
    }
}

/// The key paths of [`all_keys`] that `text` (a TOML document) does not use.
pub(crate) fn missing_keys(text: &str) -> Vec<String> {
    let doc: toml::Value = toml::from_str(text).expect("valid TOML");
    all_keys()
        .into_iter()
        .filter(|k| !present(&doc, &k.split('.').collect::<Vec<_>>()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_finds_keys_at_every_depth() {
        let keys = all_keys();
        for k in [
            "server.listen",
            "server.max_headers",
            "admin.listen",
            "upstream.endpoints",
            "upstream.endpoints.weight",
            "route.rewrite_prefix.to",
            "route.headers.*",
            "route.cost",
            "auth.type",
            "auth.keys.key_env",
            "auth.claims_to_headers.*",
            "rate_limit.local_share",
            "quota.limit",
            "tier.*.rate_limits",
            "redis.password_env",
            "access_log.flush_interval",
        ] {
            assert!(keys.contains(k), "{k} not found in {keys:#?}");
        }
        assert!(!keys
            .iter()
            .any(|k| k.contains("RawAuth") || k.ends_with('.')));
    }

    #[test]
    fn missing_keys_are_named() {
        let missing =
            missing_keys("[server]\nlisten = \"127.0.0.1:1\"\n[tier.gold]\nquotas = []\n");
        assert!(!missing.contains(&"server.listen".to_string()));
        assert!(!missing.contains(&"tier.*.quotas".to_string()));
        assert!(missing.contains(&"tier.*.rate_limits".to_string()));
        assert!(missing.contains(&"server.workers".to_string()));
    }

    /// The examples document the format: a key added to the raw structs fails this test until an
    /// example shows it. gateway.toml shows every key but the TLS ones, which need certificate
    /// files the repository does not ship (no private key is committed): tls.toml shows those.
    #[test]
    fn example_uses_every_key() {
        let tls = missing_keys(include_str!("../../examples/tls.toml"));
        let missing: Vec<String> = missing_keys(include_str!("../../examples/gateway.toml"))
            .into_iter()
            .filter(|k| tls.contains(k))
            .collect();
        assert!(
            missing.is_empty(),
            "neither examples/gateway.toml nor examples/tls.toml shows these keys: {missing:#?}"
        );
    }

    /// The README's reference tables (`[server]`, `[admin]`, `[access_log]`, `[tracing]`, `[dns]`, `[[listener]]`,
    /// `[listener.tls]`, `[[upstream]]` with its `tls`, `[[route]]`) name every key of their table.
    #[test]
    fn readme_tables_name_every_key() {
        let readme = include_str!("../../README.md");
        let tables = [
            "server",
            "admin",
            "access_log",
            "tracing",
            "dns",
            "listener",
            "upstream",
            "route",
        ];
        let nested = ["listener.tls.", "upstream.tls."];
        let missing: Vec<String> = all_keys()
            .into_iter()
            .filter(|k| {
                let segs: Vec<&str> = k.split('.').collect();
                let documented = (segs.len() == 2 && tables.contains(&segs[0]))
                    || nested.iter().any(|n| k.starts_with(n));
                documented && !readme.contains(&format!("`{}`", segs[segs.len() - 1]))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "README.md does not document {missing:?}"
        );
    }
}
