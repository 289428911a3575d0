//! A YAML document as a tree of nodes that remember where they stand in the source.
//!
//! The playbook is not deserialized straight into typed structs: a typed deserializer stops at the
//! first mistake, while `validate` must report every mistake at once, each with its line, column
//! and a "did you mean" hint. So serde-saphyr reads the text into this small tree (every node
//! wrapped in a span), and `resolve` walks the tree, collecting errors as it goes.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A byte range of the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> Self {
        (span.offset, span.len).into()
    }
}

/// One node of the YAML tree, with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    /// A mapping keeps its order: resources are applied in the order they are written.
    Map(Vec<(Node, Node)>),
}

/// A node as YAML writes it: a mapping keeps its order (a resource's kind key stays first).
impl serde::Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match &self.value {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(n) => serializer.serialize_i64(*n),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::String(s) => serializer.serialize_str(s),
            Value::Seq(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                items.iter().try_for_each(|item| seq.serialize_element(item))?;
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                entries.iter().try_for_each(|(k, v)| map.serialize_entry(k, v))?;
                map.end()
            }
        }
    }
}

impl Node {
    /// Reads a YAML document. The error carries the location that the parser reported.
    pub fn parse(text: &str) -> Result<Node, serde_saphyr::Error> {
        let spanned: Spanned<Value> = serde_saphyr::from_str(text)?;
        let mut node = Node::from_spanned(spanned);
        node.keys_as_written(text);
        Ok(node)
    }

    /// The parser reads some plain scalars as YAML 1.1 does (`y` as true, `0644` as a number);
    /// a mapping key is always a name, so keys take the text as written.
    fn keys_as_written(&mut self, text: &str) {
        match &mut self.value {
            Value::Map(entries) => {
                for (key, value) in entries {
                    if !matches!(key.value, Value::String(_) | Value::Seq(_) | Value::Map(_)) {
                        key.value = Value::String(key.source(text).to_owned());
                    }
                    value.keys_as_written(text);
                }
            }
            Value::Seq(items) => items.iter_mut().for_each(|item| item.keys_as_written(text)),
            _ => {}
        }
    }

    /// The node's text exactly as written in the source.
    pub fn source<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.span.offset..self.span.offset + self.span.len).unwrap_or("")
    }

    fn from_spanned(spanned: Spanned<Value>) -> Node {
        let location = spanned.referenced;
        let span = location.span();
        let span = match (span.byte_offset(), span.byte_len()) {
            (Some(offset), Some(len)) => Span { offset: offset as usize, len: len as usize },
            _ => Span::default(),
        };
        Node { span, value: spanned.value }
    }

    /// A short name of the node's type, for "expected a string, found a list" errors.
    /// The node as JSON, with its YAML types (what `converge modules --output json` gives as a
    /// default, and what the schema tests validate). Keys become strings; a float that JSON
    /// cannot hold (NaN, infinity) becomes null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(n) => J::from(*n),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Value::String(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = match &k.value {
                            Value::String(s) => s.clone(),
                            other => format!("{other:?}"),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The first key of a mapping node.
    pub fn as_map_first_key(&self) -> Option<&str> {
        match &self.value {
            Value::Map(entries) => entries.first()?.0.as_str(),
            _ => None,
        }
    }

    /// Looks a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Serde needs a `Deserialize` for the value inside `Spanned`; children are read as
/// `Spanned<Value>` again so that every node keeps its own span.
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v).map(Value::Int).map_err(|_| E::custom("number too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(Node::from_spanned(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Spanned<Value>, Spanned<Value>>()? {
            entries.push((Node::from_spanned(k), Node::from_spanned(v)));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_the_source_text() {
        let text = "name: demo\nresources:\n  - file: /etc/motd\n    mode: 0644\n    content: |\n      hi\n";
        let root = Node::parse(text).unwrap();
        let resources = root.get("resources").unwrap();
        let Value::Seq(items) = &resources.value else { panic!("not a list") };
        let mode = items[0].get("mode").unwrap();
        assert_eq!(&text[mode.span.offset..mode.span.offset + mode.span.len], "0644");
        let file = items[0].get("file").unwrap();
        assert_eq!(&text[file.span.offset..file.span.offset + file.span.len], "/etc/motd");
        assert_eq!(mode.source(text), "0644");
        let key = Node::parse("y: 1\n").unwrap();
        assert!(key.get("y").is_some(), "a key is the text as written, not a YAML 1.1 boolean");
    }
}
