//! How many requests one connector may have in flight across its partitions.
//!
//! `fixed`: `delivery.max.in.flight.total`. `adaptive`: an additive-increase,
//! multiplicative-decrease limit in the manner of Vector's adaptive request
//! concurrency, so that a failing endpoint is not met by every parked key
//! retrying at once. Attempts are grouped in windows of about one round
//! trip (at least [`MIN_WINDOW`]); at the end of each window:
//!
//! - when at least half of its attempts, and at least [`MIN_CONGESTED`],
//!   failed for endpoint-wide reasons (transport errors and 429, 502, 503,
//!   504), the limit halves;
//! - else, when the mean round trip of its healthy attempts is more than
//!   twice the running average (and [`LATENCY_FLOOR`] more), the limit
//!   shrinks by a tenth (at least by one);
//! - else, when the limit was reached during the window, it grows: doubling
//!   until the first decrease (slow start), then by one.
//!
//! A failure that belongs to one record (a few 503s among many successes)
//! therefore parks only its key and leaves the limit alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::config::{Concurrency, DeliverySettings};
use crate::guest::bindings::AttemptOutcome;

/// The shortest adaptive window.
const MIN_WINDOW: Duration = Duration::from_millis(10);
/// Fewer endpoint-wide failures than this in a window never halve the
/// limit: at a low rate a window may hold a single attempt, and one
/// record's 503 must park only its key. (A dead endpoint fails every
/// attempt, so its windows reach this whenever the limit is above it.)
const MIN_CONGESTED: u32 = 2;
/// Latency rises smaller than this are noise (a loopback receiver's round
/// trip doubles with any scheduling hiccup).
const LATENCY_FLOOR: Duration = Duration::from_millis(1);
/// Weight of the newest window in the running round-trip average.
const EWMA_ALPHA: f64 = 0.4;

/// Whether an attempt says something about the endpoint as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// An answer that does not point at an overloaded or missing endpoint.
    Healthy,
    /// A transport error or 429, 502, 503 or 504.
    Congested,
}

impl Signal {
    pub(crate) fn of(outcome: &AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Transport(_) => Signal::Congested,
            AttemptOutcome::Response(response) => match response.status {
                429 | 502 | 503 | 504 => Signal::Congested,
                _ => Signal::Healthy,
            },
        }
    }
}

/// A connector's request limit, shared by its partition lanes.
pub(crate) struct ConcurrencyLimit(Limit);

enum Limit {
    /// `fixed`: the cap as a semaphore, so that taking and giving back a
    /// permit takes no lock on the per-record path.
    Fixed { permits: Semaphore, cap: usize },
    /// `adaptive`: the limit and what is in flight against it.
    Adaptive {
        state: Mutex<State>,
        available: Notify,
    },
}

struct State {
    in_flight: usize,
    /// Tasks waiting in `acquire`; releases wake them only when there are any.
    waiters: usize,
    aimd: Aimd,
}

impl ConcurrencyLimit {
    pub(crate) fn new(settings: &DeliverySettings) -> Arc<Self> {
        let cap = settings.max_in_flight_total;
        Arc::new(ConcurrencyLimit(match settings.concurrency {
            Concurrency::Fixed => Limit::Fixed {
                permits: Semaphore::new(cap),
                cap,
            },
            Concurrency::Adaptive => Limit::Adaptive {
                state: Mutex::new(State {
                    in_flight: 0,
                    waiters: 0,
                    aimd: Aimd::new(cap),
                }),
                available: Notify::new(),
            },
        }))
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        match &self.0 {
            Limit::Fixed { cap, .. } => *cap,
            Limit::Adaptive { state, .. } => lock(state).aimd.limit,
        }
    }

