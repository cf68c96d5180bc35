//! A librdkafka producer that counts acknowledgements and never retries, so
//! that a topic never holds a record twice (a duplicate in the topic would
//! be blamed on wasmsink). For records that carry their produce time it
//! also measures produce→acknowledgement latency: the broker's share of the
//! produce→deliver latency.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};

use wasmsink_bench::now_us;
use wasmsink_bench::record::{Placement, scan};
use wasmsink_bench::tracker::Latency;

/// Counts delivery reports and times the acknowledgements.
#[derive(Default)]
struct Acknowledgements {
    delivered: AtomicU64,
    failed: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

impl ClientContext for Acknowledgements {}

impl ProducerContext for Acknowledgements {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        let Ok(message) = result else {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let produced_us = message
            .payload()
            .and_then(scan)
            .map_or(0, |f| f.produced_us);
        if produced_us > 0 {
            let latency = now_us().saturating_sub(produced_us);
            self.latencies_us.lock().expect("latencies").push(latency);
        }
    }
}

/// A producer polled by its own background thread.
pub struct Producer {
    inner: ThreadedProducer<Acknowledgements>,
    sent: u64,
}

impl Producer {
    /// Connects to `brokers`. A `paced` producer sends each record at once;
    /// otherwise records are batched for throughput. Either way one request
    /// is in flight at a time: the records queued meanwhile travel together,
    /// which keeps tansu's request rate (and so its latency) low.
    pub fn new(brokers: &str, paced: bool) -> anyhow::Result<Self> {
        let inner = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("message.send.max.retries", "0")
            .set("linger.ms", if paced { "0" } else { "5" })
            .set("max.in.flight.requests.per.connection", "1")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "200000")
            .create_with_context(Acknowledgements::default())
            .context("creating the Kafka producer")?;
        Ok(Self { inner, sent: 0 })
    }

    /// Queues one record, waiting while the local queue is full.
    pub fn send(&mut self, placement: &Placement<'_>, value: &[u8]) -> anyhow::Result<()> {
        let mut record = BaseRecord::to(placement.topic)
            .partition(placement.partition)
            .key(placement.key.as_str())
            .payload(value);
        loop {
            match self.inner.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(error).context("queueing a record"),
            }
        }
        self.sent += 1;
        Ok(())
    }

    /// Waits up to `timeout` for every record to be acknowledged; the count
    /// and the acknowledgement latency, or an error if any record failed or
    /// is still pending.
    pub fn finish(self, timeout: Duration) -> anyhow::Result<(u64, Latency)> {
        self.inner.flush(timeout).context("flushing the producer")?;
        let context = self.inner.context();
        let delivered = context.delivered.load(Ordering::Relaxed);
        let failed = context.failed.load(Ordering::Relaxed);
        anyhow::ensure!(
            failed == 0 && delivered == self.sent,
            "{} of {} records were not acknowledged ({failed} failed)",
            self.sent - delivered,
            self.sent
        );
        let latency = Latency::of(&context.latencies_us.lock().expect("latencies"));
        Ok((delivered, latency))
    }
}
