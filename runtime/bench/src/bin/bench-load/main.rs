//! `bench-load`: produces benchmark records (see `wasmsink_bench::record`).
//!
//! - `bench-load produce` fills topics as fast as the broker takes them, or,
//!   with `--rate`, produces at that rate with each record's produce time in
//!   its value (the latency run). It exits non-zero unless every record was
//!   acknowledged.
//! - `bench-load consume` times produce→consume latency with a plain
//!   consumer: the floor under wasmsink's produce→deliver latency.
//! - `bench-load sample` prints one record value, for plain load generators
//!   that must send the same body size.
//! - `bench-load fixed` produces the same value many times to one
//!   partition, for scenarios that drive a test guest (`loop`, `panic`).

mod consumer;
mod producer;

use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use wasmsink_bench::now_us;
use wasmsink_bench::record::{Fields, Plan, encode};

use producer::Producer;

/// Kafka load generator for the wasmsink benchmark.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produces records to topics that already exist.
    Produce(Produce),
    /// Times produce→consume latency with a plain consumer.
    Consume(Consume),
    /// Produces one value, again and again, to partition 0 of one topic.
    Fixed {
        /// Kafka bootstrap servers.
        #[arg(long)]
        brokers: String,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// The value of every record.
        #[arg(long)]
        value: String,
        /// How many records.
        #[arg(long, default_value_t = 1)]
        records: u64,
    },
    /// Prints one record value of the given size.
    Sample {
        /// Size of the value in bytes.
        #[arg(long, default_value_t = 256)]
        value_size: usize,
    },
}

/// The broker and the topics, as every command names them.
#[derive(Debug, Args)]
struct Topics {
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Topics, comma-separated (filled in turn).
    #[arg(long, value_delimiter = ',', required = true)]
    topics: Vec<String>,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 12)]
    partitions: u32,
}

#[derive(Debug, Args)]
struct Produce {
    #[command(flatten)]
    target: Topics,
    /// Records to produce, across all topics.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Distinct keys per topic.
    #[arg(long, default_value_t = 1_200)]
    keys: u32,
    /// Size of each value in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Key 0 carries half of the records; the other keys share the rest.
    #[arg(long)]
    hot_key: bool,
    /// Per-topic index of the first record: pass the records already in
    /// each topic so that every key's sequence keeps growing.
    #[arg(long, default_value_t = 0)]
    first_index: u64,
    /// Records per second across all topics, with produce times embedded;
    /// as fast as possible (and no produce times) when absent.
    #[arg(long)]
    rate: Option<f64>,
}

#[derive(Debug, Args)]
struct Consume {
    #[command(flatten)]
    source: Topics,
    /// Records without a produce time to read first; `caught up` is
    /// printed once they are read.
    #[arg(long, default_value_t = 0)]
    skip: u64,
    /// Records with a produce time to time.
    #[arg(long)]
    records: u64,
    /// A consumer property, KEY=VALUE (repeatable).
    #[arg(long = "property", value_parser = parse_property)]
    properties: Vec<(String, String)>,
    /// Seconds to wait for all the records.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((key.trim().to_owned(), value.trim().to_owned()))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Produce(args) => produce(args),
        Command::Consume(args) => {
            let request = consumer::Consume {
                brokers: &args.source.brokers,
                topics: &args.source.topics,
                partitions: args.source.partitions,
                skip: args.skip,
                records: args.records,
                properties: &args.properties,
            };
            let latency = consumer::consume(&request, Duration::from_secs(args.timeout_secs))?;
            println!(
                "consumed {} records; produce->consume latency p50_ms={:.2} p99_ms={:.2}",
                latency.samples,
                latency.p50_us as f64 / 1e3,
                latency.p99_us as f64 / 1e3
            );
            Ok(())
        }
        Command::Fixed {
            brokers,
            topic,
            value,
            records,
        } => {
            let mut producer = Producer::new(&brokers, false)?;
            for seq in 0..records {
                let placement = wasmsink_bench::record::Placement {
                    topic: &topic,
                    partition: 0,
                    key: format!("fixed/{seq}"),
                    seq,
                };
                producer.send(&placement, value.as_bytes())?;
            }
            let (acknowledged, _) = producer.finish(Duration::from_secs(60))?;
            println!("produced {acknowledged} records of {value:?} to {topic}");
            Ok(())
        }
        Command::Sample { value_size } => {
            let fields = Fields {
                key: "sample/k0000",
                seq: 0,
                produced_us: 0,
            };
            let mut value = String::new();
            encode(fields, value_size, &mut value)?;
            println!("{value}");
            Ok(())
        }
    }
}

fn produce(args: Produce) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.target.partitions > 0 && args.keys > 0,
        "--partitions and --keys must be positive"
    );
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be positive");
    }
    let plan = Plan {
        topics: args.target.topics,
        partitions: args.target.partitions,
        keys: args.keys,
        first_index: args.first_index,
        hot_key: args.hot_key,
    };
    let mut producer = Producer::new(&args.target.brokers, args.rate.is_some())?;
    let started = Instant::now();
    let mut value = String::with_capacity(args.value_size);
    for g in 0..args.records {
        let produced_us = match args.rate {
            Some(rate) => {
                pace(started, g, rate);
                now_us()
            }
            None => 0,
        };
        let placement = plan.place(g);
        let fields = Fields {
            key: &placement.key,
            seq: placement.seq,
            produced_us,
        };
        encode(fields, args.value_size, &mut value)?;
        producer.send(&placement, value.as_bytes())?;
    }
    let sending = started.elapsed().as_secs_f64();
    let (acknowledged, latency) = producer.finish(Duration::from_secs(60))?;
    print!(
        "produced {acknowledged} records at {:.0} records/s ({sending:.2} s, all acknowledged after {:.2} s)",
        acknowledged as f64 / sending,
        started.elapsed().as_secs_f64()
    );
    if latency.samples > 0 {
        print!(
            "; produce->ack latency p50_ms={:.2} p99_ms={:.2}",
            latency.p50_us as f64 / 1e3,
            latency.p99_us as f64 / 1e3
        );
    }
    println!();
    Ok(())
}

/// Sleeps until the `g`-th record is due at `rate` records per second.
fn pace(started: Instant, g: u64, rate: f64) {
    let due = started + Duration::from_secs_f64(g as f64 / rate);
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}
