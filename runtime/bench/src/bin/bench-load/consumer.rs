//! `bench-load consume`: a plain librdkafka consumer that times each
//! record's produce→consume latency, the floor under wasmsink's
//! produce→deliver latency measured in the same run.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use wasmsink_bench::now_us;
use wasmsink_bench::record::scan;
use wasmsink_bench::tracker::Latency;

/// What to consume and how.
pub struct Consume<'a> {
    pub brokers: &'a str,
    pub topics: &'a [String],
    pub partitions: u32,
    /// Records without a produce time to read first (the fill).
    pub skip: u64,
    /// Records with a produce time to time before exiting.
    pub records: u64,
    /// Extra consumer properties (wasmsink's `[kafka]` section).
    pub properties: &'a [(String, String)],
}

/// Reads every partition from the beginning; prints `caught up` once the
/// `skip` fill records are read, then times `records` records.
pub fn consume(args: &Consume<'_>, timeout: Duration) -> anyhow::Result<Latency> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", args.brokers)
        .set("group.id", "bench-latency-floor")
        .set("enable.auto.commit", "false");
    for (key, value) in args.properties {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    let mut assignment = TopicPartitionList::new();
    for topic in args.topics {
        for partition in 0..args.partitions {
            let partition = i32::try_from(partition)?;
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    let (mut skipped, mut latencies_us) = (0, Vec::new());
    if args.skip == 0 {
        println!("caught up");
    }
    while (latencies_us.len() as u64) < args.records {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out with {} of {} timed records",
            latencies_us.len(),
            args.records
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        let produced_us = message
            .payload()
            .and_then(scan)
            .map_or(0, |f| f.produced_us);
        if produced_us > 0 {
            latencies_us.push(now_us().saturating_sub(produced_us));
        } else {
            skipped += 1;
            if skipped == args.skip {
                println!("caught up");
            }
        }
    }
    Ok(Latency::of(&latencies_us))
}
