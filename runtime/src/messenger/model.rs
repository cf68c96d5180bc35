//! The Kafka messenger object in FusionAuth's shape, and how a request body
//! becomes one.
//!
//! Reading a body has two steps, as in FusionAuth: [`Draft::read`] turns the
//! JSON into typed fields (a wrong JSON type is `[invalidJSON]`, and stops
//! there), then [`Draft::check`] applies the field rules and reports every
//! problem at once. Unknown properties are ignored, so newer official
//! clients that send fields we do not model keep working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::errors::Errors;

/// The only messenger type this server offers.
pub const KAFKA: &str = "Kafka";

/// What FusionAuth puts into `producer` when `bootstrap.servers` is absent
/// (overwriting the two timeouts if they were given).
pub const PRODUCER_DEFAULTS: [(&str, &str); 3] = [
    ("bootstrap.servers", "localhost:9092"),
    ("max.block.ms", "5000"),
    ("request.timeout.ms", "2000"),
];

/// A stored Kafka messenger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Messenger {
    /// Its id (lower-case canonical UUID on output).
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// The topic messages go to.
    pub default_topic: String,
    /// Kafka producer properties, as given (Java names included).
    pub producer: BTreeMap<String, String>,
    /// Free-form data kept with the messenger.
    pub data: Map<String, Value>,
    /// Whether every send writes a `Debug` event log.
    pub debug: bool,
    /// When it was created, epoch milliseconds.
    pub insert_instant: i64,
    /// When it last changed, epoch milliseconds.
    pub last_update_instant: i64,
}

impl Messenger {
    /// FusionAuth's JSON for this messenger, keys in alphabetical order as
    /// FusionAuth writes them.
    pub fn to_json(&self) -> Value {
        json!({
            "data": self.data,
            "debug": self.debug,
            "defaultTopic": self.default_topic,
            "id": self.id.hyphenated().to_string(),
            "insertInstant": self.insert_instant,
            "lastUpdateInstant": self.last_update_instant,
            "messageTypes": ["SMS"],
            "name": self.name,
            "producer": self.producer,
            "transport": "sms",
            "type": KAFKA,
        })
    }

    /// `{"messenger": {...}}`, the envelope PATCH works on.
    pub fn envelope(&self) -> Value {
        json!({ "messenger": self.to_json() })
    }
}

/// `messageTypes` as the request gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MessageTypes {
    Omitted,
    Null,
    Given(Vec<String>),
}

/// The fields a client may set, read from a request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    kind: Option<String>,
    name: Option<String>,
    default_topic: Option<String>,
    producer: Option<BTreeMap<String, String>>,
    data: Map<String, Value>,
    debug: bool,
    message_types: MessageTypes,
}

fn wrong_type(property: &str, expected: &str) -> Errors {
    Errors::invalid_json(Some(property), &format!("expected {expected}"))
}

fn optional_string(object: &Map<String, Value>, field: &str) -> Result<Option<String>, Errors> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(wrong_type(&format!("messenger.{field}"), "a string")),
    }
}

/// A producer map: strings kept, numbers and booleans stored as their text,
/// `null` entries dropped, anything else refused.
fn producer_map(value: &Value) -> Result<Option<BTreeMap<String, String>>, Errors> {
    let object = match value {
        Value::Null => return Ok(None),
        Value::Object(object) => object,
        _ => return Err(wrong_type("messenger.producer", "an object of strings")),
    };
    let mut map = BTreeMap::new();
    for (key, value) in object {
        let text = match value {
            Value::Null => continue,
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            _ => {
                return Err(wrong_type(
                    &format!("messenger.producer.{key}"),
                    "a string, number or boolean",
                ));
            }
        };
        map.insert(key.clone(), text);
    }
    Ok(Some(map))
}

/// Injects FusionAuth's defaults when `bootstrap.servers` is absent.
pub fn normalize_producer(producer: Option<BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let mut producer = producer.unwrap_or_default();
    if !producer.contains_key("bootstrap.servers") {
        for (key, value) in PRODUCER_DEFAULTS {
            producer.insert(key.to_owned(), value.to_owned());
        }
    }
    producer
}

fn is_blank(text: Option<&str>) -> bool {
    text.is_none_or(|t| t.trim().is_empty())
}

