//! `cache.get-fields`: an object reduced to the fields a plugin names. The host cuts it;
//! the Rust SDK's test host cuts it the same way.
//!
//! A plugin whose JSON parsing is slow (JavaScript's `JSON.parse` builds every object of a
//! 4.5 KB Pod; Go's `encoding/json` scans it twice) reads only what it uses: the host skips
//! the rest natively, without building anything for it, and the guest parses a few hundred
//! bytes. A field is a dotted path from the object's root (`metadata.labels`,
//! `spec.nodeName`); a path that meets an array applies to each element
//! (`spec.containers.image` keeps every container's image). The answer keeps each value at
//! its place: `{"metadata":{"labels":{…}},"spec":{"nodeName":"n1"}}`. A path the object
//! lacks is left out; one that runs into a scalar stops there and is left out too; an
//! array element the path cannot enter reads as `null`, so indexes still line up.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// At most this many fields per read.
pub const MAX_FIELDS: usize = 64;
/// At most this many bytes per field path.
pub const MAX_FIELD_BYTES: usize = 256;

/// Why a list of fields was refused, or why the object could not be cut.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldsError {
    /// No fields were named.
    #[error("no fields named: name at least one, such as \"metadata.labels\"")]
    Empty,
    /// More than [`MAX_FIELDS`] fields.
    #[error("{0} fields named, over the limit of {MAX_FIELDS}")]
    TooMany(usize),
    /// A list longer than [`Fields::MAX_LIST_BYTES`].
    #[error(
        "the field list is {0} bytes, over the limit of {max} ({MAX_FIELDS} paths of at most \
         {MAX_FIELD_BYTES} bytes)",
        max = Fields::MAX_LIST_BYTES
    )]
    TooLong(usize),
    /// A path that is empty, has an empty segment or is too long.
    #[error(
        "invalid field {0:?}: a field is a dotted path of names such as \"spec.nodeName\" \
         (at most {MAX_FIELD_BYTES} bytes)"
    )]
    Invalid(String),
    /// The cached object is not a JSON object (a host bug).
    #[error("the cached object is not a JSON object: {0}")]
    NotAnObject(String),
}

/// The fields to keep, as a tree of names.
#[derive(Debug, Default)]
pub struct Fields {
    children: BTreeMap<String, Fields>,
    /// The whole value at this place is kept.
    whole: bool,
}

impl Fields {
    /// The longest comma-separated list [`Fields::parse_list`] reads.
    pub const MAX_LIST_BYTES: usize = MAX_FIELDS * (MAX_FIELD_BYTES + 1);

    /// Parses dotted paths separated by commas, as `cache.get-fields` takes them.
    pub fn parse_list(list: &str) -> Result<Self, FieldsError> {
        if list.len() > Self::MAX_LIST_BYTES {
            return Err(FieldsError::TooLong(list.len()));
        }
        if list.is_empty() {
            return Err(FieldsError::Empty);
        }
        Self::parse(&list.split(',').collect::<Vec<_>>())
    }

    /// Parses dotted paths. A path that is a prefix of another keeps the whole value.
    pub fn parse<S: AsRef<str>>(paths: &[S]) -> Result<Self, FieldsError> {
        if paths.is_empty() {
            return Err(FieldsError::Empty);
        }
        if paths.len() > MAX_FIELDS {
            return Err(FieldsError::TooMany(paths.len()));
        }
        let mut root = Self::default();
        for path in paths {
            let path = path.as_ref();
            if path.is_empty() || path.len() > MAX_FIELD_BYTES || path.split('.').any(str::is_empty)
            {
                let shown: String = path.chars().take(64).collect();
                return Err(FieldsError::Invalid(shown));
            }
            let mut node = &mut root;
            for name in path.split('.') {
                node = node.children.entry(name.to_owned()).or_default();
            }
            node.whole = true;
        }
        Ok(root)
    }

    /// `object` reduced to these fields, as JSON text.
    pub fn cut(&self, object: &str) -> Result<String, FieldsError> {
        let mut de = serde_json::Deserializer::from_str(object);
        let picked = Pick(self)
            .deserialize(&mut de)
            .map_err(|e| FieldsError::NotAnObject(e.to_string()))?;
        match picked {
            Some(out @ Out::Object(_)) => {
                let mut text = String::with_capacity(256);
                out.write(&mut text);
                Ok(text)
            }
            _ => Err(FieldsError::NotAnObject("its root is not an object".into())),
        }
    }
}

