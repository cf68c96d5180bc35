//! PATCH in FusionAuth's three flavours, chosen by `Content-Type`. Each
//! works on the request envelope `{"messenger": {...}}` of the stored
//! messenger; the result is then read and checked exactly like a PUT body.
//!
//! - `application/json` (FusionAuth's original flavour): a deep merge where
//!   objects merge key by key, arrays are **appended** (FusionAuth's
//!   documented limitation), `messageTypes` is replaced, and `null` clears a
//!   value; inside `producer` and `data` a `null` removes the key.
//! - `application/merge-patch+json`: RFC 7396.
//! - `application/json-patch+json`: RFC 6902; paths start with `/messenger/`.
//!
//! `type` cannot change: the original flavour ignores it (as FusionAuth's
//! setter does); the RFC flavours that change it get `[invalid]messenger.type`.

use json_patch::PatchErrorKind;
use serde_json::{Map, Value};

use super::errors::Errors;
use super::model::{KAFKA, Messenger};

/// Which PATCH a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchFlavour {
    /// `application/json` (also assumed when no `Content-Type` is sent).
    Original,
    /// `application/merge-patch+json`, RFC 7396.
    MergePatch,
    /// `application/json-patch+json`, RFC 6902.
    JsonPatch,
}

impl PatchFlavour {
    /// The flavour for a `Content-Type` header value; another media type is
    /// `[PatchNotSupported]`.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Self, Errors> {
        let Some(content_type) = content_type else {
            return Ok(Self::Original);
        };
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(Self::Original),
            "application/merge-patch+json" => Ok(Self::MergePatch),
            "application/json-patch+json" => Ok(Self::JsonPatch),
            other => Err(Errors::one_general(
                "PatchNotSupported",
                format!(
                    "The Content-Type [{other}] is not supported for PATCH. Use application/json, \
                     application/merge-patch+json or application/json-patch+json."
                ),
            )),
        }
    }
}

/// Fields the server sets; a patch of them is ignored.
const SERVER_FIELDS: [&str; 5] = [
    "id",
    "insertInstant",
    "lastUpdateInstant",
    "transport",
    "type",
];

/// Applies `patch` to `current` and returns the patched envelope.
pub fn apply(flavour: PatchFlavour, current: &Messenger, patch: &Value) -> Result<Value, Errors> {
    let mut envelope = current.envelope();
    match flavour {
        PatchFlavour::Original => {
            let Some(patch) = patch.as_object() else {
                return Err(Errors::invalid_json(None, "expected a JSON object"));
            };
            match patch.get("messenger") {
                None => {}
                Some(Value::Object(changes)) => original_merge(&mut envelope["messenger"], changes),
                Some(Value::Null) => {
                    return Err(Errors::one_field(
                        "missing",
                        "messenger",
                        "You must specify the [messenger] property.",
                    ));
                }
                Some(_) => {
                    return Err(Errors::invalid_json(
                        Some("messenger"),
                        "expected an object",
                    ));
                }
            }
            return Ok(envelope);
        }
        PatchFlavour::MergePatch => json_patch::merge(&mut envelope, patch),
        PatchFlavour::JsonPatch => {
            let operations: json_patch::Patch =
                serde_json::from_value(patch.clone()).map_err(|e| {
                    Errors::invalid_json(None, &format!("not a JSON Patch document: {e}"))
                })?;
            if let Err(error) = json_patch::patch(&mut envelope, &operations) {
                return Err(match error.kind {
                    PatchErrorKind::TestFailed => Errors::one_general(
                        "JSONPatchTestFailed",
                        format!(
                            "The JSON Patch test operation at index [{}] failed for the path [{}].",
                            error.operation, error.path
                        ),
                    ),
                    kind => Errors::invalid_json(
                        None,
                        &format!(
                            "JSON Patch operation [{}] on [{}]: {kind}",
                            error.operation, error.path
                        ),
                    ),
                });
            }
        }
    }
    keep_type(&mut envelope)?;
    Ok(envelope)
}

/// After an RFC patch: a removed `type` stays Kafka; a changed one is refused.
fn keep_type(envelope: &mut Value) -> Result<(), Errors> {
    let Some(messenger) = envelope.get_mut("messenger").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    match messenger.get("type") {
        None | Some(Value::Null) => {
            messenger.insert("type".into(), Value::String(KAFKA.into()));
            Ok(())
        }
        Some(Value::String(kind)) if kind == KAFKA => Ok(()),
        Some(_) => Err(Errors::one_field(
            "invalid",
            "messenger.type",
            "The [messenger.type] of a messenger cannot be changed.",
        )),
    }
}

/// FusionAuth's original PATCH merge of `changes` into the stored messenger.
fn original_merge(messenger: &mut Value, changes: &Map<String, Value>) {
    let Some(messenger) = messenger.as_object_mut() else {
        return;
    };
    for (key, change) in changes {
        match (key.as_str(), change) {
            (server, _) if SERVER_FIELDS.contains(&server) => {}
            ("messageTypes", _) => {
                messenger.insert(key.clone(), change.clone());
            }
            ("producer" | "data", Value::Null) => {
                messenger.remove(key);
            }
            ("producer" | "data", Value::Object(entries)) => {
                let target = messenger
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                deep_merge(target, change);
                if let Some(map) = target.as_object_mut() {
                    for (entry, value) in entries {
                        if value.is_null() {
                            map.remove(entry);
                        }
                    }
                }
            }
            _ => match messenger.get_mut(key) {
                Some(target) if !change.is_null() => deep_merge(target, change),
                _ => {
                    messenger.insert(key.clone(), change.clone());
                }
            },
        }
    }
}