impl Draft {
    /// Reads `{"messenger": {...}}`. A missing `messenger` is
    /// `[missing]messenger`; a value of the wrong JSON type is `[invalidJSON]`
    /// naming the property; an unknown `type` is `[invalidJSON]` as in
    /// FusionAuth. Unknown properties are ignored.
    pub fn read(envelope: &Value) -> Result<Self, Errors> {
        let Some(envelope) = envelope.as_object() else {
            return Err(Errors::invalid_json(None, "expected a JSON object"));
        };
        let messenger = match envelope.get("messenger") {
            None | Some(Value::Null) => {
                return Err(Errors::one_field(
                    "missing",
                    "messenger",
                    "You must specify the [messenger] property.",
                ));
            }
            Some(Value::Object(object)) => object,
            Some(_) => return Err(wrong_type("messenger", "an object")),
        };
        let kind = optional_string(messenger, "type")?;
        if let Some(kind) = &kind
            && !["Generic", KAFKA, "Twilio"].contains(&kind.as_str())
        {
            return Err(Errors::invalid_json(
                Some("messenger.type"),
                &format!(
                    "Expected the type field to be one of [Generic, Kafka, Twilio], but found [{kind}]"
                ),
            ));
        }
        let data = match messenger.get("data") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(object)) => object.clone(),
            Some(_) => return Err(wrong_type("messenger.data", "an object")),
        };
        let debug = match messenger.get("debug") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(_) => return Err(wrong_type("messenger.debug", "a boolean")),
        };
        let message_types = match messenger.get("messageTypes") {
            None => MessageTypes::Omitted,
            Some(Value::Null) => MessageTypes::Null,
            Some(Value::Array(items)) => MessageTypes::Given(
                items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| wrong_type("messenger.messageTypes", "an array of strings"))?,
            ),
            Some(_) => return Err(wrong_type("messenger.messageTypes", "an array of strings")),
        };
        Ok(Self {
            kind,
            name: optional_string(messenger, "name")?,
            default_topic: optional_string(messenger, "defaultTopic")?,
            producer: producer_map(messenger.get("producer").unwrap_or(&Value::Null))?,
            data,
            debug,
            message_types,
        })
    }

    /// The producer map as given, if any.
    pub fn producer(&self) -> Option<&BTreeMap<String, String>> {
        self.producer.as_ref()
    }

    /// The name, when it is not blank (the duplicate-name check needs it).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref().filter(|n| !is_blank(Some(n)))
    }

    /// The field rules of a Kafka messenger; every problem is added to
    /// `errors`.
    pub fn check(&self, errors: &mut Errors) {
        match self.kind.as_deref() {
            Some(KAFKA) => {}
            None => errors.field(
                "blank",
                "messenger.type",
                "You must specify the [messenger.type] property. This server offers Kafka messengers.",
            ),
            Some(other) => errors.field(
                "invalid",
                "messenger.type",
                format!("The [messenger.type] property is [{other}]; this server offers Kafka messengers only."),
            ),
        }
        if is_blank(self.name.as_deref()) {
            errors.field(
                "blank",
                "messenger.name",
                "You must specify the [messenger.name] property.",
            );
        }
        if is_blank(self.default_topic.as_deref()) {
            errors.field(
                "blank",
                "messenger.defaultTopic",
                "You must specify the [messenger.defaultTopic] property.",
            );
        }
        let types_field = "messenger.messageTypes";
        match &self.message_types {
            MessageTypes::Omitted => {}
            MessageTypes::Null => errors.field(
                "empty",
                types_field,
                "You must specify at least one value for the [messenger.messageTypes] property.",
            ),
            MessageTypes::Given(types) => {
                if types.is_empty() {
                    errors.field(
                        "empty",
                        types_field,
                        "You must specify at least one value for the [messenger.messageTypes] property.",
                    );
                }
                if types.is_empty() || types.iter().any(|t| t != "SMS") {
                    errors.field(
                        "invalid",
                        types_field,
                        "A Kafka messenger supports only the [SMS] message type.",
                    );
                }
            }
        }
    }

    /// The messenger this draft describes, with the server's id and
    /// instants. Call after [`Draft::check`] found nothing.
    pub fn into_messenger(self, id: Uuid, insert_instant: i64, now: i64) -> Messenger {
        Messenger {
            id,
            name: self.name.unwrap_or_default(),
            default_topic: self.default_topic.unwrap_or_default(),
            producer: normalize_producer(self.producer),
            data: self.data,
            debug: self.debug,
            insert_instant,
            last_update_instant: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(messenger: Value) -> Result<Draft, Errors> {
        Draft::read(&json!({ "messenger": messenger }))
    }

    fn codes(messenger: Value) -> Vec<String> {
        let mut errors = Errors::default();
        match draft(messenger) {
            Ok(draft) => draft.check(&mut errors),
            Err(found) => errors = found,
        }
        errors.codes().into_iter().map(str::to_owned).collect()
    }

    fn valid() -> Value {
        json!({"type": "Kafka", "name": "n", "defaultTopic": "t"})
    }

    #[test]
    fn producer_defaults_are_injected_only_without_bootstrap_servers() {
        let defaults: BTreeMap<String, String> = PRODUCER_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(normalize_producer(None), defaults);
        let given = BTreeMap::from([
            ("max.block.ms".to_owned(), "9".to_owned()),
            ("acks".to_owned(), "all".to_owned()),
        ]);
        let mut expected = defaults.clone();
        expected.insert("acks".into(), "all".into());
        assert_eq!(normalize_producer(Some(given)), expected);
        let own = BTreeMap::from([("bootstrap.servers".to_owned(), "k:9092".to_owned())]);
        assert_eq!(normalize_producer(Some(own.clone())), own);
    }

    #[test]
    fn producer_scalars_become_strings_and_nulls_are_dropped() {
        let mut body = valid();
        body["producer"] = json!({"bootstrap.servers": "k:1", "linger.ms": 5, "enable.idempotence": true, "acks": null});
        let messenger = draft(body).unwrap().into_messenger(Uuid::nil(), 1, 1);
        assert_eq!(
            messenger.producer,
            BTreeMap::from([
                ("bootstrap.servers".to_owned(), "k:1".to_owned()),
                ("enable.idempotence".to_owned(), "true".to_owned()),
                ("linger.ms".to_owned(), "5".to_owned()),
            ])
        );
        let mut nested = valid();
        nested["producer"] = json!({"acks": {"x": 1}});
        assert_eq!(codes(nested), ["[invalidJSON]"]);
    }

    #[test]
    fn message_types_follow_fusionauths_rules() {
        let with = |types: Value| {
            let mut body = valid();
            body["messageTypes"] = types;
            codes(body)
        };
        assert!(codes(valid()).is_empty());
        assert!(with(json!(["SMS"])).is_empty());
        assert!(with(json!(["SMS", "SMS"])).is_empty());
        assert_eq!(with(json!(["Voice"])), ["[invalid]messenger.messageTypes"]);
        assert_eq!(
            with(json!(["SMS", "Voice"])),
            ["[invalid]messenger.messageTypes"]
        );
        assert_eq!(
            with(json!([])),
            [
                "[empty]messenger.messageTypes",
                "[invalid]messenger.messageTypes"
            ]
        );
        assert_eq!(with(Value::Null), ["[empty]messenger.messageTypes"]);
    }

    #[test]
    fn types_other_than_kafka_are_refused() {
        let with = |kind: Value| {
            let mut body = valid();
            body["type"] = kind;
            codes(body)
        };
        assert_eq!(with(json!("kafka")), ["[invalidJSON]"]);
        assert_eq!(with(json!("Twilio")), ["[invalid]messenger.type"]);
        assert_eq!(with(Value::Null), ["[blank]messenger.type"]);
    }

    #[test]
    fn every_field_problem_is_reported_together() {
        assert_eq!(
            codes(json!({"type": "Kafka", "name": "  ", "messageTypes": []})),
            [
                "[blank]messenger.name",
                "[blank]messenger.defaultTopic",
                "[empty]messenger.messageTypes",
                "[invalid]messenger.messageTypes"
            ]
        );
        assert_eq!(
            Draft::read(&json!({"other": 1})).unwrap_err().codes(),
            ["[missing]messenger"]
        );
    }

    #[test]
    fn unknown_properties_are_ignored_and_output_is_fusionauths_shape() {
        let mut body = valid();
        body["futureField"] = json!({"x": 1});
        body["transport"] = json!("email");
        body["id"] = json!("3f0c2a0e-5b7e-4c1e-9c55-2d8f1a0b7e11");
        let id = Uuid::parse_str("8B277AE3-7B76-4E1E-BB07-7320046355BC").unwrap();
        let messenger = draft(body).unwrap().into_messenger(id, 7, 7);
        let out = messenger.to_json();
        assert_eq!(out["id"], "8b277ae3-7b76-4e1e-bb07-7320046355bc");
        assert_eq!(out["transport"], "sms");
        assert_eq!(out["type"], "Kafka");
        assert_eq!(out["messageTypes"], json!(["SMS"]));
        assert_eq!(out["data"], json!({}));
        assert_eq!(out["debug"], false);
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "FusionAuth writes keys in alphabetical order");
    }
}
