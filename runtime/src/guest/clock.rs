//! Call deadlines that count the CPU time a guest call uses, and the yields
//! that keep a long call from holding its thread.
//!
//! A wall-clock deadline cuts a healthy call short whenever the machine is
//! busy (a 10 ms `decide` budget is easily exceeded by a thread waiting for
//! a core). So a call is interrupted when it has *used* its budget of CPU
//! time, or when it has been runnable for [`WALL_FACTOR`] times its budget
//! plus [`WALL_GRACE`] in wall-clock time (not counting the time it spent
//! parked by its own yields), whichever comes first.
//!
//! A call that outlives its first epoch tick yields to its thread's other
//! work on every later tick (lanes of every connector share a few threads,
//! so a guest spinning to its budget must not freeze them). A `transform`
//! or `decide` call runs in the background from then on
//! ([`Pace::Background`]): it runs until the next tick and then pauses for
//! [`BACKGROUND_PAUSE`], so a long call gets a tenth to a fifth of a core
//! on an idle machine and the lanes it shares a machine with keep theirs.
//! `init` runs at full pace: it runs once per instance, and a connector
//! waits for it.
//!
//! The call's CPU time is therefore the sum of its running *segments*:
//! each segment starts when the call resumes after a yield (the resume hook
//! reads the thread's CPU clock on the thread the guest resumes on) and
//! ends at the next tick. CPU time the thread spends on other tasks while
//! the call is parked is never charged to it.
//!
//! Reading a thread's CPU clock is a system call, so nothing is read when a
//! call starts: the first segment (call start to first tick) counts as its
//! wall time capped at [`PRE_BASELINE_CAP`]. The first tick of a call never
//! yields (a short call that straddles a tick must not pay for a pause);
//! yields start with the second. Calls shorter than a tick cost one
//! `Instant::now()`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Wall-clock backstop: a call may take this many times its budget…
pub const WALL_FACTOR: u32 = 20;
/// …plus this much, before it is interrupted whatever its CPU use.
pub const WALL_GRACE: Duration = Duration::from_secs(1);

/// The first segment of a call counts as CPU time up to this much (a tick
/// or two; more means the thread was waiting for a core).
const PRE_BASELINE_CAP: Duration = Duration::from_millis(2);

/// How long a background call pauses after each segment it ran.
pub const BACKGROUND_PAUSE: Duration = Duration::from_millis(2);

/// How a call that outlives a tick shares its thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Yields on every tick and resumes as soon as the thread is free.
    Full,
    /// Runs until the next tick, then yields and pauses for
    /// [`BACKGROUND_PAUSE`].
    Background,
}

/// Marks "no resume recorded since the last tick".
const NOT_RESUMED: u64 = u64::MAX;

/// What the epoch callback should do on a tick.
pub enum Tick {
    /// The budget is spent: trap.
    Interrupt,
    /// The call's first tick: it may be a short call that straddles the
    /// tick, so it goes on without yielding.
    Continue,
    /// Let the thread's other tasks run, then resume the call; the future
    /// records where the next segment starts.
    Yield(Pin<Box<dyn Future<Output = ()> + Send>>),
}

/// The budget of the call in progress on a store.
#[derive(Debug, Clone)]
pub struct CallClock {
    started: Instant,
    budget: Duration,
    pace: Pace,
    /// Whether the call has seen a tick yet (its first never yields).
    ticked: bool,
    /// CPU time of the segments that ended so far.
    used: Duration,
    /// The thread CPU time at the start of the running segment, in
    /// nanoseconds, written by the resume hook; [`NOT_RESUMED`] in the first
    /// segment.
    resumed_at: Arc<AtomicU64>,
    /// Nanoseconds the call spent parked by its yields: not counted by the
    /// wall-clock backstop either, which is for a call that is runnable
    /// but never gets a core.
    parked: Arc<AtomicU64>,
}

