//! `callback.request.headers`: a JSON object, or the legacy `name:value|name:value` form.

use reqwest::header::{HeaderName, HeaderValue};

/// Why a header configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderParseError {
    /// The text starts like JSON but is not a valid JSON object.
    #[error("not a valid JSON object: {0}")]
    InvalidJson(String),
    /// A JSON member's value is null, an object or an array.
    #[error("the value of header \"{0}\" must be a string, number or boolean")]
    UnsupportedValue(String),
    /// A legacy segment has no `:` between name and value.
    #[error("segment \"{0}\" is not of the form name:value")]
    MissingColon(String),
    /// A header name is empty or not an HTTP token.
    #[error("\"{0}\" is not a valid HTTP header name")]
    InvalidName(String),
    /// A header value holds a line break or another forbidden character.
    #[error("the value of header \"{0}\" holds a line break or another character HTTP forbids")]
    InvalidValue(String),
}

/// Parses a header configuration into (name, value) pairs in their written
/// order.
///
/// Text starting with `{` must be a JSON object whose members are strings,
/// numbers or booleans (`{"Content-Type":"application/json","apikey":"K"}`).
/// Anything else is the legacy form, split on the literal `separator`
/// (default `|`) and then on the *first* `:` of each segment, so values may
/// hold colons (`Authorization:Basic a:b`). Names and values are trimmed;
/// empty segments are skipped. Blank text means no headers.
pub fn parse_headers(
    text: &str,
    separator: &str,
) -> Result<Vec<(String, String)>, HeaderParseError> {
    let text = text.trim();
    let pairs = if text.is_empty() {
        Vec::new()
    } else if text.starts_with('{') {
        parse_json_object(text)?
    } else {
        parse_legacy(text, separator)?
    };
    for (name, value) in &pairs {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(HeaderParseError::InvalidName(name.clone()));
        }
        if HeaderValue::from_str(value).is_err() {
            return Err(HeaderParseError::InvalidValue(name.clone()));
        }
    }
    Ok(pairs)
}

fn parse_json_object(text: &str) -> Result<Vec<(String, String)>, HeaderParseError> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| HeaderParseError::InvalidJson(e.to_string()))?;
    object
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return Err(HeaderParseError::UnsupportedValue(name)),
            };
            Ok((name, value))
        })
        .collect()
}

fn parse_legacy(text: &str, separator: &str) -> Result<Vec<(String, String)>, HeaderParseError> {
    let separator = if separator.is_empty() { "|" } else { separator };
    text.split(separator)
        .map(str::trim)
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = segment
                .split_once(':')
                .ok_or_else(|| HeaderParseError::MissingColon(segment.to_owned()))?;
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn json_object_keeps_member_order_and_converts_scalars() {
        let parsed = parse_headers(
            r#"{"Content-Type":"application/json","apikey":"API_KEY","x-n":5,"x-b":true}"#,
            "|",
        )
        .unwrap();
        assert_eq!(
            parsed,
            pairs(&[
                ("Content-Type", "application/json"),
                ("apikey", "API_KEY"),
                ("x-n", "5"),
                ("x-b", "true")
            ])
        );
    }

    #[test]
    fn legacy_form_matches_the_reference_sample() {
        let parsed = parse_headers("Content-type:application/json|apikey:API_KEY", "|").unwrap();
        assert_eq!(
            parsed,
            pairs(&[("Content-type", "application/json"), ("apikey", "API_KEY")])
        );
    }

    #[test]
    fn legacy_values_keep_their_colons_and_are_trimmed() {
        let parsed = parse_headers("url: http://x:8080/a | Authorization:Basic a:b|", "|").unwrap();
        assert_eq!(
            parsed,
            pairs(&[("url", "http://x:8080/a"), ("Authorization", "Basic a:b")])
        );
    }

    #[test]
    fn custom_separator_is_literal_not_a_regex() {
        let parsed = parse_headers("a:1;;b:2", ";;").unwrap();
        assert_eq!(parsed, pairs(&[("a", "1"), ("b", "2")]));
        let dotted = parse_headers("a:1.b:2", ".").unwrap();
        assert_eq!(dotted, pairs(&[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn blank_means_no_headers() {
        assert_eq!(parse_headers("  ", "|").unwrap(), vec![]);
    }

    #[test]
    fn bad_inputs_are_refused_with_a_reason() {
        assert!(matches!(
            parse_headers(r#"{"a":"b""#, "|"),
            Err(HeaderParseError::InvalidJson(_))
        ));
        assert!(
            matches!(parse_headers(r#"{"a":null}"#, "|"), Err(HeaderParseError::UnsupportedValue(n)) if n == "a")
        );
        assert!(matches!(
            parse_headers(r#"{"a":{"b":1}}"#, "|"),
            Err(HeaderParseError::UnsupportedValue(_))
        ));
        assert!(matches!(
            parse_headers(r#"{"a":[1,2]}"#, "|"),
            Err(HeaderParseError::UnsupportedValue(_))
        ));
        assert!(
            matches!(parse_headers("apikey", "|"), Err(HeaderParseError::MissingColon(s)) if s == "apikey")
        );
        assert!(matches!(
            parse_headers("bad name:1", "|"),
            Err(HeaderParseError::InvalidName(_))
        ));
        assert!(matches!(
            parse_headers(":1", "|"),
            Err(HeaderParseError::InvalidName(_))
        ));
        assert!(
            matches!(parse_headers("{\"a\":\"x\\r\\ny: z\"}", "|"), Err(HeaderParseError::InvalidValue(n)) if n == "a")
        );
    }
}
