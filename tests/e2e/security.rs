//! What a REST caller cannot make wasmsink do, tried as an attacker with
//! network access to the API would: load native code (a marker library
//! whose constructor writes a file), read the host's environment or files,
//! reach cloud metadata or an address the operator refused, or find an
//! open API on a public address. Each test would pass against a wasmsink
//! that lets the probe through only if the probe failed for another reason,
//! so each also checks the harmless twin of its probe works.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Broker, PATIENCE, Receiver, Wasmsink, config, free_port};

async fn call(api: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    crate::support::call(api, method, path, body.map(|b| b.to_string()).as_deref()).await
}

/// Builds a shared library whose constructor writes `marker` when the
/// library is loaded, with the system C compiler.
fn marker_library(dir: &Path, name: &str, marker: &Path) -> PathBuf {
    let source = dir.join(format!("{name}.c"));
    let library = dir.join(format!("{name}.so"));
    std::fs::write(
        &source,
        format!(
            "#include <stdio.h>\n\
             __attribute__((constructor)) static void loaded(void) {{\n\
               FILE *f = fopen(\"{}\", \"w\");\n\
               if (f) {{ fputs(\"loaded\", f); fclose(f); }}\n\
             }}\n\
             int conf_init(void *conf, void **opaque, char *err, size_t size) {{ return 0; }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("the system C compiler `cc` is needed (Debian: apt-get install gcc; scripts/install-test-deps.sh)");
    assert!(status.success(), "cc failed to build {}", library.display());
    library
}

/// Proves a marker library works: loading it in this process writes its
/// marker. Without this, "no marker" could mean a broken library.
fn assert_marker_works(dir: &Path) {
    let marker = dir.join("control-marker");
    let library = marker_library(dir, "control", &marker);
    let path = std::ffi::CString::new(library.display().to_string()).unwrap();
    // SAFETY: dlopen of a library this test just built, whose only code is
    // a constructor writing a file.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
    assert!(!handle.is_null(), "the control library does not load");
    assert!(
        marker.exists(),
        "loading the control library wrote no marker"
    );
}

fn loaded_into(pid: u32, library: &Path) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .contains(&library.display().to_string())
}

fn rest_connector(topic: &str, url: &str, extra: Value) -> Value {
    let mut config = json!({"topics": topic, "callback.request.url": url,
                            "callback.request.headers": "{\"Content-Type\":\"application/json\"}"});
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    config
}

/// The problems of a 400, as text.
fn refused(status: StatusCode, body: &Value) -> String {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    body.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_rest_call_makes_librdkafka_load_a_library_even_with_every_override_allowed() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    let dir = tempfile::tempdir().unwrap();
    assert_marker_works(dir.path());
    let marker = dir.path().join("marker");
    let library = marker_library(dir.path(), "evil", &marker);
    let library = library.display().to_string();
    let receiver = Receiver::ok().await;
    let wasmsink = Wasmsink::start(
        dir.path(),
        &format!(
            "[server]\nclient_overrides = \"all\"\n{}",
            config(&broker, "")
        ),
    );
    wasmsink.wait_for_api().await;
    let api = wasmsink.api();
    for key in [
        "consumer.override.plugin.library.paths",
        "producer.override.plugin.library.paths",
        "consumer.override.ssl.engine.location",
        "consumer.override.ssl.providers",
    ] {
        let body = json!({"name": "evil", "config": rest_connector("t", &receiver.url("/"), json!({key: library,
            "errors.deadletterqueue.topic.name": "dlq"}))});
        let (status, answer) = call(api, Method::POST, "/connectors", Some(body)).await;
        let text = refused(status, &answer);
        assert!(text.contains(key) && text.contains("native code"), "{text}");
        let (status, answer) = call(
            api,
            Method::PUT,
            "/connector-plugins/HttpSinkConnector/config/validate",
            Some(rest_connector(
                "t",
                &receiver.url("/"),
                json!({key: library}),
            )),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(answer["error_count"].as_u64().unwrap() >= 1, "{answer}");
    }
    // A connector that exists may not be changed into one either.
    let (status, _) = call(
        api,
        Method::POST,
        "/connectors",
        Some(json!({"name": "ok", "config": rest_connector("t", &receiver.url("/"), json!({}))})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, answer) = call(
        api,
        Method::PATCH,
        "/connectors/ok/config",
        Some(json!({"consumer.override.plugin.library.paths": library})),
    )
    .await;
    refused(status, &answer);
    let (_, config) = call(api, Method::GET, "/connectors/ok/config", None).await;
    assert!(
        config
            .get("consumer.override.plugin.library.paths")
            .is_none(),
        "{config}"
    );
    let (_, names) = call(api, Method::GET, "/connectors", None).await;
    assert_eq!(names, json!(["ok"]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!marker.exists(), "the library was loaded");
    assert!(!loaded_into(wasmsink.pid(), Path::new(&library)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_messenger_producer_map_cannot_load_a_library_on_create_patch_or_send() {
    let broker = Broker::start();
    broker.create_topic("sms", 1);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let library = marker_library(dir.path(), "evil", &marker)
        .display()
        .to_string();
    let wasmsink = Wasmsink::start(dir.path(), &config(&broker, ""));
    wasmsink.wait_for_api().await;
    let api = wasmsink.api();
    let (status, answer) = call(
        api,
        Method::POST,
        "/api/messenger",
        Some(json!({"messenger": {"type": "Kafka", "name": "evil", "defaultTopic": "sms",
            "producer": {"bootstrap.servers": broker.bootstrap(), "plugin.library.paths": library}}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let error = &answer["fieldErrors"]["messenger.producer"][0];
    assert_eq!(error["code"], "[invalid]messenger.producer", "{answer}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("plugin.library.paths")
    );
    let (_, list) = call(api, Method::GET, "/api/messenger", None).await;
    assert_eq!(list["messengers"], json!([]));

    let (status, created) = call(
        api,
        Method::POST,
        "/api/messenger",
        Some(
            json!({"messenger": {"type": "Kafka", "name": "sms", "defaultTopic": "sms",
            "producer": {"bootstrap.servers": broker.bootstrap(), "max.block.ms": "10000"}}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["messenger"]["id"].as_str().unwrap().to_owned();
    for (content_type, body) in [
        (
            "application/json",
            json!({"messenger": {"producer": {"plugin.library.paths": library}}}),
        ),
        (
            "application/merge-patch+json",
            json!({"messenger": {"producer": {"ssl.engine.location": library}}}),
        ),
    ] {
        wasmsink::install_tls_provider();
        let response = reqwest::Client::new()
            .patch(format!("{api}/api/messenger/{id}"))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    let (status, sent) = call(
        api,
        Method::POST,
        &format!("/api/messenger/{id}/send"),
        Some(json!({"message": {"text": "hi"}})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the unchanged messenger still sends: {sent}"
    );
    let (_, stored) = call(api, Method::GET, &format!("/api/messenger/{id}"), None).await;
    assert!(
        stored["messenger"]["producer"]
            .get("plugin.library.paths")
            .is_none()
    );
    assert!(!marker.exists(), "the library was loaded");
    assert!(!loaded_into(wasmsink.pid(), Path::new(&library)));
}

#[tokio::test(flavor = "multi_thread")]
async fn kerberos_command_settings_are_refused_and_no_command_runs() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let receiver = Receiver::ok().await;
    let wasmsink = Wasmsink::start(
        dir.path(),
        &format!(
            "[server]\nclient_overrides = \"all\"\n{}",
            config(&broker, "")
        ),
    );
    wasmsink.wait_for_api().await;
    let touch = format!("touch {}", ran.display());
    let body = json!({"name": "krb", "config": rest_connector("t", &receiver.url("/"), json!({
        "consumer.override.security.protocol": "sasl_plaintext",
        "consumer.override.sasl.mechanism": "GSSAPI",
        "consumer.override.sasl.kerberos.kinit.cmd": touch,
        "consumer.override.sasl.kerberos.principal": format!("x;{touch}"),
    }))});
    let (status, answer) = call(wasmsink.api(), Method::POST, "/connectors", Some(body)).await;
    let text = refused(status, &answer);
    assert!(
        text.contains("sasl.kerberos.kinit.cmd") && text.contains("sasl.kerberos.principal"),
        "{text}"
    );
    assert!(
        !text.contains("consumer.override.security.protocol"),
        "allowed under \"all\": {text}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!ran.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_configs_read_only_the_secrets_the_operator_allows() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(
        secrets.join("partner.properties"),
        "apikey=file-secret-4711\n",
    )
    .unwrap();
    let receiver = Receiver::ok().await;
    let toml = format!(
        "[server.secrets]\nenv_allow = \"WASMSINK_SECRET_[A-Z_]+\"\nfile_dirs = [\"{}\"]\n{}",
        secrets.display(),
        config(&broker, "")
    );
    let wasmsink = Wasmsink::start_with_env(
        dir.path(),
        &toml,
        &[
            ("SECRET_TOKEN", "env-secret-0815"),
            ("WASMSINK_SECRET_PARTNER", "allowed-secret-42"),
        ],
    );
    wasmsink.wait_for_api().await;
    let api = wasmsink.api();
    let leaks = [
        r#"{"X-Env":"${env:SECRET_TOKEN}"}"#.to_owned(),
        r#"{"X-File":"${file:/etc/os-release:ID}"}"#.to_owned(),
        format!(
            r#"{{"X-Escape":"${{file:{}/../secrets/partner.properties:apikey}}"}}"#,
            secrets.join("sub").display()
        ),
        r#"{"X-Sub":"${env:XWASMSINK_SECRET_PARTNER}"}"#.to_owned(),
    ];
    for headers in &leaks {
        let body = json!({"name": "leak", "config": rest_connector("t", &receiver.url("/"),
            json!({"callback.request.headers": headers}))});
        let (status, answer) = call(api, Method::POST, "/connectors", Some(body)).await;
        let text = refused(status, &answer);
        assert!(text.contains("callback.request.headers"), "{text}");
        assert!(
            !text.contains("env-secret-0815") && !text.contains("file-secret-4711"),
            "{text}"
        );
    }
    // What the operator allows resolves, and is delivered where it is configured to go.
    let allowed = format!(
        r#"{{"Content-Type":"application/json","X-Env":"${{env:WASMSINK_SECRET_PARTNER}}","X-File":"${{file:{}:apikey}}"}}"#,
        secrets.join("partner.properties").display()
    );
    let body = json!({"name": "partner", "config": rest_connector("t", &receiver.url("/"),
        json!({"callback.request.headers": allowed}))});
    let (status, answer) = call(api, Method::POST, "/connectors", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert!(
        !answer.to_string().contains("allowed-secret-42"),
        "the reference is shown, not the value"
    );
    broker.produce("t", 0, None, Some(b"{}"), &[]).await;
    let requests = receiver.wait_for(1, PATIENCE).await;
    assert_eq!(requests[0].header("x-env"), Some("allowed-secret-42"));
    assert_eq!(requests[0].header("x-file"), Some("file-secret-4711"));
    for request in receiver.requests() {
        let seen = format!("{:?}", request.headers);
        assert!(
            !seen.contains("env-secret-0815"),
            "a refused secret was sent: {seen}"
        );
    }
    let log = wasmsink.log();
    for secret in ["env-secret-0815", "file-secret-4711", "allowed-secret-42"] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_never_reach_metadata_addresses_or_addresses_the_operator_refused() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok().await;
    let port = receiver.url("").rsplit(':').next().unwrap().to_owned();
    let toml = format!(
        "[server.egress]\ndeny_cidrs = [\"127.0.0.0/8\", \"::1/128\"]\n{}",
        config(&broker, "")
    );
    let wasmsink = Wasmsink::start(dir.path(), &toml);
    wasmsink.wait_for_api().await;
    let api = wasmsink.api();
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://0.0.0.0:80/",
        &format!("http://127.0.0.1:{port}/"),
    ] {
        let body = json!({"name": "ssrf", "config": rest_connector("t", url, json!({}))});
        let (status, answer) = call(api, Method::POST, "/connectors", Some(body)).await;
        let text = refused(status, &answer);
        assert!(
            text.contains("callback.request.url") && text.contains("egress"),
            "{url}: {text}"
        );
    }
    // A name is checked where it resolves: localhost is 127.0.0.1, which the operator refused.
    let body = json!({"name": "by-name", "config": rest_connector("t", &format!("http://localhost:{port}/hook"),
        json!({"request.retry.backoff.sec": "0.2", "retry.backoff.sec": "0.2"}))});
    let (status, answer) = call(api, Method::POST, "/connectors", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    broker.produce("t", 0, None, Some(b"{}"), &[]).await;
    let trace = crate::support::wait_for_failed(api, "by-name").await;
    assert!(trace.contains("egress policy"), "{trace}");
    assert!(
        receiver.requests().is_empty(),
        "the refused address was called"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keyless_api_refuses_a_public_address_and_foreign_hosts() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let public = format!("0.0.0.0:{}", free_port());
    let mut open = Wasmsink::start_with_env(
        dir.path(),
        &config(&broker, ""),
        &[("WASMSINK_LISTEN", &public)],
    );
    let status = open.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(2), "{}", open.log());
    assert!(open.log().contains("without an API key"), "{}", open.log());

    // The explicit opt-out starts, and so does a keyed API.
    let opted = tempfile::tempdir().unwrap();
    let opted_out = Wasmsink::start_with_env(
        opted.path(),
        &format!("[server]\nauth = \"none\"\n{}", config(&broker, "")),
        &[("WASMSINK_LISTEN", &format!("0.0.0.0:{}", free_port()))],
    );
    opted_out.wait_for_api().await;
    let keyed_dir = tempfile::tempdir().unwrap();
    let keyed = Wasmsink::start_with_env(
        keyed_dir.path(),
        &config(&broker, ""),
        &[
            ("WASMSINK_LISTEN", &format!("0.0.0.0:{}", free_port())),
            ("WASMSINK_API_KEYS", "k-1"),
        ],
    );
    keyed.wait_for_api().await;

    // On loopback without keys, a page on another site cannot reach the API.
    let local_dir = tempfile::tempdir().unwrap();
    let local = Wasmsink::start(local_dir.path(), &config(&broker, ""));
    local.wait_for_api().await;
    wasmsink::install_tls_provider();
    let client = reqwest::Client::new();
    let get = |host: Option<&'static str>, origin: Option<&'static str>| {
        let mut request = client.get(format!("{}/connectors", local.api()));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(get(None, None).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        get(Some("localhost:8083"), None).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get(Some("evil.example"), None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(None, Some("http://evil.example"))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(None, Some("null")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(None, Some("http://localhost:3000"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_are_audited_with_key_and_address_and_failed_keys_are_rate_limited() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok().await;
    let toml = format!(
        "[server]\nauth_failures_per_minute = 3\n[[server.api_keys]]\nkey = \"admin-key-123\"\nlabel = \"ops-admin\"\n{}",
        config(&broker, "")
    );
    let wasmsink = Wasmsink::start(dir.path(), &toml);
    wasmsink.wait_for_api().await;
    let api = wasmsink.api();
    wasmsink::install_tls_provider();
    let client = reqwest::Client::new();
    let send = |method: Method, path: &str, key: &str, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{api}{path}"))
            .header("authorization", key);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        request.send()
    };
    let create = json!({"name": "audited", "config": rest_connector("t", &receiver.url("/hook"),
        json!({"callback.request.headers": "{\"Content-Type\":\"application/json\",\"apikey\":\"literal-value-77\"}"}))});
    let response = send(Method::POST, "/connectors", "admin-key-123", Some(create))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = send(
        Method::PUT,
        "/connectors/audited/pause",
        "admin-key-123",
        None,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let search: Value = serde_json::from_str(
        &send(
            Method::GET,
            "/api/system/event-log/search?message=Audit*&numberOfResults=50",
            "admin-key-123",
            None,
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap(),
    )
    .unwrap();
    let messages: Vec<&str> = search["eventLogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    let created = messages
        .iter()
        .find(|m| m.contains("POST /connectors"))
        .unwrap_or_else(|| panic!("no audit entry for the create: {messages:?}"));
    assert!(
        created.contains("[ops-admin]") && created.contains("127.0.0.1"),
        "{created}"
    );
    assert!(
        created.contains("callback.request.headers")
            && created.contains("callback host: 127.0.0.1"),
        "{created}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("PUT /connectors/audited/pause")),
        "{messages:?}"
    );
    let all = search.to_string();
    assert!(
        !all.contains("literal-value-77") && !all.contains("admin-key-123"),
        "{all}"
    );

    for _ in 0..3 {
        let response = send(Method::GET, "/connectors", "wrong", None)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = send(Method::GET, "/connectors", "admin-key-123", None)
        .await
        .unwrap();
    assert_eq!(
        limited.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right key, once limited"
    );
    assert!(limited.headers().contains_key("retry-after"));
    assert!(!wasmsink.log().contains("admin-key-123"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_guests_load_only_from_the_operators_directory() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    let dir = tempfile::tempdir().unwrap();
    let guests = dir.path().join("guests");
    std::fs::create_dir(&guests).unwrap();
    let inside = guests.join("envelope.wasm");
    std::fs::copy(wasmsink_guest_artifacts::JSON_ENVELOPE, &inside).unwrap();
    let outside = dir.path().join("outside.wasm");
    std::fs::copy(wasmsink_guest_artifacts::JSON_ENVELOPE, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, guests.join("link.wasm")).unwrap();
    let receiver = Receiver::ok().await;
    let toml = format!(
        "[server.guests]\ndirs = [\"{}\"]\n{}",
        guests.display(),
        config(&broker, "")
    );
    let wasmsink = Wasmsink::start(dir.path(), &toml);
    wasmsink.wait_for_api().await;
    let api = wasmsink.api();
    for (path, expected) in [
        (outside.display().to_string(), StatusCode::BAD_REQUEST),
        (
            guests.join("link.wasm").display().to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{}/../outside.wasm", guests.display()),
            StatusCode::BAD_REQUEST,
        ),
        ("/etc/passwd.wasm".to_owned(), StatusCode::BAD_REQUEST),
        (inside.display().to_string(), StatusCode::CREATED),
    ] {
        let body = json!({"name": "g", "config": rest_connector("t", &receiver.url("/"), json!({"guest.path": path}))});
        let (status, answer) = call(api, Method::POST, "/connectors", Some(body)).await;
        assert_eq!(status, expected, "{path}: {answer}");
        if expected == StatusCode::BAD_REQUEST {
            assert!(
                answer.to_string().contains("server.guests.dirs"),
                "{answer}"
            );
        }
    }
}

/// A CA, a server certificate for localhost and 127.0.0.1, and a client
/// certificate, as PEM files in `dir`; returns (CA PEM, client identity PEM).
fn pki(dir: &Path) -> (String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        (
            params.signed_by(&key, &issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert).unwrap();
    std::fs::write(dir.join("server.key"), server_key).unwrap();
    (ca_pem, format!("{client_cert}{client_key}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_serves_https_and_with_a_client_ca_only_to_clients_with_a_certificate() {
    wasmsink::install_tls_provider();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (ca, identity) = pki(dir.path());
    let tls = format!(
        "[server.tls]\ncert = \"{0}/server.pem\"\nkey = \"{0}/server.key\"\nclient_ca = \"{0}/ca.pem\"\n",
        dir.path().display()
    );
    let port = free_port();
    let wasmsink = Wasmsink::start_with_env(
        dir.path(),
        &format!("{tls}{}", config(&broker, "")),
        &[("WASMSINK_LISTEN", &format!("127.0.0.1:{port}"))],
    );
    wasmsink.wait_for_api().await;
    let trusting = || {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
            .timeout(Duration::from_secs(5))
    };
    let with_certificate = trusting()
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
        .build()
        .unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let response = with_certificate
            .get(format!("https://{host}:{port}/connectors"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
    let without = trusting().build().unwrap();
    assert!(
        without
            .get(format!("https://127.0.0.1:{port}/health"))
            .send()
            .await
            .is_err(),
        "a client without a certificate was served"
    );
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(
        !plain
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
        "plain HTTP was served"
    );
    // A silent client holds up nobody: connect, say nothing, and the API still answers.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let response = with_certificate
        .get(format!("https://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A resolved `${env:}` secret in a running connector's headers, through
/// retries, a transport error and FAILED, and API keys (the right one and a
/// wrong one): none of them appears in the log or in the store file.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_api_keys_never_reach_the_log_or_the_store() {
    const SECRET: &str = "s3cr3t-header-value-7f1e";
    const KEY: &str = "api-key-9c2b44";
    const WRONG_KEY: &str = "wrong-key-5d31aa";
    let broker = Broker::start();
    broker.create_topic("retried", 1);
    broker.create_topic("hung-up", 1);
    broker.produce("retried", 0, None, Some(b"r"), &[]).await;
    broker.produce("hung-up", 0, None, Some(b"h"), &[]).await;
    let receiver = Receiver::start(|_| crate::support::please_retry(500)).await;
    // Reads a request, then closes without answering: a transport error.
    let hang_up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_up_url = format!("http://{}/", hang_up.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::Read;
        for stream in hang_up.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut [0u8; 8192]);
        }
    });
    let connector = |name: &str, url: &str| {
        format!(
            "[connectors.{name}]\ntopics = \"{name}\"\ncallback.request.url = \"{url}\"\n\
             callback.request.headers = {{ \"X-Token\" = \"${{env:WASMSINK_TEST_LEAK}}\", \"Authorization\" = \"Bearer ${{env:WASMSINK_TEST_LEAK}}\" }}\n\
             retry.backoff.sec = \"0.1,0.1\"\nexception.strategy = \"PROGRESS_BACK_OFF_STOP_TASK\"\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let connectors =
        connector("retried", &receiver.url("/r")) + &connector("hung-up", &hang_up_url);
    let wasmsink = Wasmsink::start_with_env(
        dir.path(),
        &config(&broker, &connectors),
        &[("WASMSINK_TEST_LEAK", SECRET), ("WASMSINK_API_KEYS", KEY)],
    );
    let requests = receiver.wait_for(3, PATIENCE).await;
    assert_eq!(
        requests[0].header("x-token"),
        Some(SECRET),
        "the secret is really sent"
    );
    let deadline = Instant::now() + PATIENCE;
    while wasmsink.log().matches("connector FAILED").count() < 2 {
        assert!(Instant::now() < deadline, "{}", wasmsink.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wasmsink::install_tls_provider();
    let client = reqwest::Client::new();
    for key in [KEY, WRONG_KEY] {
        for path in ["/connectors/retried/status", "/connectors/hung-up/config"] {
            client
                .get(format!("{}{path}", wasmsink.api()))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
        }
    }
    // A change, so that the key's use is audited.
    let status = client
        .put(format!("{}/connectors/retried/pause", wasmsink.api()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::ACCEPTED);
    let log = wasmsink.log();
    assert!(log.contains("transport error"), "{log}");
    let mut store = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        store.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let store = String::from_utf8_lossy(&store);
    for (what, value) in [
        ("the env secret", SECRET),
        ("the API key", KEY),
        ("the wrong key", WRONG_KEY),
    ] {
        assert!(!log.contains(value), "{what} is in the log");
        assert!(!store.contains(value), "{what} is in the store");
    }
    assert!(
        store.contains("Audit"),
        "the pause was audited in the store"
    );
}
