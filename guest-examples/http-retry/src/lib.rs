//! `http-retry`: a retry policy driven by the HTTP status. Decide only; the
//! built-in transform sends each record's value unchanged.
//!
//! * 2xx: delivered, whatever the body says.
//! * 429 and 503: retried after the response's `Retry-After` (seconds or an
//!   HTTP-date, at most `cap`), or on the back-off schedule without one.
//! * Any other 4xx, and 1xx/3xx: dead-lettered at once (retrying will not help).
//! * Other 5xx and transport errors: retried with exponential back-off:
//!   `min(cap, base * 2^(attempt-1))`, of which a random half is jitter.
//! * After `max-attempts` attempts the record is dead-lettered.
//!
//! Configuration (`guest.config.*`): `base` (default `500ms`), `cap`
//! (default `1m`), `max-attempts` (default `10`).

use wasmsink_guest::prelude::*;
use wasmsink_guest::{Outcome, random_u64};

/// The guest: the back-off schedule.
struct HttpRetry {
    base: Duration,
    cap: Duration,
    max_attempts: u32,
}

impl Guest for HttpRetry {
    fn init(config: &Config) -> Result<Self> {
        config.check_keys(&["base", "cap", "max-attempts"])?;
        let guest = HttpRetry {
            base: config.duration_or("base", Duration::from_millis(500))?,
            cap: config.duration_or("cap", Duration::from_secs(60))?,
            max_attempts: config.parse_or("max-attempts", 10)?,
        };
        if guest.max_attempts == 0 || guest.base > guest.cap {
            return Err(Error::fatal(
                "need guest.config.max-attempts >= 1 and base <= cap",
            ));
        }
        Ok(guest)
    }
}

impl Decide for HttpRetry {
    fn decide(&mut self, attempt: Attempt) -> Decision {
        let number = attempt.number();
        let scheduled = backoff(self.base, self.cap, number, random_u64());
        let (wait, what) = match attempt.outcome() {
            Outcome::Response(r) if (200..300).contains(&r.status) => return Decision::Accept,
            Outcome::Response(r) if matches!(r.status, 429 | 503) => {
                let asked = attempt.retry_after().map(|wait| wait.min(self.cap));
                (asked.unwrap_or(scheduled), format!("HTTP {}", r.status))
            }
            Outcome::Response(r) if (500..600).contains(&r.status) => {
                (scheduled, format!("HTTP {}", r.status))
            }
            Outcome::Response(r) => {
                return Decision::DeadLetter(format!("HTTP {} is not retried", r.status));
            }
            Outcome::Transport(e) => (scheduled, format!("{:?} error: {}", e.kind, e.message)),
        };
        if number >= self.max_attempts {
            Decision::DeadLetter(format!("gave up after {number} attempts; last: {what}"))
        } else {
            Decision::RetryAfter(wait)
        }
    }
}

/// `min(cap, base * 2^(attempt-1))`, the upper half chosen by `random`.
fn backoff(base: Duration, cap: Duration, attempt: u32, random: u64) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    let full = base.saturating_mul(factor).min(cap);
    let half = full / 2;
    let jitter_ns = random
        % (u64::try_from((full - half).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1));
    half + Duration::from_nanos(jitter_ns)
}

export_decide!(HttpRetry);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmsink_guest::TransportErrorKind;

    fn guest() -> HttpRetry {
        HttpRetry::init(&Config::from_pairs([
            ("base", "1s"),
            ("cap", "8s"),
            ("max-attempts", "4"),
        ]))
        .unwrap()
    }

    #[test]
    fn statuses_map_to_decisions() {
        let mut g = guest();
        assert_eq!(
            g.decide(Attempt::new_response(1, 204, r#"{"retry":true}"#)),
            Decision::Accept
        );
        assert_eq!(
            g.decide(Attempt::new_response(1, 404, "")),
            Decision::DeadLetter("HTTP 404 is not retried".into())
        );
        assert!(matches!(
            g.decide(Attempt::new_response(1, 302, "")),
            Decision::DeadLetter(_)
        ));
        let Decision::RetryAfter(wait) = g.decide(Attempt::new_response(2, 500, "")) else {
            panic!()
        };
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2));
        let timeout = Attempt::new_transport(4, TransportErrorKind::Timeout, "read timed out");
        assert_eq!(
            g.decide(timeout),
            Decision::DeadLetter(
                "gave up after 4 attempts; last: Timeout error: read timed out".into()
            )
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let mut g = guest();
        let asked = Attempt::new_response(1, 429, "").with_header("Retry-After", "3");
        assert_eq!(
            g.decide(asked),
            Decision::RetryAfter(Duration::from_secs(3))
        );
        let long = Attempt::new_response(1, 503, "").with_header("retry-after", "3600");
        assert_eq!(g.decide(long), Decision::RetryAfter(Duration::from_secs(8)));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff(base, cap, 1, 0), Duration::from_millis(50));
        assert_eq!(backoff(base, cap, 3, 0), Duration::from_millis(200));
        assert_eq!(backoff(base, cap, 40, 0), Duration::from_millis(500));
        assert!(backoff(base, cap, 40, u64::MAX) < cap);
        assert_eq!(backoff(Duration::ZERO, cap, 2, 7), Duration::ZERO);
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(HttpRetry::init(&Config::from_pairs([("max-attempts", "0")])).is_err());
        assert!(HttpRetry::init(&Config::from_pairs([("base", "2m")])).is_err());
        assert!(HttpRetry::init(&Config::from_pairs([("cap", "10")])).is_err());
    }
}
