//! JSON helpers (over [`serde_json`], which is re-exported).

pub use serde_json::{self, Map, Value, json};

/// Parses `bytes` as JSON when they are valid JSON, else returns them as a
/// JSON string (invalid UTF-8 replaced by U+FFFD).
///
/// Useful for envelopes whose payload may or may not be JSON:
///
/// ```
/// use wasmsink_guest::json::{json, value_or_string};
///
/// assert_eq!(value_or_string(br#"{"a":1}"#), json!({"a": 1}));
/// assert_eq!(value_or_string(b"plain text"), json!("plain text"));
/// ```
pub fn value_or_string(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_blank_text() {
        assert_eq!(value_or_string(b" 12 "), json!(12));
        assert_eq!(value_or_string(b""), json!(""));
        assert_eq!(
            value_or_string(b"{\"a\":1} trailing"),
            json!("{\"a\":1} trailing")
        );
    }
}
