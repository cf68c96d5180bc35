//! The epoch ticker: advances the engine's epoch every [`EPOCH_TICK`] while
//! guest calls run, so that their deadlines are checked, and sleeps once no
//! call has started or been in progress for [`IDLE_TICKS`] ticks, so that an
//! idle wasmsink does not wake a thousand times a second. Under load it
//! never sleeps, so a call never pays for waking it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::Engine;

/// How often the ticker advances the engine's epoch while calls run.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Ticks without a call in progress before the ticker sleeps.
const IDLE_TICKS: u32 = 100;
/// How long a sleeping ticker waits before it checks whether its engine is
/// gone (a call wakes it at once).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A handle on the engine's ticker; clones share it.
#[derive(Clone)]
pub struct EpochTicker(Arc<Shared>);

struct Shared {
    /// Guest calls in progress.
    calls: AtomicUsize,
    /// Guest calls started so far (wrapping).
    started: AtomicUsize,
    /// True while the ticker thread sleeps.
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

/// A guest call in progress; the ticker keeps ticking until it is dropped.
pub struct CallInProgress(Arc<Shared>);

impl Drop for CallInProgress {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    /// Starts the ticker thread of `engine`; it ends once the engine is dropped.
    pub fn start(engine: &Engine) -> Self {
        let shared = Arc::new(Shared {
            calls: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            sleeping: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let weak = engine.weak();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wasmsink-epoch".into())
            .spawn(move || {
                let (mut idle, mut last_started) = (0, 0);
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    let started = state.started.load(Ordering::SeqCst);
                    let busy = started != last_started || state.calls.load(Ordering::SeqCst) > 0;
                    last_started = started;
                    idle = if busy { 0 } else { idle + 1 };
                    if idle < IDLE_TICKS {
                        std::thread::sleep(EPOCH_TICK);
                        continue;
                    }
                    // Announce the sleep, then look for calls once more: a
                    // call that starts meanwhile either is seen here or
                    // sees `sleeping` and wakes the thread. Woken by a call,
                    // the next round sees it started and ticks on; after a
                    // timeout, it sleeps again after one tick.
                    state.sleeping.store(true, Ordering::SeqCst);
                    if state.started.load(Ordering::SeqCst) == last_started {
                        std::thread::park_timeout(IDLE_CHECK);
                    }
                    state.sleeping.store(false, Ordering::SeqCst);
                }
            })
            .expect("spawning the epoch ticker thread");
        let _ = shared.thread.set(thread.thread().clone());
        Self(shared)
    }

    /// Marks a guest call as in progress (waking the ticker if it sleeps)
    /// until the returned guard is dropped.
    pub fn call(&self) -> CallInProgress {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        self.0.started.fetch_add(1, Ordering::SeqCst);
        if self.0.sleeping.load(Ordering::SeqCst)
            && let Some(thread) = self.0.thread.get()
        {
            thread.unpark();
        }
        CallInProgress(self.0.clone())
    }

    /// True while the ticker sleeps for want of calls.
    #[cfg(test)]
    pub fn sleeping(&self) -> bool {
        self.0.sleeping.load(Ordering::SeqCst)
    }
}
