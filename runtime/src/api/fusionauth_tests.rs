//! FusionAuth compatibility: one test per item of the checklist in
//! `shared/research/fusionauth-messenger.md` §8 that applies (items 6 and 45
//! concern tenants, which wasmsink does not model; 49 is replaced by the
//! `send` extension, tested end to end against tansu), in FusionAuth's exact
//! JSON shapes. Every 400 body seen is checked against items 46 and 47.

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::tests::Api;
use crate::config::ApiKey;

const SUPER: &str = "super-secret-key";
const ID: &str = "8b277ae3-7b76-4e1e-bb07-7320046355bc";

struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    /// 200 and the body as JSON.
    fn ok(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        self.json()
    }

    /// A status with an empty body.
    fn empty(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.text, "",
            "FusionAuth answers {status} with an empty body"
        );
    }

    /// 400 with a well-formed Errors body (items 46, 47); its codes.
    fn errors(&self) -> Vec<String> {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{}", self.text);
        let body = self.json();
        let object = body.as_object().expect("an object");
        assert!(!object.is_empty());
        let mut codes = Vec::new();
        for (section, value) in object {
            match section.as_str() {
                "fieldErrors" => {
                    for (field, errors) in value.as_object().expect("fieldErrors is an object") {
                        for error in errors.as_array().expect("an array per field") {
                            let code = error["code"].as_str().expect("a string code");
                            assert!(error["message"].is_string());
                            let (rule, rest) = code.split_once(']').expect("[rule]field");
                            assert!(
                                rule.starts_with('[')
                                    && rule[1..].chars().all(|c| c.is_ascii_alphabetic()),
                                "{code}"
                            );
                            assert_eq!(rest, field, "the field part of {code} equals its key");
                            assert!(
                                rest.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c)),
                                "{code}"
                            );
                            codes.push(code.to_owned());
                        }
                    }
                }
                "generalErrors" => {
                    for error in value.as_array().expect("generalErrors is an array") {
                        assert!(error["message"].is_string());
                        codes.push(error["code"].as_str().expect("a string code").to_owned());
                    }
                }
                other => panic!("unexpected key {other} in an Errors body"),
            }
        }
        codes
    }
}

