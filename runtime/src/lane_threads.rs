//! The threads partition lanes run on.
//!
//! A lane spends its life waiting: for its partition's queue, for the
//! callback's answer, for a back-off. On tokio's work-stealing scheduler
//! every such wake-up may also wake an idle worker to steal the task, a
//! futex call and a context switch for work that one thread would have done
//! alone. So lanes run on their own threads instead, one single-threaded
//! runtime each, as many as tokio would start workers (`TOKIO_WORKER_THREADS`,
//! else one per core). A lane stays on the thread it starts on, and the
//! lane's connection, timers and guest calls are all served there; a new
//! lane goes to the thread running the fewest lanes.
//!
//! The rest of the process (REST APIs, supervision, commits) stays on the
//! main multi-threaded runtime.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::runtime::{Builder, Handle};
use tokio::task::JoinHandle;

/// A set of lane threads.
struct LaneThreads(Vec<LaneThread>);

/// One lane thread: its runtime and how many lanes it runs.
struct LaneThread {
    runtime: Handle,
    lanes: Arc<AtomicUsize>,
}

/// Runs a lane on the lane thread with the fewest lanes. The threads start
/// on first use.
pub fn spawn<F>(lane: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    static THREADS: OnceLock<LaneThreads> = OnceLock::new();
    THREADS
        .get_or_init(|| LaneThreads::start(thread_count()))
        .spawn(lane)
}

/// `TOKIO_WORKER_THREADS` when set to a positive number, else the cores
/// this process may use.
fn thread_count() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .filter(|&count: &usize| count > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

impl LaneThreads {
    /// Starts `count` threads; they run until the process exits.
    fn start(count: usize) -> Self {
        Self((0..count.max(1)).map(LaneThread::start).collect())
    }

    fn spawn<F>(&self, lane: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let thread = self
            .0
            .iter()
            .min_by_key(|thread| thread.lanes.load(Ordering::Relaxed))
            .expect("at least one lane thread");
        let counted = LaneCount::new(&thread.lanes);
        thread.runtime.spawn(async move {
            let _counted = counted;
            lane.await
        })
    }
}

impl LaneThread {
    fn start(index: usize) -> Self {
        let runtime = Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a lane runtime");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name(format!("wasmsink-lane-{index}"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("a lane thread");
        Self {
            runtime: handle,
            lanes: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// Counts a lane on its thread until the lane ends (or is dropped).
struct LaneCount(Arc<AtomicUsize>);

impl LaneCount {
    fn new(lanes: &Arc<AtomicUsize>) -> Self {
        lanes.fetch_add(1, Ordering::Relaxed);
        Self(lanes.clone())
    }
}

impl Drop for LaneCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tokio::sync::oneshot;

    /// The name of the thread a lane ran on, once `release` fires.
    async fn lane(release: oneshot::Receiver<()>) -> String {
        let _ = release.await;
        std::thread::current().name().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn lanes_go_to_the_thread_with_the_fewest() {
        let threads = LaneThreads::start(2);
        let (releases, lanes): (Vec<_>, Vec<_>) = (0..4)
            .map(|_| {
                let (release, wait) = oneshot::channel();
                (release, threads.spawn(lane(wait)))
            })
            .unzip();
        let counts: Vec<usize> = threads
            .0
            .iter()
            .map(|t| t.lanes.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [2, 2], "four lanes on two threads, two each");

        for release in releases {
            release.send(()).unwrap();
        }
        let mut per_thread: BTreeMap<String, usize> = BTreeMap::new();
        for lane in lanes {
            *per_thread.entry(lane.await.unwrap()).or_default() += 1;
        }
        assert_eq!(
            per_thread.into_iter().collect::<Vec<_>>(),
            [
                ("wasmsink-lane-0".to_owned(), 2),
                ("wasmsink-lane-1".to_owned(), 2)
            ]
        );
        let counts: Vec<usize> = threads
            .0
            .iter()
            .map(|t| t.lanes.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [0, 0], "finished lanes are no longer counted");
    }

    #[tokio::test]
    async fn a_new_lane_fills_the_thread_a_finished_lane_left() {
        let threads = LaneThreads::start(2);
        let (_keep_first, wait) = oneshot::channel();
        let _first = threads.spawn(lane(wait));
        let (release_second, wait) = oneshot::channel();
        let second = threads.spawn(lane(wait));
        release_second.send(()).unwrap();
        let freed = second.await.unwrap();

        // Taking turns would put the third lane next to the first.
        let (release_third, wait) = oneshot::channel();
        let third = threads.spawn(lane(wait));
        release_third.send(()).unwrap();
        assert_eq!(third.await.unwrap(), freed);
    }
}
