//! Per-store host state: the WASI context (no files, network or
//! environment), the memory cap, the call deadline and the guest's log.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::LogLevel;
use super::bindings::transform::wasmsink::plugin::logging;
use super::clock::CallClock;
use super::output::{GuestLog, Level};

/// Most table elements an instance may hold.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The data of one guest `Store`.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    clock: CallClock,
    log: GuestLog,
}

impl GuestState {
    /// State for a new instance of `connector`'s guest.
    pub fn new(connector: Arc<str>, max_memory_bytes: usize) -> Self {
        let log = GuestLog::new(connector);
        // Defaults deny everything: no preopened directories, no environment,
        // no arguments, stdin closed, every socket address refused. Only
        // stdout and stderr are routed, into the runtime's log.
        let wasi = WasiCtx::builder()
            .stdout(log.stream(false))
            .stderr(log.stream(true))
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                max_bytes: max_memory_bytes,
                refused: false,
            },
            clock: CallClock::default(),
            log,
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

    /// The budget of the current call.
    pub fn call_clock(&mut self) -> &mut CallClock {
        &mut self.clock
    }

    /// The end of the guest's stderr, to explain a trap.
    pub fn stderr_tail(&self) -> String {
        self.log.stderr_tail()
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
        self.log.write(to_level(level), &context, &message);
    }

    fn enabled(&mut self, level: LogLevel) -> bool {
        GuestLog::enabled(to_level(level))
    }
}

fn to_level(level: LogLevel) -> Level {
    match level {
        LogLevel::Trace => Level::Trace,
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error => Level::Error,
    }
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
