//! Call deadlines that count the CPU time a guest call uses.
//!
//! A wall-clock deadline cuts a healthy call short whenever the machine is
//! busy (a 10 ms `decide` budget is easily exceeded by a thread waiting for
//! a core). So a call is interrupted when it has *used* its budget of CPU
//! time on its thread, or when it has run for [`WALL_FACTOR`] times its
//! budget plus [`WALL_GRACE`] in wall-clock time, whichever comes first.
//!
//! Reading a thread's CPU clock is a system call, so nothing is read when a
//! call starts: the epoch ticker's first tick during a call takes the
//! baseline (the time before it counts in full, at most one tick), later
//! ticks compare against it (the time before the first tick counts as at
//! most two ticks). Calls shorter than a tick cost one
//! `Instant::now()`.

use std::time::{Duration, Instant};

/// Wall-clock backstop: a call may take this many times its budget…
pub const WALL_FACTOR: u32 = 20;
/// …plus this much, before it is interrupted whatever its CPU use.
pub const WALL_GRACE: Duration = Duration::from_secs(1);

/// The time before the first tick counts as CPU time, up to this much (a
/// tick or two; more means the thread was waiting for a core).
const PRE_BASELINE_CAP: Duration = Duration::from_millis(2);

/// The budget of the call in progress on a store.
#[derive(Debug, Clone)]
pub struct CallClock {
    started: Instant,
    budget: Duration,
    baseline: Option<(Duration, Instant)>,
}

impl Default for CallClock {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            budget: Duration::ZERO,
            baseline: None,
        }
    }
}

impl CallClock {
    /// A call with `budget` of CPU time starts now.
    pub fn start(&mut self, budget: Duration) {
        *self = Self {
            started: Instant::now(),
            budget,
            baseline: None,
        };
    }

    /// Called on each epoch tick during the call: true once the budget is spent.
    pub fn spent(&mut self) -> bool {
        let now = Instant::now();
        let wall = now.duration_since(self.started);
        if wall >= self.budget.saturating_mul(WALL_FACTOR) + WALL_GRACE {
            return true;
        }
        let cpu_now = thread_cpu_time();
        match self.baseline {
            None => {
                self.baseline = Some((cpu_now, now));
                false
            }
            Some((cpu_then, then)) => {
                let before_baseline = then.duration_since(self.started).min(PRE_BASELINE_CAP);
                cpu_now.saturating_sub(cpu_then) + before_baseline >= self.budget
            }
        }
    }
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

    #[test]
    fn a_busy_call_spends_its_budget_and_a_sleeping_one_does_not() {
        let mut clock = CallClock::default();
        clock.start(Duration::from_millis(20));
        assert!(!clock.spent(), "the first tick only takes the baseline");
        std::thread::sleep(Duration::from_millis(60));
        assert!(!clock.spent(), "waiting for a core is not the guest's time");
        let cpu_before = thread_cpu_time();
        while thread_cpu_time() - cpu_before < Duration::from_millis(25) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        assert!(clock.spent(), "25 ms of CPU exceeds a 20 ms budget");
    }

    #[test]
    fn the_wall_clock_backstop_ends_a_call_that_never_runs() {
        let mut clock = CallClock::default();
        clock.start(Duration::from_millis(1));
        std::thread::sleep(WALL_GRACE + Duration::from_millis(30));
        assert!(clock.spent());
    }
}
