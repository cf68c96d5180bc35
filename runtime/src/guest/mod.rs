//! The guest host: runs WebAssembly component guests with wasmtime.
//!
//! * One [`GuestEngine`] per process: one wasmtime `Engine` (component model,
//!   epoch interruption), one `Linker`, an epoch ticker thread, and the
//!   built-in guest compiled once.
//! * One [`PreparedGuest`] per connector: the component pre-instantiated and
//!   type-checked against the WIT worlds before the first record, plus the
//!   configuration handed to `init`.
//! * One [`GuestInstance`] per partition lane: a `Store` and an instance,
//!   reused record after record. Any error from a guest call poisons the
//!   store, so the lane drops the instance and builds a fresh one.

pub mod bindings;
mod cache;
mod clock;
mod output;
mod plan;
mod state;
mod ticker;
pub mod tool;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, PoolingAllocationConfig, Store, Trap, UpdateDeadline};

use bindings::{
    AttemptInfo, AttemptOutcome, KafkaRecord, RecordRef, RetryDecision, TransformOutcome,
};
pub use cache::{CacheOutcome, CompileCache};
use clock::{Pace, Tick};
pub use plan::{GuestPlan, LaneGuests};
use state::GuestState;
use ticker::EpochTicker;

/// The built-in guest component, built by `build.rs` from `runtime/builtin-guest`.
pub const BUILTIN_GUEST_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/wasmsink_builtin_guest.wasm"));

/// Largest `.wasm` file accepted.
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;
/// Largest request body a `transform` may return.
pub const MAX_REQUEST_BODY: usize = 16 << 20;
/// Most headers a `transform` may return, and the longest header line.
const MAX_GUEST_HEADERS: usize = 100;
const MAX_HEADER_BYTES: usize = 8 << 10;
/// Longest path-and-query or reason a guest may return.
const MAX_TEXT_BYTES: usize = 8 << 10;
/// Largest linear memory any connector may allow; the pooling allocator
/// reserves slots of this size.
const MAX_GUEST_MEMORY: usize = 1 << 30;
/// Guest instances the pooling allocator holds by default
/// (`WASMSINK_GUEST_INSTANCES` overrides it): one per partition lane, two
/// when a custom guest falls back to the built-in one for an export.
const DEFAULT_POOLED_INSTANCES: u32 = 1000;

/// How the process-wide engine is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// Where compiled guests are kept; `None` compiles at every start.
    pub cache_dir: Option<PathBuf>,
    /// Try the pooling allocator (falls back to on-demand allocation when the
    /// machine cannot reserve its address space).
    pub pooling: bool,
    /// Instances the pool holds.
    pub pooled_instances: u32,
}

impl EngineOptions {
    /// From the environment: `WASMSINK_CACHE_DIR` (default
    /// `$XDG_CACHE_HOME/wasmsink/guests` or `~/.cache/wasmsink/guests`),
    /// `WASMSINK_POOLING=off` and `WASMSINK_GUEST_INSTANCES`.
    pub fn from_env() -> Self {
        let cache_dir = std::env::var_os("WASMSINK_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("wasmsink/guests"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/wasmsink/guests"))
            });
        let pooling = std::env::var("WASMSINK_POOLING").map_or(true, |v| v != "off");
        let pooled_instances = std::env::var("WASMSINK_GUEST_INSTANCES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_POOLED_INSTANCES);
        Self {
            cache_dir,
            pooling,
            pooled_instances,
        }
    }
}

/// Per-call and per-instance resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    /// Deadline for one `init` call.
    pub init_timeout: Duration,
    /// Deadline for one `transform` call.
    pub transform_timeout: Duration,
    /// Deadline for one `decide` call.
    pub decide_timeout: Duration,
    /// Largest linear memory one instance may grow to.
    pub max_memory_bytes: usize,
}

impl Default for GuestLimits {
    fn default() -> Self {
        Self {
            init_timeout: Duration::from_secs(1),
            transform_timeout: Duration::from_millis(100),
            decide_timeout: Duration::from_millis(10),
            max_memory_bytes: 64 << 20,
        }
    }
}

/// Which guest export a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestCall {
    /// `lifecycle.init`.
    Init,
    /// `transformer.transform`.
    Transform,
    /// `retry-policy.decide`.
    Decide,
}

impl std::fmt::Display for GuestCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Init => "init",
            Self::Transform => "transform",
            Self::Decide => "decide",
        })
    }
}

