//! `webhook-signing`: signs each request in the [Standard Webhooks] format.
//! Transform only; the built-in retry policy decides.
//!
//! The body is the record value unchanged. The guest adds:
//! * `webhook-id`: `{id-prefix}{topic}-{partition}-{offset}`, so every retry
//!   of a record (and a redelivery after a restart) carries the same id, and
//!   receivers can deduplicate;
//! * `webhook-timestamp`: Unix seconds when the record was transformed;
//! * `webhook-signature`: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
//!
//! `transform` runs once per record, not per attempt, so retries resend the
//! same timestamp and signature: a receiver that enforces a tolerance window
//! (5 minutes is usual) refuses retries that come later than that.
//!
//! Configuration (`guest.config.*`):
//! * `secret` (required): `whsec_` followed by the base64 key (the prefix is optional);
//! * `id-prefix` (default `msg_`);
//! * `content-type` (default: none, so the connector's configured header is kept).
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmsink_guest::prelude::*;

/// The guest: the signing key and the fixed parts of each request.
struct WebhookSigning {
    key: Vec<u8>,
    id_prefix: String,
    content_type: Option<String>,
}

impl Guest for WebhookSigning {
    fn init(config: &Config) -> Result<Self> {
        config.check_keys(&["secret", "id-prefix", "content-type"])?;
        let secret = config.require("secret")?.trim();
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        // The decoder's error names a byte of the secret: keep it out of logs.
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| Error::fatal("guest.config.secret is not whsec_ followed by base64"))?;
        if key.len() < 16 {
            return Err(Error::fatal("guest.config.secret is shorter than 16 bytes"));
        }
        Ok(WebhookSigning {
            key,
            id_prefix: config.get_or("id-prefix", "msg_").to_string(),
            content_type: config.get("content-type").map(str::to_string),
        })
    }
}

impl Transform for WebhookSigning {
    fn transform(&mut self, record: Record) -> Result<Action> {
        let id = format!(
            "{}{}-{}-{}",
            self.id_prefix,
            record.topic(),
            record.partition(),
            record.offset()
        );
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        let timestamp = now.unwrap_or_default().as_secs().to_string();
        let body = record.into_value();
        let signature = sign(&self.key, &id, &timestamp, &body);
        let mut request = Request::deliver()
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature);
        if let Some(content_type) = &self.content_type {
            request = request.header("content-type", content_type.as_str());
        }
        Ok(request.body(body).into())
    }
}

/// `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
        mac.update(part);
    }
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

export_transform!(WebhookSigning);

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let guest = WebhookSigning::init(&Config::from_pairs([("secret", SECRET)])).unwrap();
        let signature = sign(
            &guest.key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn signs_the_value_with_a_stable_id() {
        let config = Config::from_pairs([("secret", SECRET), ("content-type", "application/json")]);
        let mut guest = WebhookSigning::init(&config).unwrap();
        let Action::Deliver(request) = guest
            .transform(Record::new("orders.v1", 2, 9).with_value("{}"))
            .unwrap()
        else {
            panic!("skipped");
        };
        assert_eq!(
            request.header_value("webhook-id"),
            Some("msg_orders.v1-2-9")
        );
        assert_eq!(
            request.header_value("content-type"),
            Some("application/json")
        );
        let timestamp = request.header_value("webhook-timestamp").unwrap();
        let expected = sign(&guest.key, "msg_orders.v1-2-9", timestamp, b"{}");
        assert_eq!(
            request.header_value("webhook-signature"),
            Some(expected.as_str())
        );
        assert_eq!(request.body, b"{}");
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        let missing = WebhookSigning::init(&Config::default()).err().unwrap();
        assert_eq!(missing.message(), "guest.config.secret is required");
        let bad = WebhookSigning::init(&Config::from_pairs([("secret", "whsec_not*base64")]))
            .err()
            .unwrap();
        assert_eq!(
            bad.message(),
            "guest.config.secret is not whsec_ followed by base64"
        );
        let short = WebhookSigning::init(&Config::from_pairs([("secret", "whsec_c2hvcnQ=")]))
            .err()
            .unwrap();
        assert_eq!(
            short.message(),
            "guest.config.secret is shorter than 16 bytes"
        );
    }
}