/// What is kept of a value.
enum Out<'a> {
    Raw(&'a RawValue),
    Object(Vec<(Cow<'a, str>, Out<'a>)>),
    Array(Vec<Out<'a>>),
    Null,
}

impl Out<'_> {
    fn write(&self, text: &mut String) {
        match self {
            Out::Raw(raw) => text.push_str(raw.get()),
            Out::Null => text.push_str("null"),
            Out::Array(items) => {
                text.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    item.write(text);
                }
                text.push(']');
            }
            Out::Object(entries) => {
                text.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    // A key is a str, which always serializes.
                    text.push_str(&serde_json::to_string(key).unwrap_or_default());
                    text.push(':');
                    value.write(text);
                }
                text.push('}');
            }
        }
    }
}

/// Picks the fields of one node of the tree out of a value.
struct Pick<'t>(&'t Fields);

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Option<Out<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.0.whole {
            let raw: &'de RawValue = de::Deserialize::deserialize(d)?;
            return Ok(Some(Out::Raw(raw)));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Option<Out<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            match self.0.children.get(key.as_ref()) {
                Some(child) => {
                    if let Some(out) = map.next_value_seed(Pick(child))? {
                        entries.push((key, out));
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(Out::Object(entries)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Pick(self.0))? {
            items.push(item.unwrap_or(Out::Null));
        }
        Ok(Some(Out::Array(items)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An object key, borrowed from the text unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn cut(object: &Value, fields: &[&str]) -> Value {
        let text = Fields::parse(fields)
            .expect("fields")
            .cut(&object.to_string())
            .expect("cut");
        serde_json::from_str(&text).expect("the cut is JSON")
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "labels": {"app": "web", "a.b/c": "d"},
                         "annotations": {"big": "x"}, "managedFields": [{"manager": "m"}]},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "app", "image": "web:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "side:2"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        })
    }

    #[test]
    fn keeps_the_named_fields_at_their_place_and_nothing_else() {
        assert_eq!(
            cut(
                &pod(),
                &["metadata.labels", "spec.nodeName", "status.phase"]
            ),
            json!({"metadata": {"labels": {"app": "web", "a.b/c": "d"}},
                   "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
        );
    }

    #[test]
    fn a_path_through_an_array_applies_to_each_element() {
        assert_eq!(
            cut(&pod(), &["spec.containers.image", "spec.containers.name"]),
            json!({"spec": {"containers": [{"name": "app", "image": "web:1"},
                                           {"name": "side", "image": "side:2"}]}})
        );
    }

    #[test]
    fn missing_paths_and_paths_into_scalars_are_left_out() {
        assert_eq!(
            cut(
                &pod(),
                &["spec.nodeName.x", "spec.hostNetwork", "nope.deeper"]
            ),
            json!({"spec": {}})
        );
        assert_eq!(
            cut(&json!({"items": [1, {"a": 2}]}), &["items.a"]),
            json!({"items": [null, {"a": 2}]})
        );
    }

    #[test]
    fn a_prefix_keeps_the_whole_value_and_escaped_keys_survive() {
        assert_eq!(
            cut(&pod(), &["metadata", "metadata.labels"])["metadata"],
            pod()["metadata"]
        );
        let odd = json!({"we\"ird": {"k": 1}, "b": 2});
        assert_eq!(cut(&odd, &["we\"ird.k"]), json!({"we\"ird": {"k": 1}}));
    }

    #[test]
    fn bad_field_lists_are_refused_with_the_reason() {
        assert_eq!(
            Fields::parse::<&str>(&[]).expect_err("empty"),
            FieldsError::Empty
        );
        for bad in ["", "a..b", ".a", "a."] {
            let err = Fields::parse(&[bad]).expect_err("bad path");
            assert!(err.to_string().contains("dotted path"), "{bad}: {err}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("f{i}")).collect();
        assert_eq!(
            Fields::parse(&many).expect_err("too many"),
            FieldsError::TooMany(65)
        );
        assert_eq!(
            Fields::parse_list("metadata.labels,spec.nodeName")
                .expect("a list")
                .cut(&pod().to_string())
                .map(|t| serde_json::from_str::<Value>(&t).ok()),
            Ok(Some(
                json!({"metadata": {"labels": {"app": "web", "a.b/c": "d"}}, "spec": {"nodeName": "n1"}})
            ))
        );
        assert_eq!(
            Fields::parse_list("").expect_err("empty"),
            FieldsError::Empty
        );
        assert!(matches!(
            Fields::parse_list(&"a".repeat(Fields::MAX_LIST_BYTES + 1)),
            Err(FieldsError::TooLong(_))
        ));
        assert!(
            Fields::parse_list("a,,b").is_err(),
            "an empty path is refused"
        );
        let fields = Fields::parse(&["a"]).expect("fields");
        assert!(matches!(
            fields.cut("[1]"),
            Err(FieldsError::NotAnObject(_))
        ));
        assert!(matches!(
            fields.cut("{\"a\":"),
            Err(FieldsError::NotAnObject(_))
        ));
    }
}