    /// Waits until one more request may be sent.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Permit {
        let (state, available) = match &self.0 {
            Limit::Fixed { permits, .. } => {
                // Never closed; given back by `release`.
                if let Ok(permit) = permits.acquire().await {
                    permit.forget();
                }
                return self.permit();
            }
            Limit::Adaptive { state, available } => (state, available),
        };
        loop {
            if try_take(state) {
                return self.permit();
            }
            // Full: register as a waiter before looking again, so that a
            // release in between is not missed.
            let notified = available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let _waiting = Waiting::register(state);
            if try_take(state) {
                return self.permit();
            }
            notified.await;
        }
    }

    fn permit(self: &Arc<Self>) -> Permit {
        Permit {
            limit: Some(self.clone()),
        }
    }

    /// Gives a permit back, with how its attempt went when it was sent. A
    /// limit this changes is written to `shown` under the state's lock, so
    /// concurrent changes reach the gauge in the order they were made.
    fn release(&self, report: Option<(Signal, Instant, Instant, &AtomicU64)>) {
        let (state, available) = match &self.0 {
            Limit::Fixed { permits, .. } => {
                permits.add_permits(1);
                return;
            }
            Limit::Adaptive { state, available } => (state, available),
        };
        let freed = {
            let mut state = lock(state);
            state.in_flight -= 1;
            let before = state.aimd.limit;
            let after = match report {
                Some((signal, started, now, shown)) => {
                    let aimd = &mut state.aimd;
                    aimd.on_done(now, now.saturating_duration_since(started), signal);
                    if aimd.limit != before {
                        shown.store(aimd.limit as u64, Ordering::Relaxed);
                    }
                    aimd.limit
                }
                None => before,
            };
            after
                .saturating_sub(state.in_flight)
                .min(1 + after.saturating_sub(before))
                .min(state.waiters)
        };
        for _ in 0..freed {
            available.notify_one();
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A task counted in `State::waiters` until this is dropped, also when
/// the task stops waiting because its future was dropped (a lane stopping).
struct Waiting<'a>(&'a Mutex<State>);

impl<'a> Waiting<'a> {
    fn register(state: &'a Mutex<State>) -> Self {
        lock(state).waiters += 1;
        Waiting(state)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(self.0).waiters -= 1;
    }
}

/// Takes an adaptive permit if the limit allows one now.
fn try_take(state: &Mutex<State>) -> bool {
    let mut state = lock(state);
    if state.in_flight >= state.aimd.limit {
        return false;
    }
    state.in_flight += 1;
    if state.in_flight >= state.aimd.limit {
        state.aimd.reached = true;
    }
    true
}

/// One request's share of the limit; released when reported or dropped.
pub(crate) struct Permit {
    /// Taken when released, so that it is released once.
    limit: Option<Arc<ConcurrencyLimit>>,
}

impl Permit {
    /// Releases the permit, telling the adaptive limit how the attempt
    /// went: sent at `sent`, answered (or failed) at `answered`. A limit
    /// this changes is written to `shown` (the connector's gauge).
    pub(crate) fn report(
        mut self,
        signal: Signal,
        sent: Instant,
        answered: Instant,
        shown: &AtomicU64,
    ) {
        if let Some(limit) = self.limit.take() {
            limit.release(Some((signal, sent, answered, shown)));
        }
    }
}

impl Drop for Permit {
    /// An attempt abandoned unanswered says nothing about the endpoint.
    fn drop(&mut self) {
        if let Some(limit) = self.limit.take() {
            limit.release(None);
        }
    }
}

/// The adaptive limit's arithmetic, apart from locking and waking.
#[derive(Debug)]
struct Aimd {
    limit: usize,
    max: usize,
    slow_start: bool,
    window_end: Option<Instant>,
    done: u32,
    congested: u32,
    healthy_rtt: Duration,
    /// Whether the limit was reached during the window.
    reached: bool,
    /// Running average of the windows' mean round trips, in seconds.
    past_rtt: Option<f64>,
}

impl Aimd {
    fn new(max: usize) -> Self {
        Self {
            limit: 1,
            max,
            slow_start: true,
            window_end: None,
            done: 0,
            congested: 0,
            healthy_rtt: Duration::ZERO,
            reached: false,
            past_rtt: None,
        }
    }

    fn window(&self) -> Duration {
        self.past_rtt.map_or(MIN_WINDOW, |rtt| {
            Duration::from_secs_f64(rtt).max(MIN_WINDOW)
        })
    }

    fn on_done(&mut self, now: Instant, rtt: Duration, signal: Signal) {
        self.done += 1;
        match signal {
            Signal::Congested => self.congested += 1,
            Signal::Healthy => self.healthy_rtt += rtt,
        }
        let end = *self.window_end.get_or_insert(now + self.window());
        if now < end {
            return;
        }
        let healthy = self.done - self.congested;
        let mean = (healthy > 0).then(|| self.healthy_rtt.as_secs_f64() / f64::from(healthy));
        if self.congested >= MIN_CONGESTED && self.congested * 2 >= self.done {
            self.limit = (self.limit / 2).max(1);
            self.slow_start = false;
        } else if let (Some(mean), Some(past)) = (mean, self.past_rtt)
            && mean > past * 2.0
            && mean - past > LATENCY_FLOOR.as_secs_f64()
        {
            self.limit = self.limit.saturating_sub((self.limit / 10).max(1)).max(1);
            self.slow_start = false;
        } else if self.reached {
            self.limit = if self.slow_start {
                self.limit * 2
            } else {
                self.limit + 1
            }
            .min(self.max);
        }
        if let Some(mean) = mean {
            self.past_rtt = Some(
                self.past_rtt
                    .map_or(mean, |past| past * (1.0 - EWMA_ALPHA) + mean * EWMA_ALPHA),
            );
        }
        self.done = 0;
        self.congested = 0;
        self.healthy_rtt = Duration::ZERO;
        self.reached = false;
        self.window_end = Some(now + self.window());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `windows` windows of `per_window` attempts each, `congested` of
    /// them congested, all with round trip `rtt`, the limit reached in each.
    fn run(
        aimd: &mut Aimd,
        start: Instant,
        windows: u32,
        per_window: u32,
        congested: u32,
        rtt: Duration,
    ) -> Instant {
        let mut now = start;
        for _ in 0..windows {
            for i in 0..per_window {
                aimd.reached = true;
                let signal = if i < congested {
                    Signal::Congested
                } else {
                    Signal::Healthy
                };
                aimd.on_done(now, rtt, signal);
            }
            now += aimd.window() + Duration::from_millis(1);
            aimd.reached = true;
            aimd.on_done(now, rtt, Signal::Healthy);
        }
        now
    }

    #[test]
    fn slow_start_doubles_up_to_the_cap() {
        let mut aimd = Aimd::new(100);
        run(
            &mut aimd,
            Instant::now(),
            10,
            4,
            0,
            Duration::from_millis(5),
        );
        assert_eq!(aimd.limit, 100);
    }

    #[test]
    fn a_dead_endpoint_halves_the_limit_down_to_one() {
        let mut aimd = Aimd::new(512);
        let now = run(&mut aimd, Instant::now(), 9, 4, 0, Duration::from_millis(5));
        assert_eq!(aimd.limit, 512);
        run(&mut aimd, now, 12, 10, 10, Duration::from_millis(5));
        assert_eq!(aimd.limit, 1);
    }

    #[test]
    fn a_few_record_failures_leave_the_limit_alone() {
        let mut aimd = Aimd::new(512);
        let now = run(
            &mut aimd,
            Instant::now(),
            9,
            20,
            0,
            Duration::from_millis(5),
        );
        assert_eq!(aimd.limit, 512);
        // One in twenty congested (5% of 503s): no decrease.
        run(&mut aimd, now, 20, 20, 1, Duration::from_millis(5));
        assert_eq!(aimd.limit, 512);
    }

    #[test]
    fn one_failure_alone_in_a_window_leaves_the_limit_alone() {
        let mut aimd = Aimd::new(512);
        let mut now = run(&mut aimd, Instant::now(), 9, 4, 0, Duration::from_millis(5));
        assert_eq!(aimd.limit, 512);
        // A trickle: each window holds one attempt, a 503 of one record.
        for _ in 0..5 {
            now += aimd.window() + Duration::from_millis(1);
            aimd.on_done(now, Duration::from_millis(5), Signal::Congested);
        }
        assert_eq!(aimd.limit, 512);
        // Two in a window are an endpoint failing.
        aimd.on_done(now, Duration::from_millis(5), Signal::Congested);
        now += aimd.window() + Duration::from_millis(1);
        aimd.on_done(now, Duration::from_millis(5), Signal::Congested);
        assert_eq!(aimd.limit, 256);
    }

    #[test]
    fn a_small_limit_shrinks_by_at_least_one() {
        let mut aimd = Aimd::new(512);
        aimd.limit = 5;
        aimd.slow_start = false;
        let now = run(&mut aimd, Instant::now(), 3, 4, 0, Duration::from_millis(5));
        let steady = aimd.limit;
        run(&mut aimd, now, 1, 4, 0, Duration::from_millis(50));
        assert_eq!(aimd.limit, steady - 1);
    }

    #[test]
    fn rising_latency_shrinks_and_then_the_limit_grows_by_one() {
        let mut aimd = Aimd::new(512);
        let now = run(&mut aimd, Instant::now(), 6, 4, 0, Duration::from_millis(5));
        let grown = aimd.limit;
        let now = run(&mut aimd, now, 1, 4, 0, Duration::from_millis(50));
        assert_eq!(aimd.limit, grown - grown / 10, "a tenth less");
        assert!(!aimd.slow_start);
        // Once the average has caught up with 50 ms, it is steady again:
        // one more per window.
        let now = run(&mut aimd, now, 5, 4, 0, Duration::from_millis(50));
        let steady = aimd.limit;
        run(&mut aimd, now, 3, 4, 0, Duration::from_millis(50));
        assert_eq!(aimd.limit, steady + 3);
    }

    #[test]
    fn loopback_jitter_is_not_a_latency_rise() {
        let mut aimd = Aimd::new(512);
        let now = run(
            &mut aimd,
            Instant::now(),
            4,
            4,
            0,
            Duration::from_micros(100),
        );
        let grown = aimd.limit;
        run(&mut aimd, now, 1, 4, 0, Duration::from_micros(400));
        assert!(aimd.limit >= grown);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_is_no_longer_counted() {
        let settings = DeliverySettings {
            concurrency: Concurrency::Adaptive,
            ..DeliverySettings::default()
        };
        let limit = ConcurrencyLimit::new(&settings);
        // The adaptive limit starts at one.
        let held = limit.acquire().await;
        let waiter = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        let Limit::Adaptive { state, .. } = &limit.0 else {
            panic!("an adaptive limit");
        };
        while lock(state).waiters == 0 {
            tokio::task::yield_now().await;
        }
        // A lane stopping drops its attempt while it waits.
        waiter.abort();
        assert!(waiter.await.is_err_and(|error| error.is_cancelled()));
        assert_eq!(lock(state).waiters, 0);
        drop(held);
        assert_eq!(lock(state).in_flight, 0);
    }

    #[tokio::test]
    async fn permits_wait_for_the_limit_and_come_back_when_dropped() {
        let settings = DeliverySettings {
            max_in_flight_total: 2,
            ..DeliverySettings::default()
        };
        let limit = ConcurrencyLimit::new(&settings);
        let first = limit.acquire().await;
        let second = limit.acquire().await;
        let third = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("a freed permit wakes the waiter")
            .expect("no panic");
        let (now, shown) = (Instant::now(), AtomicU64::new(0));
        second.report(Signal::Healthy, now, now, &shown);
        third.report(Signal::Congested, now, now, &shown);
        assert_eq!(
            shown.load(Ordering::Relaxed),
            0,
            "a fixed limit never changes"
        );
        let Limit::Fixed { permits, .. } = &limit.0 else {
            panic!("a fixed limit");
        };
        assert_eq!(permits.available_permits(), 2);
    }
}
