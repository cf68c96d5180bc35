//! What the end-to-end tests are made of: a real broker, real receivers and
//! the real binary.

mod broker;
mod process;
mod receiver;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use broker::{Broker, header_value};
pub use process::Wasmsink;
pub use receiver::{Received, Receiver};

/// Calls the REST API at `api` with an optional JSON body; the answer's
/// status and body (as JSON, or as a JSON string when it is not JSON).
pub async fn call(
    api: &str,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    wasmsink::install_tls_provider();
    let client = reqwest::Client::new();
    let mut request = client.request(method, format!("{api}{path}"));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("REST call");
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls connector `name`'s status at `api` until its state is `state`
/// (within [`PATIENCE`]) and returns that status.
pub async fn wait_for_state(api: &str, name: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (_, status) = call(
            api,
            Method::GET,
            &format!("/connectors/{name}/status"),
            None,
        )
        .await;
        if status["connector"]["state"] == state {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never {state}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until connector `name` is FAILED and returns its trace.
pub async fn wait_for_failed(api: &str, name: &str) -> String {
    let status = wait_for_state(api, name, "FAILED").await;
    status["connector"]["trace"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration file: the broker plus connector tables written as TOML.
pub fn config(broker: &Broker, connectors: &str) -> String {
    format!(
        "[kafka]\nbootstrap.servers = \"{}\"\nsession.timeout.ms = 6000\nheartbeat.interval.ms = 1000\n\n[runtime]\nshutdown.timeout.sec = 5\n\n{connectors}",
        broker.bootstrap()
    )
}

/// Groups requests by (topic, partition) → offsets in arrival order.
pub fn offsets_by_partition(requests: &[Received]) -> BTreeMap<(String, i32), Vec<i64>> {
    let mut map: BTreeMap<(String, i32), Vec<i64>> = BTreeMap::new();
    for request in requests {
        let (topic, partition, offset) = request.position();
        map.entry((topic, partition)).or_default().push(offset);
    }
    map
}

/// How long tests wait for things that should happen within seconds.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The seed's success answer.
pub fn no_retry() -> (u16, String) {
    (200, r#"{"retry":false}"#.to_owned())
}

/// The seed's "please retry" answer.
pub fn please_retry(status: u16) -> (u16, String) {
    (
        status,
        r#"{"message":"Unable to process. An unhandled exception has been thrown.","retry":true}"#
            .to_owned(),
    )
}
