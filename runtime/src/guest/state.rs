//! Per-store host state: the WASI context (no files, network or environment),
//! the memory cap, the call deadline and the guest's logging.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::LogLevel;
use super::bindings::transform::wasmsink::plugin::logging;

/// Bytes of guest stderr kept to explain a trap.
const STDERR_CAPACITY: usize = 4096;
/// Longest guest log message passed on; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 2048;
/// Guest log messages allowed per second per instance, and the burst.
const LOG_RATE_PER_SEC: f64 = 50.0;
const LOG_BURST: f64 = 100.0;
/// Most table elements an instance may hold.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The data of one guest `Store`.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    memory: MemoryCap,
    deadline: Instant,
    connector: Arc<str>,
    log_budget: TokenBucket,
}

impl GuestState {
    /// State for a new instance of `connector`'s guest.
    pub fn new(connector: Arc<str>, max_memory_bytes: usize) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // Defaults deny everything: no preopened directories, no environment,
        // no arguments, stdin closed, sockets refused. Only stderr is captured.
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        Self {
            wasi,
            table: ResourceTable::new(),
            stderr,
            memory: MemoryCap {
                max_bytes: max_memory_bytes,
                refused: false,
            },
            deadline: Instant::now(),
            connector,
            log_budget: TokenBucket::new(),
        }
    }

    /// The limiter wasmtime consults when memories and tables grow.
    pub fn limits(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.memory
    }

    /// True once the guest has been refused memory.
    pub fn memory_refused(&self) -> bool {
        self.memory.refused
    }

    /// When the current call must end.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Sets when the next call must end.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    /// What the guest wrote to stderr, as text (the start of it, capped).
    pub fn stderr_tail(&self) -> String {
        sanitize(&String::from_utf8_lossy(&self.stderr.contents()))
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl logging::Host for GuestState {
    fn log(&mut self, level: LogLevel, context: String, message: String) {
        if !level_enabled(level) || !self.log_budget.take() {
            return;
        }
        let mut message = sanitize(&message);
        if message.len() > MAX_LOG_MESSAGE {
            let cut = (0..=MAX_LOG_MESSAGE)
                .rev()
                .find(|i| message.is_char_boundary(*i))
                .unwrap_or(0);
            message.truncate(cut);
            message.push_str("...");
        }
        let context = sanitize(&context);
        let connector = &*self.connector;
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "wasmsink::guest", connector, context, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "wasmsink::guest", connector, context, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "wasmsink::guest", connector, context, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "wasmsink::guest", connector, context, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "wasmsink::guest", connector, context, "{message}")
            }
        }
    }

    fn enabled(&mut self, level: LogLevel) -> bool {
        level_enabled(level)
    }
}

fn level_enabled(level: LogLevel) -> bool {
    let level = match level {
        LogLevel::Trace => tracing::Level::TRACE,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    level <= tracing::level_filters::LevelFilter::current()
}

/// Replaces control characters so guest text cannot forge log lines or
/// terminal escapes.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Caps linear memory; the refusal traps the guest (rather than letting its
/// allocator abort with an unclear error) and is remembered for the report.
struct MemoryCap {
    max_bytes: usize,
    refused: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = true;
            return Err(wasmtime::format_err!(
                "the guest asked for {desired} bytes of memory, past its {}-byte limit",
                self.max_bytes
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A token bucket limiting guest log messages.
struct TokenBucket {
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn new() -> Self {
        Self {
            tokens: LOG_BURST,
            refilled: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * LOG_RATE_PER_SEC).min(LOG_BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
