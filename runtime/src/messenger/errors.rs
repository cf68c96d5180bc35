//! FusionAuth's `Errors` object, the body of every 400 answer of the
//! FusionAuth-compatible endpoints:
//!
//! ```json
//! {"fieldErrors": {"messenger.name": [{"code": "[blank]messenger.name", "message": "..."}]},
//!  "generalErrors": [{"code": "[invalidJSON]", "message": "..."}]}
//! ```
//!
//! A field error's code is `[rule]field`; a general error's code is
//! `[rule]`. Empty sections are left out, and every problem of a request is
//! reported at once.

use serde::Serialize;
use serde_json::{Map, Value};

/// One error: a machine-readable code and a readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorEntry {
    /// `[rule]field` or `[rule]`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Extra facts (e.g. the id of the event log a failure wrote).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
}

/// Every problem found in one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// Problems with one field, keyed by its path (`messenger.name`) or URL
    /// parameter (`messengerId`), in the order they were found.
    #[serde(
        rename = "fieldErrors",
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "as_map"
    )]
    pub field_errors: Vec<(String, Vec<ErrorEntry>)>,
    /// Problems not tied to one field.
    #[serde(rename = "generalErrors", skip_serializing_if = "Vec::is_empty")]
    pub general_errors: Vec<ErrorEntry>,
}

fn as_map<S: serde::Serializer>(
    fields: &[(String, Vec<ErrorEntry>)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(fields.len()))?;
    for (field, entries) in fields {
        map.serialize_entry(field, entries)?;
    }
    map.end()
}

impl Errors {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.field_errors.is_empty() && self.general_errors.is_empty()
    }

    /// Adds `[rule]field` to `field`.
    pub fn field(&mut self, rule: &str, field: &str, message: impl Into<String>) {
        let entry = ErrorEntry {
            code: format!("[{rule}]{field}"),
            message: message.into(),
            data: None,
        };
        match self.field_errors.iter_mut().find(|(f, _)| f == field) {
            Some((_, entries)) => entries.push(entry),
            None => self.field_errors.push((field.to_owned(), vec![entry])),
        }
    }

    /// Adds the general error `[rule]`.
    pub fn general(&mut self, rule: &str, message: impl Into<String>) {
        self.general_errors.push(ErrorEntry {
            code: format!("[{rule}]"),
            message: message.into(),
            data: None,
        });
    }

    /// An object holding one general error.
    pub fn one_general(rule: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.general(rule, message);
        errors
    }

    /// An object holding one field error.
    pub fn one_field(rule: &str, field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.field(rule, field, message);
        errors
    }

    /// `[invalidJSON]`: the body is not the JSON expected; `property` names
    /// where, when known.
    pub fn invalid_json(property: Option<&str>, reason: &str) -> Self {
        let message = match property {
            Some(property) => format!(
                "Unable to parse JSON. The property [{property}] was invalid. The error was [{reason}]."
            ),
            None => format!("Unable to parse JSON. The error was [{reason}]."),
        };
        Self::one_general("invalidJSON", message)
    }

    /// The codes found, field errors first (for tests and logs).
    pub fn codes(&self) -> Vec<&str> {
        self.field_errors
            .iter()
            .flat_map(|(_, entries)| entries)
            .chain(&self.general_errors)
            .map(|e| e.code.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_sections_are_left_out_and_fields_keep_their_order() {
        let mut errors = Errors::default();
        errors.field(
            "blank",
            "messenger.name",
            "You must specify the [messenger.name] property.",
        );
        errors.field("blank", "messenger.defaultTopic", "t");
        errors.field("duplicate", "messenger.name", "n");
        assert_eq!(
            serde_json::to_value(&errors).unwrap(),
            json!({"fieldErrors": {
                "messenger.name": [
                    {"code": "[blank]messenger.name", "message": "You must specify the [messenger.name] property."},
                    {"code": "[duplicate]messenger.name", "message": "n"}],
                "messenger.defaultTopic": [{"code": "[blank]messenger.defaultTopic", "message": "t"}]}})
        );
        let text = serde_json::to_string(&errors).unwrap();
        assert!(
            text.find("messenger.name").unwrap() < text.find("messenger.defaultTopic").unwrap()
        );
        assert_eq!(
            serde_json::to_value(Errors::invalid_json(None, "EOF")).unwrap(),
            json!({"generalErrors": [{"code": "[invalidJSON]", "message": "Unable to parse JSON. The error was [EOF]."}]})
        );
    }
}
