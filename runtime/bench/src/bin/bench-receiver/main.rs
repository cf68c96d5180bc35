//! `bench-receiver`: the benchmark's HTTP callback.
//!
//! Every request except `GET /stats` is a delivery. It answers
//! `200 {"retry":false}` and counts the record it carries (see
//! `wasmsink_bench::tracker`), or, for a configured share of requests,
//! `503 {"retry":true}` without counting it. `--delay-ms` makes every
//! answer that much slower. `GET /stats` returns the counts as one flat JSON
//! object. The first line on stdout is `listening on ADDRESS`.

mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use service::{Faults, Receiver};

/// A counting HTTP receiver for the wasmsink benchmark.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Share of delivery requests (0 to 1) answered `503 {"retry":true}`.
    #[arg(long, default_value_t = 0.0)]
    fail_fraction: f64,
    /// Milliseconds added before answering each delivery request.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fail_fraction),
        "--fail-fraction must be between 0 and 1"
    );
    let faults = Faults::new(args.fail_fraction, Duration::from_millis(args.delay_ms));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args.listen, Arc::new(Receiver::new(faults))))
}

/// Accepts connections until the process is killed.
async fn serve(address: SocketAddr, receiver: Arc<Receiver>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let receiver = receiver.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| receiver.clone().handle(request));
            // A client closing its connection mid-request is not our concern.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