/// Why a guest could not be loaded or a guest call failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is larger than [`MAX_COMPONENT_BYTES`].
    #[error("the guest is {0} bytes; the limit is {MAX_COMPONENT_BYTES} bytes")]
    TooBig(usize),
    /// A core WebAssembly module, precompiled code or not WebAssembly at all.
    #[error("{0}")]
    NotAComponent(String),
    /// The bytes are not a WebAssembly component wasmtime can compile.
    #[error("the guest is not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component imports something the host does not provide, or its
    /// exports do not match the WIT contract.
    #[error("the guest does not fit the wasmsink:plugin@0.1.0 contract: {0}")]
    Contract(String),
    /// `init` returned an error.
    #[error("the guest's init refused its configuration: {0}")]
    InitRefused(String),
    /// A call ran past its deadline and was interrupted.
    #[error("the guest's {call} call ran past its {limit:?} deadline")]
    Timeout {
        /// The call that timed out.
        call: GuestCall,
        /// The deadline it ran past.
        limit: Duration,
    },
    /// The guest tried to grow its memory past the cap.
    #[error("the guest's {call} call ran out of memory (limit {limit_bytes} bytes)")]
    OutOfMemory {
        /// The call that ran out of memory.
        call: GuestCall,
        /// The memory cap.
        limit_bytes: usize,
    },
    /// The guest trapped (a panic, an out-of-bounds access, ...).
    #[error("the guest's {call} call trapped: {message}")]
    Trap {
        /// The call that trapped.
        call: GuestCall,
        /// The trap and the tail of the guest's stderr, if any.
        message: String,
    },
    /// The guest returned more than the host accepts.
    #[error("the guest's {call} call returned {what}")]
    OutputTooLarge {
        /// The call.
        call: GuestCall,
        /// What was too large.
        what: String,
    },
}

impl GuestError {
    /// True for failures of a call on a live instance (trap, timeout, out of
    /// memory, oversized output), as opposed to loading or `init` problems.
    pub fn is_call_failure(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. }
                | Self::OutOfMemory { .. }
                | Self::Trap { .. }
                | Self::OutputTooLarge { .. }
        )
    }
}

/// Reads a component file: its size is checked before a byte is read, and
/// no more than [`MAX_COMPONENT_BYTES`] are read, so a huge or endless file
/// costs nothing.
fn read_component_file(path: &Path) -> Result<Vec<u8>, GuestError> {
    let read_error = |error: std::io::Error| GuestError::Read {
        path: path.to_owned(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(read_error(std::io::Error::other("not a regular file")));
    }
    let cap = MAX_COMPONENT_BYTES as u64;
    if metadata.len() > cap {
        return Err(GuestError::TooBig(
            usize::try_from(metadata.len()).unwrap_or(usize::MAX),
        ));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, cap + 1), &mut bytes)
        .map_err(read_error)?;
    Ok(bytes)
}

/// Checks that `bytes` are a WebAssembly component, explaining what they are otherwise.
pub fn check_component_bytes(bytes: &[u8]) -> Result<(), GuestError> {
    if bytes.len() > MAX_COMPONENT_BYTES {
        return Err(GuestError::TooBig(bytes.len()));
    }
    if Engine::detect_precompiled(bytes).is_some() {
        return Err(GuestError::NotAComponent(
            "this is precompiled native code (.cwasm); wasmsink only accepts .wasm components and compiles them itself".into(),
        ));
    }
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00]) => Ok(()),
        Some([0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00]) => Err(GuestError::NotAComponent(
            "this is a core WebAssembly module, not a component: build for the wasm32-wasip2 target \
             (or wrap it with `wasm-tools component new`)"
                .into(),
        )),
        Some([0, b'a', b's', b'm', ..]) => {
            Err(GuestError::NotAComponent("this WebAssembly binary has a version or layer wasmtime 48 does not support".into()))
        }
        _ => Err(GuestError::NotAComponent("this is not a WebAssembly binary (no \\0asm header)".into())),
    }
}

/// The process-wide wasmtime engine, linker, compile cache and built-in guest.
#[derive(Clone)]
pub struct GuestEngine {
    engine: Engine,
    ticker: EpochTicker,
    linker: Arc<Linker<GuestState>>,
    builtin: Component,
    cache: Option<CompileCache>,
    pooling: bool,
}