async fn call(
    api: &Api,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = api.client.request(method, format!("{}{path}", api.base));
    if let Some(body) = body {
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        request = request.body(body.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status(),
        text: response.text().await.unwrap(),
    }
}

/// A request with the super key.
async fn fa(api: &Api, method: Method, path: &str, body: Option<Value>) -> Answer {
    call(api, method, path, body, &[("authorization", SUPER)]).await
}

async fn patch(api: &Api, id: &str, content_type: &str, body: Value) -> Answer {
    call(
        api,
        Method::PATCH,
        &format!("/api/messenger/{id}"),
        Some(body),
        &[("authorization", SUPER), ("content-type", content_type)],
    )
    .await
}

fn kafka(name: &str) -> Value {
    json!({"messenger": {"type": "Kafka", "name": name, "defaultTopic": "fa-sms",
        "producer": {"bootstrap.servers": "kafka-1:9092", "acks": "all"},
        "debug": true, "data": {"team": "identity"}}})
}

async fn started() -> Api {
    Api::start(vec![ApiKey::unrestricted(SUPER)], None).await
}

async fn create(api: &Api, name: &str) -> Value {
    fa(api, Method::POST, "/api/messenger", Some(kafka(name)))
        .await
        .ok()["messenger"]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_takes_only_a_permitted_raw_key_without_a_tenant_and_never_answers_403() {
    let limited = ApiKey {
        key: "reader".into(),
        label: "reader".into(),
        endpoints: vec!["/api/messenger".into()],
        methods: vec!["GET".into()],
        expires_at: None,
    };
    let elsewhere = ApiKey {
        key: "connect-only".into(),
        label: "connect-only".into(),
        endpoints: vec!["/connectors".into()],
        methods: Vec::new(),
        expires_at: None,
    };
    let expired = ApiKey {
        expires_at: Some(1_000),
        ..ApiKey::unrestricted("old")
    };
    let api = Api::start(
        vec![ApiKey::unrestricted(SUPER), limited, elsewhere, expired],
        None,
    )
    .await;
    let get = |headers: &'static [(&'static str, &'static str)]| {
        let api = &api;
        async move { call(api, Method::GET, "/api/messenger", None, headers).await }
    };
    // 1, 2: no key, an unknown key.
    get(&[]).await.empty(StatusCode::UNAUTHORIZED);
    get(&[("authorization", "nope")])
        .await
        .empty(StatusCode::UNAUTHORIZED);
    // 3: Bearer and Basic are not FusionAuth's scheme.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("apikey:{SUPER}"))
    );
    call(
        &api,
        Method::GET,
        "/api/messenger",
        None,
        &[("authorization", &format!("Bearer {SUPER}"))],
    )
    .await
    .empty(StatusCode::UNAUTHORIZED);
    call(
        &api,
        Method::GET,
        "/api/messenger",
        None,
        &[("authorization", &basic)],
    )
    .await
    .empty(StatusCode::UNAUTHORIZED);
    // 4: a key limited to other endpoints or other methods.
    get(&[("authorization", "connect-only")])
        .await
        .empty(StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&[("authorization", "reader")]).await.ok(),
        json!({"messengers": []})
    );
    call(
        &api,
        Method::POST,
        "/api/messenger",
        Some(kafka("m")),
        &[("authorization", "reader")],
    )
    .await
    .empty(StatusCode::UNAUTHORIZED);
    // 5: the super key may call every method.
    let id = create(&api, "m").await["id"].as_str().unwrap().to_owned();
    for method in [Method::GET, Method::PUT, Method::PATCH] {
        let body = (method != Method::GET).then(|| kafka("m"));
        fa(&api, method, &format!("/api/messenger/{id}"), body)
            .await
            .ok();
    }
    fa(&api, Method::DELETE, &format!("/api/messenger/{id}"), None)
        .await
        .empty(StatusCode::OK);
    // 7: a tenant named by a valid UUID is refused; another value is ignored.
    get(&[("authorization", SUPER), ("x-fusionauth-tenantid", ID)])
        .await
        .empty(StatusCode::UNAUTHORIZED);
    get(&[
        ("authorization", SUPER),
        ("x-fusionauth-tenantid", "not-a-uuid"),
    ])
    .await
    .ok();
    // 8: an expired key.
    get(&[("authorization", "old")])
        .await
        .empty(StatusCode::UNAUTHORIZED);
    // 9: reader's refused PUT on an id is 401 too, never 403.
    let put = call(
        &api,
        Method::PUT,
        &format!("/api/messenger/{ID}"),
        Some(kafka("x")),
        &[("authorization", "reader")],
    )
    .await;
    put.empty(StatusCode::UNAUTHORIZED);
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_answers_in_fusionauths_shape_with_server_set_fields() {
    let api = started().await;
    // 10, 24, 25: a new lower-case UUID, equal instants near now, Kafka and sms whatever was sent.
    let mut body = kafka("sms-to-kafka");
    body["messenger"]["transport"] = json!("email");
    body["messenger"]["insertInstant"] = json!(1);
    body["messenger"]["unknownField"] = json!("ignored");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let messenger = fa(&api, Method::POST, "/api/messenger", Some(body))
        .await
        .ok()["messenger"]
        .clone();
    let id = messenger["id"].as_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(id).unwrap().hyphenated().to_string(),
        id
    );
    let inserted = messenger["insertInstant"].as_i64().unwrap();
    assert_eq!(messenger["lastUpdateInstant"], inserted);
    assert!(
        (before..before + 5_000).contains(&inserted),
        "{inserted} vs {before}"
    );
    assert_eq!(
        messenger,
        json!({"data": {"team": "identity"}, "debug": true, "defaultTopic": "fa-sms", "id": id,
            "insertInstant": inserted, "lastUpdateInstant": inserted, "messageTypes": ["SMS"],
            "name": "sms-to-kafka", "producer": {"acks": "all", "bootstrap.servers": "kafka-1:9092"},
            "transport": "sms", "type": "Kafka"})
    );
    // 11: the path id wins over the body's.
    let mut body = kafka("second");
    body["messenger"]["id"] = json!("3f0c2a0e-5b7e-4c1e-9c55-2d8f1a0b7e11");
    let upper = ID.to_ascii_uppercase();
    let second = fa(
        &api,
        Method::POST,
        &format!("/api/messenger/{upper}"),
        Some(body),
    )
    .await
    .ok();
    assert_eq!(second["messenger"]["id"], ID);
    // 12: the same id again.
    let again = fa(
        &api,
        Method::POST,
        &format!("/api/messenger/{ID}"),
        Some(kafka("third")),
    )
    .await;
    assert_eq!(again.errors(), ["[duplicate]messengerId"]);
    // 13: a name in use.
    let twin = fa(&api, Method::POST, "/api/messenger", Some(kafka("second"))).await;
    assert_eq!(twin.errors(), ["[duplicate]messenger.name"]);
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_reports_every_rule_with_fusionauths_codes() {
    let api = started().await;
    let post = |body: Value| {
        let api = &api;
        async move { fa(api, Method::POST, "/api/messenger", Some(body)).await }
    };
    let with = |field: &str, value: Value| {
        let mut body = kafka("n");
        if value.is_null() && field != "messageTypes" {
            body["messenger"].as_object_mut().unwrap().remove(field);
        } else {
            body["messenger"][field] = value;
        }
        body
    };
    // 14: missing, empty or blank names, without a duplicate error.
    for name in [Value::Null, json!(""), json!("   ")] {
        assert_eq!(
            post(with("name", name)).await.errors(),
            ["[blank]messenger.name"]
        );
    }
    // 15: a missing or blank topic.
    for topic in [Value::Null, json!(" ")] {
        assert_eq!(
            post(with("defaultTopic", topic)).await.errors(),
            ["[blank]messenger.defaultTopic"]
        );
    }
    // 19: message types.
    assert_eq!(
        post(with("messageTypes", json!(["Voice"]))).await.errors(),
        ["[invalid]messenger.messageTypes"]
    );
    assert_eq!(
        post(with("messageTypes", json!(["SMS", "Voice"])))
            .await
            .errors(),
        ["[invalid]messenger.messageTypes"]
    );
    assert_eq!(
        post(with("messageTypes", json!([]))).await.errors(),
        [
            "[empty]messenger.messageTypes",
            "[invalid]messenger.messageTypes"
        ]
    );
    assert_eq!(
        post(with("messageTypes", Value::Null)).await.errors(),
        ["[empty]messenger.messageTypes"]
    );
    // 20: an unknown type.
    assert_eq!(
        post(with("type", json!("kafka"))).await.errors(),
        ["[invalidJSON]"]
    );
    // 21: no messenger.
    assert_eq!(
        post(json!({"other": {}})).await.errors(),
        ["[missing]messenger"]
    );
    // 22: malformed JSON.
    let request = api
        .client
        .post(format!("{}/api/messenger", api.base))
        .header("authorization", SUPER)
        .header("content-type", "application/json")
        .body("{\"messenger\": {");
    let response = request.send().await.unwrap();
    let answer = Answer {
        status: response.status(),
        text: response.text().await.unwrap(),
    };
    assert_eq!(answer.errors(), ["[invalidJSON]"]);
    // 23: every problem at once.
    let both = post(json!({"messenger": {"type": "Kafka", "name": ""}}))
        .await
        .errors();
    assert_eq!(
        both,
        ["[blank]messenger.name", "[blank]messenger.defaultTopic"]
    );
    // A producer value of the wrong JSON type.
    assert_eq!(
        post(with("producer", json!({"acks": ["all"]})))
            .await
            .errors(),
        ["[invalidJSON]"]
    );
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn producer_defaults_are_injected_and_keys_come_back_sorted() {
    let api = started().await;
    let post = |producer: Option<Value>, name: &'static str| {
        let api = &api;
        async move {
            let mut body =
                json!({"messenger": {"type": "Kafka", "name": name, "defaultTopic": "t"}});
            if let Some(producer) = producer {
                body["messenger"]["producer"] = producer;
            }
            fa(api, Method::POST, "/api/messenger", Some(body))
                .await
                .ok()["messenger"]["producer"]
                .clone()
        }
    };
    let defaults = json!({"bootstrap.servers": "localhost:9092", "max.block.ms": "5000", "request.timeout.ms": "2000"});
    // 16
    assert_eq!(post(None, "a").await, defaults);
    // 17: defaults overwrite the timeouts when bootstrap.servers is absent; otherwise the map is kept.
    let mut expected = defaults.clone();
    expected["linger.ms"] = json!("5");
    assert_eq!(
        post(Some(json!({"max.block.ms": "1", "linger.ms": 5})), "b").await,
        expected
    );
    let own = json!({"socket.timeout.ms": "1000", "bootstrap.servers": "k:1", "acks": "all", "max.block.ms": "9"});
    let stored = post(Some(own.clone()), "c").await;
    assert_eq!(stored, own);
    // 18: sorted keys.
    let text = serde_json::to_string(&stored).unwrap();
    let keys: Vec<usize> = [
        "acks",
        "bootstrap.servers",
        "max.block.ms",
        "socket.timeout.ms",
    ]
    .iter()
    .map(|k| text.find(&format!("\"{k}\"")).unwrap())
    .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn read_lists_every_messenger_by_name_and_finds_one() {
    let api = started().await;
    // 26: empty first.
    assert_eq!(
        fa(&api, Method::GET, "/api/messenger", None).await.ok(),
        json!({"messengers": []})
    );
    let b = create(&api, "b").await;
    let a = create(&api, "a").await;
    assert_eq!(
        fa(&api, Method::GET, "/api/messenger", None).await.ok(),
        json!({"messengers": [a, b]})
    );
    // 27
    let one = fa(
        &api,
        Method::GET,
        &format!("/api/messenger/{}", a["id"].as_str().unwrap()),
        None,
    )
    .await
    .ok();
    assert_eq!(one, json!({"messenger": a}));
    // 28
    fa(&api, Method::GET, &format!("/api/messenger/{ID}"), None)
        .await
        .empty(StatusCode::NOT_FOUND);
    // 29
    let bad = fa(&api, Method::GET, "/api/messenger/not-a-uuid", None).await;
    assert_eq!(bad.errors(), ["[couldNotConvert]messengerId"]);
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn put_replaces_and_resets_omitted_fields() {
    let api = started().await;
    let created = create(&api, "m").await;
    let id = created["id"].as_str().unwrap();
    create(&api, "other").await;
    // 30, 31: a full body replaces; omitted debug, data, producer return to defaults.
    let put = fa(
        &api,
        Method::PUT,
        &format!("/api/messenger/{id}"),
        Some(json!({"messenger": {"type": "Kafka", "name": "m", "defaultTopic": "t2"}})),
    )
    .await
    .ok()["messenger"]
        .clone();
    assert_eq!(put["insertInstant"], created["insertInstant"]);
    assert!(put["lastUpdateInstant"].as_i64() > created["lastUpdateInstant"].as_i64());
    assert_eq!(put["debug"], false);
    assert_eq!(put["data"], json!({}));
    assert_eq!(put["producer"]["bootstrap.servers"], "localhost:9092");
    assert_eq!(put["defaultTopic"], "t2");
    // 32: unknown id, valid body.
    fa(
        &api,
        Method::PUT,
        &format!("/api/messenger/{ID}"),
        Some(kafka("x")),
    )
    .await
    .empty(StatusCode::NOT_FOUND);
    // 33: renaming to another's name; keeping its own is fine (above).
    let rename = fa(
        &api,
        Method::PUT,
        &format!("/api/messenger/{id}"),
        Some(kafka("other")),
    )
    .await;
    assert_eq!(rename.errors(), ["[duplicate]messenger.name"]);
    // 42: PUT cannot change the type.
    let mut twilio = kafka("m");
    twilio["messenger"]["type"] = json!("Twilio");
    assert_eq!(
        fa(
            &api,
            Method::PUT,
            &format!("/api/messenger/{id}"),
            Some(twilio)
        )
        .await
        .errors(),
        ["[invalid]messenger.type"]
    );
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_in_all_three_flavours() {
    let api = started().await;
    let created = create(&api, "m").await;
    let id = created["id"].as_str().unwrap();
    create(&api, "other").await;
    let get = || {
        let api = &api;
        async move {
            fa(api, Method::GET, &format!("/api/messenger/{id}"), None)
                .await
                .ok()["messenger"]
                .clone()
        }
    };
    // 34: the original flavour changes only what it names (and lastUpdateInstant).
    let patched = patch(
        &api,
        id,
        "application/json",
        json!({"messenger": {"debug": false}}),
    )
    .await
    .ok()["messenger"]
        .clone();
    let mut expected = created.clone();
    expected["debug"] = json!(false);
    expected["lastUpdateInstant"] = patched["lastUpdateInstant"].clone();
    assert_eq!(patched, expected);
    assert!(patched["lastUpdateInstant"].as_i64() > created["lastUpdateInstant"].as_i64());
    // 35: a new producer key keeps the others.
    let patched = patch(
        &api,
        id,
        "application/json",
        json!({"messenger": {"producer": {"linger.ms": "5"}}}),
    )
    .await
    .ok();
    assert_eq!(
        patched["messenger"]["producer"],
        json!({"acks": "all", "bootstrap.servers": "kafka-1:9092", "linger.ms": "5"})
    );
    // 36: arrays append (in data); messageTypes is replaced.
    patch(
        &api,
        id,
        "application/json",
        json!({"messenger": {"data": {"tags": ["a"]}}}),
    )
    .await
    .ok();
    let patched = patch(
        &api,
        id,
        "application/json",
        json!({"messenger": {"data": {"tags": ["b"]}, "messageTypes": ["SMS"]}}),
    )
    .await
    .ok();
    assert_eq!(patched["messenger"]["data"]["tags"], json!(["a", "b"]));
    assert_eq!(patched["messenger"]["messageTypes"], json!(["SMS"]));
    // 37: merge patch removes a key with null.
    let patched = patch(
        &api,
        id,
        "application/merge-patch+json",
        json!({"messenger": {"producer": {"acks": null}}}),
    )
    .await
    .ok();
    assert!(patched["messenger"]["producer"].get("acks").is_none());
    // 38: JSON patch.
    let ops = json!([{"op": "replace", "path": "/messenger/defaultTopic", "value": "t2"}]);
    assert_eq!(
        patch(&api, id, "application/json-patch+json", ops)
            .await
            .ok()["messenger"]["defaultTopic"],
        "t2"
    );
    // 39: a failed test op changes nothing.
    let before = get().await;
    let ops = json!([{"op": "replace", "path": "/messenger/defaultTopic", "value": "t3"},
                     {"op": "test", "path": "/messenger/name", "value": "not-m"}]);
    assert_eq!(
        patch(&api, id, "application/json-patch+json", ops)
            .await
            .errors(),
        ["[JSONPatchTestFailed]"]
    );
    assert_eq!(get().await, before);
    // 40: a patch that makes it invalid changes nothing, with PUT's codes.
    let blank = patch(
        &api,
        id,
        "application/merge-patch+json",
        json!({"messenger": {"defaultTopic": ""}}),
    )
    .await;
    assert_eq!(blank.errors(), ["[blank]messenger.defaultTopic"]);
    // 33 for PATCH.
    let rename = patch(
        &api,
        id,
        "application/json",
        json!({"messenger": {"name": "other"}}),
    )
    .await;
    assert_eq!(rename.errors(), ["[duplicate]messenger.name"]);
    assert_eq!(get().await, before);
    // 41
    patch(
        &api,
        ID,
        "application/json",
        json!({"messenger": {"debug": true}}),
    )
    .await
    .empty(StatusCode::NOT_FOUND);
    // 42: id, insertInstant and type stay.
    let patched = patch(
        &api,
        id,
        "application/json",
        json!({"messenger": {"id": ID, "insertInstant": 5, "type": "Twilio"}}),
    )
    .await
    .ok()["messenger"]
        .clone();
    assert_eq!(
        (&patched["id"], &patched["insertInstant"], &patched["type"]),
        (&created["id"], &created["insertInstant"], &json!("Kafka"))
    );
    let ops = json!([{"op": "replace", "path": "/messenger/type", "value": "Generic"}]);
    assert_eq!(
        patch(&api, id, "application/json-patch+json", ops)
            .await
            .errors(),
        ["[invalid]messenger.type"]
    );
    // Another media type.
    assert_eq!(
        patch(&api, id, "text/plain", json!({})).await.errors(),
        ["[PatchNotSupported]"]
    );
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_answers_200_empty_then_404() {
    let api = started().await;
    let id = create(&api, "m").await["id"].as_str().unwrap().to_owned();
    // 43
    fa(&api, Method::DELETE, &format!("/api/messenger/{id}"), None)
        .await
        .empty(StatusCode::OK);
    fa(&api, Method::GET, &format!("/api/messenger/{id}"), None)
        .await
        .empty(StatusCode::NOT_FOUND);
    // 44
    fa(&api, Method::DELETE, &format!("/api/messenger/{id}"), None)
        .await
        .empty(StatusCode::NOT_FOUND);
    let bad = fa(&api, Method::DELETE, "/api/messenger/123", None).await;
    assert_eq!(bad.errors(), ["[couldNotConvert]messengerId"]);
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sends_are_found_through_the_event_log_api() {
    let api = started().await;
    let body = json!({"messenger": {"type": "Kafka", "name": "down", "defaultTopic": "otp-topic",
        "producer": {"bootstrap.servers": "127.0.0.1:1", "max.block.ms": "300"}}});
    let id = fa(&api, Method::POST, "/api/messenger", Some(body))
        .await
        .ok()["messenger"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let send = fa(
        &api,
        Method::POST,
        &format!("/api/messenger/{id}/send"),
        Some(json!({"message": {"code": "123456"}})),
    )
    .await;
    assert_eq!(send.status, StatusCode::GATEWAY_TIMEOUT, "{}", send.text);
    let failure = send.json();
    assert_eq!(failure["generalErrors"][0]["code"], "[SendFailed]");
    let log_id = failure["generalErrors"][0]["data"]["eventLogId"]
        .as_i64()
        .unwrap();
    // 50: found by type and topic.
    let found = fa(
        &api,
        Method::POST,
        "/api/system/event-log/search",
        Some(json!({"search": {"type": "Error", "message": "*otp-topic*"}})),
    )
    .await
    .ok();
    assert_eq!(found["total"], 1);
    let entry = &found["eventLogs"][0];
    assert_eq!(entry["id"], log_id);
    assert_eq!(entry["type"], "Error");
    assert!(
        entry["message"]
            .as_str()
            .unwrap()
            .starts_with("Failed to send a message to topic [otp-topic]")
    );
    assert!(
        !entry["message"].as_str().unwrap().contains("123456"),
        "no payload in the log"
    );
    let one = fa(
        &api,
        Method::GET,
        &format!("/api/system/event-log/{log_id}"),
        None,
    )
    .await
    .ok();
    assert_eq!(one, json!({"eventLog": entry}));
    let by_query = fa(
        &api,
        Method::GET,
        "/api/system/event-log/search?type=Debug",
        None,
    )
    .await
    .ok();
    assert_eq!(by_query, json!({"eventLogs": [], "total": 0}));
    fa(&api, Method::GET, "/api/system/event-log/999999", None)
        .await
        .empty(StatusCode::NOT_FOUND);
    let bad = fa(
        &api,
        Method::POST,
        "/api/system/event-log/search",
        Some(json!({"search": {"type": "Warning", "orderBy": "user"}})),
    )
    .await;
    assert_eq!(
        bad.errors(),
        ["[invalid]search.type", "[invalid]search.orderBy"]
    );
    // The send extension's own 400s and 404.
    assert_eq!(
        fa(
            &api,
            Method::POST,
            &format!("/api/messenger/{id}/send"),
            Some(json!({"key": "k"}))
        )
        .await
        .errors(),
        ["[missing]message"]
    );
    fa(
        &api,
        Method::POST,
        &format!("/api/messenger/{ID}/send"),
        Some(json!({"message": 1})),
    )
    .await
    .empty(StatusCode::NOT_FOUND);
    api.shutdown().await;
}

/// FusionAuth answers a method an endpoint does not take with 405 and an
/// empty body, where Connect's endpoints answer with a JSON error.
#[tokio::test(flavor = "multi_thread")]
async fn an_unsupported_method_answers_405_with_an_empty_body() {
    let api = started().await;
    let id = create(&api, "m").await["id"].as_str().unwrap().to_owned();
    for (method, path) in [
        (Method::DELETE, "/api/messenger".to_owned()),
        (Method::PUT, "/api/messenger".to_owned()),
        (Method::PATCH, "/api/messenger".to_owned()),
        (Method::GET, format!("/api/messenger/{id}/send")),
    ] {
        fa(&api, method, &path, None)
            .await
            .empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    api.shutdown().await;
}
