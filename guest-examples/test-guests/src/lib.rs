//! `test-guests`: a deliberately hostile guest for the host's tests, in the
//! manner of Spin's test guest: what it does is chosen by the record value.
//! It exports both `transformer` and `retry-policy` (`connector-plugin`).
//!
//! `transform`, by record value:
//! * `loop`: spins for ever (the host's deadline must interrupt it);
//! * `alloc`: allocates 1 MiB chunks until allocation fails (the allocation
//!   failure aborts, which traps; the memory limit must stop it first);
//! * `panic`: panics (a trap; the message goes to stderr);
//! * `big`: delivers a 32 MiB body;
//! * `file`: reads `/etc/passwd`; the expected failure is returned as
//!   `error(invalid-record)` with the I/O error's text (a success, which would
//!   be a sandbox escape, is returned as `error(fatal)`);
//! * `log`: writes one message at each level through `logging`, one line to
//!   stdout and one to stderr, then delivers the value;
//! * `config`: delivers the configuration it got, as a JSON array of
//!   `[key, value]` pairs;
//! * `skip`, `invalid`, `fatal`: returns `skip`, `error(invalid-record)`,
//!   `error(fatal)`;
//! * `alloc:N`: allocates and touches N MiB, then delivers the value (a
//!   guest that needs that much memory);
//! * `busy:N`: spins for N milliseconds of wall-clock time, then returns
//!   `skip` (a guest that uses most of its budget on every record);
//! * `poison`: delivers the value, and every later `transform` on this
//!   instance panics (only a fresh instance delivers the next record);
//! * `decide-loop`, `decide-panic`: delivers the value, and `decide` for this
//!   record (remembered by topic/partition/offset in the instance's memory)
//!   spins for ever or panics;
//! * anything else (tombstones too): delivers the value unchanged.
//!
//! `decide`: misbehaves as above, also when the response body is exactly
//! `decide-loop` or `decide-panic` (so it can be driven without `transform`);
//! otherwise accepts a 2xx and drops anything else with the reason `HTTP
//! {status}` or `transport: {message}`.
//!
//! `init`: fails with the reason in `guest.config.fail` when it is set.

use std::collections::HashSet;
use std::hint::black_box;

use wasmsink_guest::log::Level;
use wasmsink_guest::prelude::*;
use wasmsink_guest::{RecordRef, TransportError};

/// The guest: its configuration, whether a `poison` record went through
/// this instance, and the records whose `decide` misbehaves.
struct TestGuest {
    config: Vec<(String, String)>,
    poisoned: bool,
    decide_loop: HashSet<(String, i32, i64)>,
    decide_panic: HashSet<(String, i32, i64)>,
}

impl Guest for TestGuest {
    fn init(config: &Config) -> Result<Self> {
        if let Some(reason) = config.get("fail") {
            return Err(Error::fatal(reason));
        }
        Ok(TestGuest {
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            poisoned: false,
            decide_loop: HashSet::new(),
            decide_panic: HashSet::new(),
        })
    }
}

impl Transform for TestGuest {
    fn transform(&mut self, record: Record) -> Result<Action> {
        let id = (
            record.topic().to_string(),
            record.partition(),
            record.offset(),
        );
        if self.poisoned {
            panic!("test-guests: this instance was poisoned before record {id:?}");
        }
        match record.value() {
            Some(b"loop") => spin(),
            Some(b"alloc") => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            Some(b"panic") => panic!("test-guests: panic requested by record {id:?}"),
            Some(b"big") => return Ok(Request::deliver().body(vec![b'x'; 32 << 20]).into()),
            Some(b"file") => {
                return match std::fs::read_to_string("/etc/passwd") {
                    Err(e) => Err(Error::invalid_record(format!(
                        "file: reading /etc/passwd failed: {e}"
                    ))),
                    Ok(text) => Err(Error::fatal(format!(
                        "file: read /etc/passwd ({} bytes)",
                        text.len()
                    ))),
                };
            }
            Some(b"log") => {
                for level in [
                    Level::Trace,
                    Level::Debug,
                    Level::Info,
                    Level::Warn,
                    Level::Error,
                ] {
                    wasmsink_guest::log!(level, "test-guests: {level:?} message");
                }
                println!("test-guests: stdout line");
                eprintln!("test-guests: stderr line");
            }
            Some(b"config") => return Ok(Request::deliver().json(&self.config)?.into()),
            Some(b"skip") => return Ok(Action::Skip),
            Some(value) if value.starts_with(b"alloc:") => {
                let mib: usize = std::str::from_utf8(&value[6..])
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let held = black_box(vec![1u8; mib << 20]);
                let touched: u64 = held.iter().step_by(4096).map(|b| u64::from(*b)).sum();
                black_box(touched);
            }
            Some(value) if value.starts_with(b"busy:") => {
                let ms = std::str::from_utf8(&value[5..])
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
                while std::time::Instant::now() < until {
                    black_box(0u64);
                }
                return Ok(Action::Skip);
            }
            Some(b"invalid") => {
                return Err(Error::invalid_record(
                    "test-guests: invalid record requested",
                ));
            }
            Some(b"fatal") => return Err(Error::fatal("test-guests: fatal error requested")),
            Some(b"poison") => self.poisoned = true,
            Some(b"decide-loop") => _ = self.decide_loop.insert(id),
            Some(b"decide-panic") => _ = self.decide_panic.insert(id),
            _ => {}
        }
        Ok(Request::deliver().body(record.into_value()).into())
    }
}

impl Decide for TestGuest {
    fn decide(&mut self, attempt: Attempt) -> Decision {
        let RecordRef {
            topic,
            partition,
            offset,
        } = attempt.record().clone();
        let id = (topic, partition, offset);
        if self.decide_loop.contains(&id) || attempt.body() == b"decide-loop" {
            spin();
        }
        if self.decide_panic.contains(&id) || attempt.body() == b"decide-panic" {
            panic!("test-guests: decide panic requested for record {id:?}");
        }
        match attempt.outcome() {
            Outcome::Response(r) if (200..300).contains(&r.status) => Decision::Accept,
            Outcome::Response(r) => Decision::Drop(format!("HTTP {}", r.status)),
            Outcome::Transport(TransportError { message, .. }) => {
                Decision::Drop(format!("transport: {message}"))
            }
        }
    }
}

/// Spins for ever, in a way the optimizer cannot remove.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

export_guest!(TestGuest);