impl GuestEngine {
    /// An engine set up from the environment (see [`EngineOptions::from_env`]).
    pub fn new() -> Result<Self, GuestError> {
        Self::with_options(&EngineOptions::from_env())
    }

    /// Builds the engine, starts its epoch ticker and loads the built-in guest.
    pub fn with_options(options: &EngineOptions) -> Result<Self, GuestError> {
        let (engine, pooling) = build_engine(options)?;
        let ticker = EpochTicker::start(&engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| GuestError::Contract(format!("{e:#}")))?;
        bindings::transform::wasmsink::plugin::logging::add_to_linker::<
            GuestState,
            HasSelf<GuestState>,
        >(&mut linker, |state| state)
        .map_err(|e| GuestError::Contract(format!("{e:#}")))?;

        let cache = options.cache_dir.as_deref().and_then(CompileCache::open);
        let builtin = compile_with(&engine, cache.as_ref(), BUILTIN_GUEST_WASM)?;
        Ok(Self {
            engine,
            ticker,
            linker: Arc::new(linker),
            builtin,
            cache,
            pooling,
        })
    }

    /// True when instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// The compile cache, when one is in use.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.cache.as_ref()
    }

    /// Reads, checks and compiles a `.wasm` component (from the cache when
    /// it was compiled before), off the async runtime's threads.
    pub async fn load(&self, path: &Path) -> Result<Component, GuestError> {
        let this = self.clone();
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let bytes = read_component_file(&path)?;
            check_component_bytes(&bytes)?;
            this.compile(&bytes)
        })
        .await
        .map_err(|e| GuestError::Compile(e.to_string()))?
    }

    /// Compiles component bytes, through the cache when there is one.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, GuestError> {
        compile_with(&self.engine, self.cache.as_ref(), bytes)
    }

    /// The names of a component's exports, for diagnostics.
    pub fn export_names(&self, component: &Component) -> Vec<String> {
        component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// The names of a component's imports, for diagnostics.
    pub fn import_names(&self, component: &Component) -> Vec<String> {
        component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// Pre-instantiates the built-in guest for a connector.
    pub fn prepare_builtin(
        &self,
        connector: &str,
        init_config: Vec<(String, String)>,
        limits: GuestLimits,
    ) -> Result<PreparedGuest, GuestError> {
        self.prepare(&self.builtin, connector, init_config, limits)
    }

    /// Pre-instantiates a compiled component, checking it against the WIT
    /// worlds: it must export the transformer, the retry policy or both.
    pub fn prepare(
        &self,
        component: &Component,
        connector: &str,
        init_config: Vec<(String, String)>,
        limits: GuestLimits,
    ) -> Result<PreparedGuest, GuestError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| GuestError::Contract(format!("{e:#}")))?;
        let transform = bindings::transform::TransformPluginIndices::new(&pre).ok();
        let retry = bindings::retry::RetryPluginIndices::new(&pre).ok();
        if transform.is_none() && retry.is_none() {
            return Err(GuestError::Contract(
                "it exports neither wasmsink:plugin/transformer@0.1.0 nor wasmsink:plugin/retry-policy@0.1.0 \
                 (with wasmsink:plugin/lifecycle@0.1.0)"
                    .into(),
            ));
        }
        Ok(PreparedGuest {
            engine: self.engine.clone(),
            ticker: self.ticker.clone(),
            pre,
            transform,
            retry,
            init_config: Arc::new(init_config),
            connector: Arc::from(connector),
            limits,
        })
    }
}

fn compile_with(
    engine: &Engine,
    cache: Option<&CompileCache>,
    bytes: &[u8],
) -> Result<Component, GuestError> {
    let compiled = match cache {
        Some(cache) => cache.load(engine, bytes).map(|(component, _)| component),
        None => Component::new(engine, bytes),
    };
    compiled.map_err(|e| GuestError::Compile(format!("{e:#}")))
}