/// Objects merge key by key, arrays are appended, anything else replaces.
fn deep_merge(target: &mut Value, change: &Value) {
    match (target, change) {
        (Value::Object(target), Value::Object(change)) => {
            for (key, value) in change {
                match target.get_mut(key) {
                    Some(existing) if !value.is_null() => deep_merge(existing, value),
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(change)) => target.extend(change.iter().cloned()),
        (target, change) => *target = change.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn stored() -> Messenger {
        Messenger {
            id: Uuid::nil(),
            name: "m".into(),
            default_topic: "t".into(),
            producer: BTreeMap::from([
                ("acks".to_owned(), "1".to_owned()),
                ("bootstrap.servers".to_owned(), "k:9092".to_owned()),
            ]),
            data: json!({"tags": ["a"], "team": {"x": 1}})
                .as_object()
                .unwrap()
                .clone(),
            debug: false,
            insert_instant: 1,
            last_update_instant: 1,
        }
    }

    fn original(patch: Value) -> Value {
        apply(PatchFlavour::Original, &stored(), &patch).unwrap()["messenger"].clone()
    }

    #[test]
    fn original_flavour_merges_maps_appends_arrays_and_replaces_message_types() {
        let out = original(json!({"messenger": {"producer": {"linger.ms": "5"}}}));
        assert_eq!(
            out["producer"],
            json!({"acks": "1", "bootstrap.servers": "k:9092", "linger.ms": "5"})
        );
        let out = original(json!({"messenger": {"data": {"tags": ["b"], "team": {"y": 2}}}}));
        assert_eq!(
            out["data"],
            json!({"tags": ["a", "b"], "team": {"x": 1, "y": 2}})
        );
        let out = original(json!({"messenger": {"messageTypes": ["SMS"]}}));
        assert_eq!(out["messageTypes"], json!(["SMS"]));
        let out = original(json!({"messenger": {"debug": true}}));
        assert_eq!(out["debug"], true);
        assert_eq!(out["name"], "m");
    }

    #[test]
    fn original_flavour_null_removes_map_keys_and_ignores_server_fields() {
        let out = original(json!({"messenger": {"producer": {"acks": null}, "data": null}}));
        assert_eq!(out["producer"], json!({"bootstrap.servers": "k:9092"}));
        assert!(out.get("data").is_none());
        let out = original(json!({"messenger": {"type": "Twilio", "id": "x", "insertInstant": 9}}));
        assert_eq!(out["type"], "Kafka");
        assert_eq!(out["insertInstant"], 1);
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let patch = json!({"messenger": {"producer": {"acks": null}, "data": {"tags": ["z"]}}});
        let out = apply(PatchFlavour::MergePatch, &stored(), &patch).unwrap();
        assert_eq!(
            out["messenger"]["producer"],
            json!({"bootstrap.servers": "k:9092"})
        );
        assert_eq!(out["messenger"]["data"]["tags"], json!(["z"]));
    }

    #[test]
    fn json_patch_follows_rfc_6902_and_reports_failed_tests() {
        let ops = json!([{"op": "replace", "path": "/messenger/defaultTopic", "value": "t2"}]);
        let out = apply(PatchFlavour::JsonPatch, &stored(), &ops).unwrap();
        assert_eq!(out["messenger"]["defaultTopic"], "t2");
        let failing = json!([{"op": "test", "path": "/messenger/name", "value": "other"},
                             {"op": "replace", "path": "/messenger/name", "value": "x"}]);
        let errors = apply(PatchFlavour::JsonPatch, &stored(), &failing).unwrap_err();
        assert_eq!(errors.codes(), ["[JSONPatchTestFailed]"]);
        let bad_path = json!([{"op": "replace", "path": "/nope/x", "value": 1}]);
        let errors = apply(PatchFlavour::JsonPatch, &stored(), &bad_path).unwrap_err();
        assert_eq!(errors.codes(), ["[invalidJSON]"]);
        let not_ops = json!({"op": "add"});
        assert_eq!(
            apply(PatchFlavour::JsonPatch, &stored(), &not_ops)
                .unwrap_err()
                .codes(),
            ["[invalidJSON]"]
        );
    }

    #[test]
    fn rfc_flavours_cannot_change_the_type() {
        let ops = json!([{"op": "replace", "path": "/messenger/type", "value": "Twilio"}]);
        let errors = apply(PatchFlavour::JsonPatch, &stored(), &ops).unwrap_err();
        assert_eq!(errors.codes(), ["[invalid]messenger.type"]);
        let removed = json!({"messenger": {"type": null}});
        let out = apply(PatchFlavour::MergePatch, &stored(), &removed).unwrap();
        assert_eq!(out["messenger"]["type"], "Kafka");
    }

    #[test]
    fn the_flavour_comes_from_the_content_type() {
        let flavour = |ct| PatchFlavour::from_content_type(Some(ct));
        assert_eq!(
            flavour("application/json; charset=UTF-8").unwrap(),
            PatchFlavour::Original
        );
        assert_eq!(
            flavour("Application/Merge-Patch+JSON").unwrap(),
            PatchFlavour::MergePatch
        );
        assert_eq!(
            flavour("application/json-patch+json").unwrap(),
            PatchFlavour::JsonPatch
        );
        assert_eq!(
            PatchFlavour::from_content_type(None).unwrap(),
            PatchFlavour::Original
        );
        assert_eq!(
            flavour("text/plain").unwrap_err().codes(),
            ["[PatchNotSupported]"]
        );
    }
}
