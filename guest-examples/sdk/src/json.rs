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

/// True when `bytes` are one valid JSON value (UTF-8, whitespace around it
/// allowed), checked without building it in memory.
pub fn is_json(bytes: &[u8]) -> bool {
    // serde_json skips over ignored strings without checking their UTF-8.
    std::str::from_utf8(bytes).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// Appends `bytes` to the JSON text `out`: as they are when they are valid
/// JSON, else as a JSON string (invalid UTF-8 replaced by U+FFFD). The text
/// [`value_or_string`] would give, except that valid JSON keeps its exact
/// spelling (number formats, whitespace, duplicate keys), at a fraction of
/// the cost: nothing is parsed into a [`Value`] or printed again.
///
/// ```
/// use wasmsink_guest::json::write_value_or_string;
///
/// let mut out = b"[".to_vec();
/// write_value_or_string(&mut out, br#"{"a": 1}"#);
/// out.push(b',');
/// write_value_or_string(&mut out, b"plain text");
/// out.push(b']');
/// assert_eq!(out, br#"[{"a": 1},"plain text"]"#);
/// ```
pub fn write_value_or_string(out: &mut Vec<u8>, bytes: &[u8]) {
    if is_json(bytes) {
        out.extend_from_slice(bytes);
    } else {
        let text = String::from_utf8_lossy(bytes);
        serde_json::to_writer(out, &text).expect("a string always serializes into a Vec");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_are_checked_then_kept_as_they_are() {
        let write = |bytes: &[u8]| {
            let mut out = Vec::new();
            write_value_or_string(&mut out, bytes);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(write(b" 1.0e2 "), " 1.0e2 ");
        assert_eq!(write(br#"{"a":1,"a":2}"#), r#"{"a":1,"a":2}"#);
        assert_eq!(write(b""), r#""""#);
        assert_eq!(write(b"{\"a\":1} trailing"), r#""{\"a\":1} trailing""#);
        assert_eq!(write(b"\"\xff\""), "\"\\\"\u{fffd}\\\"\"");
        assert_eq!(write(b"nul\x00l"), r#""nul\u0000l""#);
    }

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