/// The engine: the pooling allocator when the machine can reserve its
/// address space, on-demand allocation otherwise.
fn build_engine(options: &EngineOptions) -> Result<(Engine, bool), GuestError> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    if options.pooling {
        let instances = options.pooled_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .max_memory_size(MAX_GUEST_MEMORY)
            .table_elements(1_000_000)
            .max_core_instance_size(16 << 20)
            .max_component_instance_size(16 << 20);
        let mut pooled = config.clone();
        pooled.allocation_strategy(pool);
        match Engine::new(&pooled) {
            Ok(engine) => {
                tracing::debug!(instances, "guest engine uses the pooling allocator");
                return Ok((engine, true));
            }
            Err(error) => {
                tracing::warn!(%error, "the pooling allocator is not available here; guests use on-demand allocation")
            }
        }
    }
    let engine = Engine::new(&config).map_err(|e| GuestError::Compile(format!("{e:#}")))?;
    Ok((engine, false))
}

/// A guest component pre-instantiated for one connector.
#[derive(Clone)]
pub struct PreparedGuest {
    engine: Engine,
    ticker: EpochTicker,
    pre: InstancePre<GuestState>,
    transform: Option<bindings::transform::TransformPluginIndices>,
    retry: Option<bindings::retry::RetryPluginIndices>,
    init_config: Arc<Vec<(String, String)>>,
    connector: Arc<str>,
    limits: GuestLimits,
}

impl PreparedGuest {
    /// True when the component exports `transformer`.
    pub fn exports_transform(&self) -> bool {
        self.transform.is_some()
    }

    /// True when the component exports `retry-policy`.
    pub fn exports_decide(&self) -> bool {
        self.retry.is_some()
    }

    /// Builds a fresh instance and calls its `init`.
    pub async fn instantiate(&self) -> Result<GuestInstance, GuestError> {
        let state = GuestState::new(self.connector.clone(), self.limits.max_memory_bytes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state.limits());
        // On every epoch tick of a call that outlives one: interrupt once
        // its CPU budget is spent, otherwise yield so the lanes sharing this
        // thread run (the clock charges only the guest's own segments).
        store.epoch_deadline_callback(|mut ctx| {
            Ok(match ctx.data_mut().call_clock().tick() {
                Tick::Interrupt => UpdateDeadline::Interrupt,
                Tick::Continue => UpdateDeadline::Continue(1),
                Tick::Yield(resume) => UpdateDeadline::YieldCustom(1, resume),
            })
        });
        let _ticking = self.ticker.call();
        arm_deadline(&mut store, self.limits.init_timeout, Pace::Full);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| classify(&store, e, GuestCall::Init, &self.limits))?;
        let transform = match &self.transform {
            Some(indices) => Some(
                indices
                    .load(&mut store, &instance)
                    .map_err(|e| GuestError::Contract(format!("{e:#}")))?,
            ),
            None => None,
        };
        let retry = match &self.retry {
            Some(indices) => Some(
                indices
                    .load(&mut store, &instance)
                    .map_err(|e| GuestError::Contract(format!("{e:#}")))?,
            ),
            None => None,
        };
        let mut instance = GuestInstance {
            ticker: self.ticker.clone(),
            store,
            transform,
            retry,
            limits: self.limits,
        };
        instance.init(&self.init_config).await?;
        Ok(instance)
    }
}

fn arm_deadline(store: &mut Store<GuestState>, timeout: Duration, pace: Pace) {
    store.data_mut().call_clock().start(timeout, pace);
    store.set_epoch_deadline(1);
}

/// A live guest instance owned by one partition lane.
pub struct GuestInstance {
    ticker: EpochTicker,
    store: Store<GuestState>,
    transform: Option<bindings::transform::TransformPlugin>,
    retry: Option<bindings::retry::RetryPlugin>,
    limits: GuestLimits,
}

impl GuestInstance {
    async fn init(&mut self, config: &[(String, String)]) -> Result<(), GuestError> {
        let _ticking = self.ticker.call();
        arm_deadline(&mut self.store, self.limits.init_timeout, Pace::Full);
        let result = match (&self.transform, &self.retry) {
            (Some(plugin), _) => {
                plugin
                    .wasmsink_plugin_lifecycle()
                    .call_init(&mut self.store, config)
                    .await
            }
            (None, Some(plugin)) => {
                plugin
                    .wasmsink_plugin_lifecycle()
                    .call_init(&mut self.store, config)
                    .await
            }
            (None, None) => unreachable!("PreparedGuest checks that one world is exported"),
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(GuestError::InitRefused(message)),
            Err(e) => Err(classify(&self.store, e, GuestCall::Init, &self.limits)),
        }
    }

    /// True when this instance exports `transformer`.
    pub fn has_transform(&self) -> bool {
        self.transform.is_some()
    }

