//! A running connector's shared parts: its configuration, HTTP sink, guest,
//! dead-letter producer, counters and state.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ConnectorConfig;
use crate::deadletter::DeadLetterProducer;
use crate::guest::GuestPlan;
use crate::sink::HttpSink;

/// Guest call failures within [`CRASH_LOOP_WINDOW`] that stop a connector
/// whatever `guest.errors` says.
pub const CRASH_LOOP_FAILURES: usize = 5;
/// The window of [`CRASH_LOOP_FAILURES`].
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(60);

/// Where a connector is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorState {
    /// Consuming and delivering.
    Running,
    /// Stopped by a failure; the record it stopped on was not committed and is
    /// delivered again after a restart.
    Failed {
        /// Why it stopped.
        reason: String,
    },
    /// Shut down with the process.
    Stopped,
}

/// Counters of what a connector did, for logs, the quickstart tally and metrics.
#[derive(Debug, Default)]
pub struct ConnectorStats {
    /// Records read from Kafka.
    pub consumed: AtomicU64,
    /// Records the callback accepted.
    pub delivered: AtomicU64,
    /// Attempts that were followed by a retry.
    pub retried: AtomicU64,
    /// Records given up without a dead-letter topic.
    pub dropped: AtomicU64,
    /// Records produced to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Records finished without a request (null values ignored, guest skips).
    pub skipped: AtomicU64,
    /// HTTP attempts by status class, and their latency.
    pub attempts: crate::metrics::AttemptStats,
    /// Guest calls and their time.
    pub guest_calls: crate::metrics::GuestCallStats,
    /// Requests in flight, parked keys, pending records and the request limit.
    pub delivery: crate::metrics::DeliveryGauges,
    /// Consumer lag per partition, shared with the consumer's statistics callback.
    pub lag: std::sync::Arc<crate::metrics::ConsumerLag>,
}

/// A point-in-time copy of [`ConnectorStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// See [`ConnectorStats::consumed`].
    pub consumed: u64,
    /// See [`ConnectorStats::delivered`].
    pub delivered: u64,
    /// See [`ConnectorStats::retried`].
    pub retried: u64,
    /// See [`ConnectorStats::dropped`].
    pub dropped: u64,
    /// See [`ConnectorStats::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`ConnectorStats::skipped`].
    pub skipped: u64,
}

impl StatsSnapshot {
    /// Records that are finished: their offsets may be committed.
    pub fn finished(&self) -> u64 {
        self.delivered + self.dropped + self.dead_lettered + self.skipped
    }
}

impl ConnectorStats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            consumed: read(&self.consumed),
            delivered: read(&self.delivered),
            retried: read(&self.retried),
            dropped: read(&self.dropped),
            dead_lettered: read(&self.dead_lettered),
            skipped: read(&self.skipped),
        }
    }
}

/// The parts of a connector its partition lanes share.
pub struct Connector {
    /// The validated configuration.
    pub config: ConnectorConfig,
    /// The HTTP callback.
    pub sink: HttpSink,
    /// The guests serving `transform` and `decide`, pre-instantiated.
    pub guests: GuestPlan,
    /// The dead-letter producer, when a topic is configured.
    pub dead_letter: Option<DeadLetterProducer>,
    /// What the connector did so far.
    pub stats: ConnectorStats,
    state: Mutex<ConnectorState>,
    halt: CancellationToken,
    paused: watch::Sender<bool>,
    /// The value `paused` holds, readable without its lock: attempts read
    /// it on every send, from every lane thread.
    paused_now: AtomicBool,
    guest_failures: Mutex<VecDeque<Instant>>,
}

impl Connector {
    /// A connector that halts when `shutdown` is cancelled or when it fails.
    /// `paused` is the switch its source watches (see [`Connector::set_paused`]).
    pub fn new(
        config: ConnectorConfig,
        sink: HttpSink,
        guests: GuestPlan,
        dead_letter: Option<DeadLetterProducer>,
        shutdown: &CancellationToken,
        paused: watch::Sender<bool>,
        lag: std::sync::Arc<crate::metrics::ConsumerLag>,
    ) -> Self {
        let paused_now = AtomicBool::new(*paused.borrow());
        Self {
            paused_now,
            paused,
            config,
            sink,
            guests,
            dead_letter,
            stats: ConnectorStats {
                lag,
                ..ConnectorStats::default()
            },
            state: Mutex::new(ConnectorState::Running),
            guest_failures: Mutex::new(VecDeque::new()),
            halt: shutdown.child_token(),
        }
    }

    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The current state.
    pub fn state(&self) -> ConnectorState {
        self.state.lock().expect("state lock").clone()
    }

    /// Cancelled when the connector must stop starting new work.
    pub fn halt_token(&self) -> &CancellationToken {
        &self.halt
    }

    /// Pauses or resumes delivery. Paused, the connector keeps its consumer
    /// and partitions, fetches nothing new and starts no new attempt; an
    /// attempt in flight finishes and its retry waits continue.
    pub fn set_paused(&self, paused: bool) {
        self.paused_now.store(paused, Ordering::SeqCst);
        self.paused.send_replace(paused);
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        self.paused_now.load(Ordering::SeqCst)
    }

    /// A receiver that sees every pause and resume.
    pub fn pause_watch(&self) -> watch::Receiver<bool> {
        self.paused.subscribe()
    }

    /// Counts a guest call failure; `true` when there have been
    /// [`CRASH_LOOP_FAILURES`] within [`CRASH_LOOP_WINDOW`], i.e. the guest
    /// is crash-looping and the connector must stop.
    pub fn note_guest_failure(&self) -> bool {
        ConnectorStats::bump(&self.stats.attempts.guest_failures);
        let now = Instant::now();
        let mut failures = self.guest_failures.lock().expect("guest failure lock");
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|at| now.duration_since(*at) > CRASH_LOOP_WINDOW)
        {
            failures.pop_front();
        }
        failures.len() >= CRASH_LOOP_FAILURES
    }

    /// Marks the connector FAILED (the first reason wins) and halts it.
    pub fn fail(&self, reason: String) {
        let mut state = self.state.lock().expect("state lock");
        if *state == ConnectorState::Running {
            tracing::error!(connector = %self.config.name, %reason, "connector FAILED; it stops without committing the record it stopped on");
            *state = ConnectorState::Failed { reason };
        }
        drop(state);
        self.halt.cancel();
    }

    /// Marks a connector that halted without failing as stopped.
    pub fn mark_stopped(&self) {
        let mut state = self.state.lock().expect("state lock");
        if *state == ConnectorState::Running {
            *state = ConnectorState::Stopped;
        }
    }
}