impl Default for CallClock {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            budget: Duration::ZERO,
            pace: Pace::Full,
            ticked: false,
            used: Duration::ZERO,
            resumed_at: Arc::new(AtomicU64::new(NOT_RESUMED)),
            parked: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl CallClock {
    /// A call with `budget` of CPU time starts now.
    pub fn start(&mut self, budget: Duration, pace: Pace) {
        self.started = Instant::now();
        self.budget = budget;
        self.pace = pace;
        self.ticked = false;
        self.used = Duration::ZERO;
        self.resumed_at.store(NOT_RESUMED, Ordering::Relaxed);
        self.parked.store(0, Ordering::Relaxed);
    }

    /// Called on each epoch tick during the call: ends the running segment
    /// and says whether to interrupt, go on (the first tick) or yield.
    pub fn tick(&mut self) -> Tick {
        if self.end_segment() {
            return Tick::Interrupt;
        }
        if !std::mem::replace(&mut self.ticked, true) {
            // The next segment starts here, on this thread.
            self.resumed_at
                .store(nanos(thread_cpu_time()), Ordering::Relaxed);
            return Tick::Continue;
        }
        let resumed_at = self.resumed_at.clone();
        let parked = self.parked.clone();
        let pace = self.pace;
        let parking = Instant::now();
        Tick::Yield(Box::pin(async move {
            match pace {
                Pace::Full => tokio::task::yield_now().await,
                Pace::Background => tokio::time::sleep(BACKGROUND_PAUSE).await,
            }
            parked.fetch_add(nanos(parking.elapsed()), Ordering::Relaxed);
            // This runs on the thread the guest resumes on, just before it does.
            resumed_at.store(nanos(thread_cpu_time()), Ordering::Relaxed);
        }))
    }

    /// Adds the running segment to the call's CPU time: true once the
    /// budget (or the wall-clock backstop) is spent.
    fn end_segment(&mut self) -> bool {
        let now = Instant::now();
        let parked = Duration::from_nanos(self.parked.load(Ordering::Relaxed));
        let runnable = now.duration_since(self.started).saturating_sub(parked);
        if runnable >= self.budget.saturating_mul(WALL_FACTOR) + WALL_GRACE {
            return true;
        }
        let resumed_at = self.resumed_at.swap(NOT_RESUMED, Ordering::Relaxed);
        self.used += if resumed_at == NOT_RESUMED {
            now.duration_since(self.started).min(PRE_BASELINE_CAP)
        } else {
            thread_cpu_time().saturating_sub(Duration::from_nanos(resumed_at))
        };
        self.used >= self.budget
    }
}

fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(NOT_RESUMED - 1)
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut time) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        time.tv_sec.unsigned_abs(),
        u32::try_from(time.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(cpu: Duration) {
        let before = thread_cpu_time();
        while thread_cpu_time() - before < cpu {
            std::hint::black_box(0u64.wrapping_add(1));
        }
    }

    /// Ticks; on a yield, runs `meanwhile` (the thread's other tasks) and
    /// then resumes the call. True when the tick interrupted.
    fn tick(clock: &mut CallClock, meanwhile: impl FnOnce()) -> bool {
        match clock.tick() {
            Tick::Interrupt => true,
            Tick::Continue => {
                meanwhile();
                false
            }
            Tick::Yield(resume) => {
                meanwhile();
                tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a runtime")
                    .block_on(resume);
                false
            }
        }
    }

    #[test]
    fn a_busy_call_spends_its_budget_and_a_sleeping_one_does_not() {
        let mut clock = CallClock::default();
        clock.start(Duration::from_millis(20), Pace::Full);
        assert!(
            !tick(&mut clock, || ()),
            "the first segment counts at most 2 ms"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            !tick(&mut clock, || ()),
            "waiting for a core is not the guest's time"
        );
        spin(Duration::from_millis(25));
        assert!(
            tick(&mut clock, || ()),
            "25 ms of CPU exceeds a 20 ms budget"
        );
    }

    #[test]
    fn other_tasks_run_while_the_call_is_parked_are_not_charged_to_it() {
        let mut clock = CallClock::default();
        clock.start(Duration::from_millis(20), Pace::Full);
        assert!(!tick(&mut clock, || ()), "the first tick goes on");
        for _ in 0..5 {
            // 5 × 10 ms of the thread's other work between the call's segments.
            assert!(!tick(&mut clock, || spin(Duration::from_millis(10))));
        }
        spin(Duration::from_millis(12));
        assert!(
            !tick(&mut clock, || ()),
            "12 ms of the guest's own CPU is within 20 ms"
        );
        spin(Duration::from_millis(12));
        assert!(
            tick(&mut clock, || ()),
            "its segments add up: 24 ms is over 20 ms"
        );
    }

    #[test]
    fn a_background_call_pauses_after_each_tick_without_being_charged() {
        let mut clock = CallClock::default();
        clock.start(Duration::from_millis(20), Pace::Background);
        assert!(!tick(&mut clock, || ()), "the first tick goes on");
        let started = Instant::now();
        for _ in 0..5 {
            assert!(!tick(&mut clock, || ()));
        }
        assert!(
            started.elapsed() >= BACKGROUND_PAUSE * 5,
            "{:?}",
            started.elapsed()
        );
        spin(Duration::from_millis(12));
        assert!(
            !tick(&mut clock, || ()),
            "the pauses are not the guest's time"
        );
    }

    #[test]
    fn time_parked_by_its_own_yields_is_not_counted_by_the_backstop() {
        let mut clock = CallClock::default();
        clock.start(Duration::from_millis(1), Pace::Full);
        assert!(!tick(&mut clock, || ()), "the first tick goes on");
        // Parked for longer than the backstop (20 × 1 ms + 1 s) in all.
        let parked = WALL_GRACE + Duration::from_millis(100);
        assert!(!tick(&mut clock, || std::thread::sleep(parked)));
        assert!(!tick(&mut clock, || ()), "parked time is not runnable time");
    }

    #[test]
    fn the_wall_clock_backstop_ends_a_call_that_never_runs() {
        let mut clock = CallClock::default();
        clock.start(Duration::from_millis(1), Pace::Full);
        std::thread::sleep(WALL_GRACE + Duration::from_millis(30));
        assert!(tick(&mut clock, || ()));
    }
}