    /// True when this instance exports `retry-policy`.
    pub fn has_decide(&self) -> bool {
        self.retry.is_some()
    }

    /// Calls `transform`. Panics if the instance does not export it.
    pub async fn transform(
        &mut self,
        record: &KafkaRecord,
    ) -> Result<TransformOutcome, GuestError> {
        let plugin = self
            .transform
            .as_ref()
            .expect("the caller checks has_transform");
        let _ticking = self.ticker.call();
        arm_deadline(
            &mut self.store,
            self.limits.transform_timeout,
            Pace::Background,
        );
        let outcome = plugin
            .wasmsink_plugin_transformer()
            .call_transform(&mut self.store, record)
            .await
            .map_err(|e| classify(&self.store, e, GuestCall::Transform, &self.limits))?;
        check_transform_output(&outcome)?;
        Ok(outcome)
    }

    /// Calls `decide`. Panics if the instance does not export it.
    pub async fn decide(
        &mut self,
        record: &RecordRef,
        outcome: &AttemptOutcome,
        info: AttemptInfo,
    ) -> Result<RetryDecision, GuestError> {
        let plugin = self.retry.as_ref().expect("the caller checks has_decide");
        let _ticking = self.ticker.call();
        arm_deadline(
            &mut self.store,
            self.limits.decide_timeout,
            Pace::Background,
        );
        let decision = plugin
            .wasmsink_plugin_retry_policy()
            .call_decide(&mut self.store, record, outcome, info)
            .await
            .map_err(|e| classify(&self.store, e, GuestCall::Decide, &self.limits))?;
        if let RetryDecision::Drop(reason)
        | RetryDecision::DeadLetter(reason)
        | RetryDecision::Stop(reason) = &decision
        {
            check_text(GuestCall::Decide, "reason", reason)?;
        }
        Ok(decision)
    }
}

/// Refuses a `transform` result past the host's caps, before it goes anywhere.
fn check_transform_output(outcome: &TransformOutcome) -> Result<(), GuestError> {
    let too_large = |what: String| GuestError::OutputTooLarge {
        call: GuestCall::Transform,
        what,
    };
    match outcome {
        TransformOutcome::Deliver(request) => {
            if request.body.len() > MAX_REQUEST_BODY {
                return Err(too_large(format!(
                    "a {}-byte body (the limit is {MAX_REQUEST_BODY})",
                    request.body.len()
                )));
            }
            if request.headers.len() > MAX_GUEST_HEADERS {
                return Err(too_large(format!(
                    "{} headers (the limit is {MAX_GUEST_HEADERS})",
                    request.headers.len()
                )));
            }
            if let Some((name, _)) = request
                .headers
                .iter()
                .find(|(n, v)| n.len() + v.len() > MAX_HEADER_BYTES)
            {
                return Err(too_large(format!(
                    "header {name:.64} longer than {MAX_HEADER_BYTES} bytes"
                )));
            }
            if let Some(path) = &request.path_and_query {
                check_text(GuestCall::Transform, "path-and-query", path)?;
            }
            Ok(())
        }
        TransformOutcome::Error(error) => {
            check_text(GuestCall::Transform, "error message", &error.message)
        }
        TransformOutcome::Skip => Ok(()),
    }
}

fn check_text(call: GuestCall, what: &str, text: &str) -> Result<(), GuestError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(GuestError::OutputTooLarge {
            call,
            what: format!(
                "a {what} of {} bytes (the limit is {MAX_TEXT_BYTES})",
                text.len()
            ),
        });
    }
    Ok(())
}

/// Turns a wasmtime error from a guest call into a [`GuestError`].
fn classify(
    store: &Store<GuestState>,
    error: wasmtime::Error,
    call: GuestCall,
    limits: &GuestLimits,
) -> GuestError {
    if store.data().memory_refused() {
        return GuestError::OutOfMemory {
            call,
            limit_bytes: limits.max_memory_bytes,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => GuestError::Timeout {
            call,
            limit: match call {
                GuestCall::Init => limits.init_timeout,
                GuestCall::Transform => limits.transform_timeout,
                GuestCall::Decide => limits.decide_timeout,
            },
        },
        _ => {
            let mut message = format!("{error:#}");
            let stderr = store.data().stderr_tail();
            if !stderr.is_empty() {
                message.push_str("; guest stderr: ");
                message.push_str(&stderr);
            }
            GuestError::Trap { call, message }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;
