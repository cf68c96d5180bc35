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
mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, Store, Trap, UpdateDeadline};

use bindings::{
    AttemptInfo, AttemptOutcome, KafkaRecord, RecordRef, RetryDecision, TransformOutcome,
};
use state::GuestState;

/// The built-in guest component, built by `build.rs` from `runtime/builtin-guest`.
pub const BUILTIN_GUEST_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/wasmsink_builtin_guest.wasm"));

/// How often the epoch ticker advances the engine's epoch.
const EPOCH_TICK: Duration = Duration::from_millis(1);

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
}

/// The process-wide wasmtime engine, linker and built-in guest.
#[derive(Clone)]
pub struct GuestEngine {
    engine: Engine,
    linker: Arc<Linker<GuestState>>,
    builtin: Component,
}

impl GuestEngine {
    /// Builds the engine, starts its epoch ticker and compiles the built-in guest.
    pub fn new() -> Result<Self, GuestError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| GuestError::Compile(format!("{e:#}")))?;
        start_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| GuestError::Contract(format!("{e:#}")))?;
        bindings::transform::wasmsink::plugin::logging::add_to_linker::<
            GuestState,
            HasSelf<GuestState>,
        >(&mut linker, |state| state)
        .map_err(|e| GuestError::Contract(format!("{e:#}")))?;

        let builtin = Component::new(&engine, BUILTIN_GUEST_WASM)
            .map_err(|e| GuestError::Compile(format!("{e:#}")))?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            builtin,
        })
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
            pre,
            transform,
            retry,
            init_config: Arc::new(init_config),
            connector: Arc::from(connector),
            limits,
        })
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasmsink-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// A guest component pre-instantiated for one connector.
#[derive(Clone)]
pub struct PreparedGuest {
    engine: Engine,
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
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline() {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        arm_deadline(&mut store, self.limits.init_timeout);
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
            store,
            transform,
            retry,
            limits: self.limits,
        };
        instance.init(&self.init_config).await?;
        Ok(instance)
    }
}

fn arm_deadline(store: &mut Store<GuestState>, timeout: Duration) {
    store.data_mut().set_deadline(Instant::now() + timeout);
    store.set_epoch_deadline(1);
}

/// A live guest instance owned by one partition lane.
pub struct GuestInstance {
    store: Store<GuestState>,
    transform: Option<bindings::transform::TransformPlugin>,
    retry: Option<bindings::retry::RetryPlugin>,
    limits: GuestLimits,
}

impl GuestInstance {
    async fn init(&mut self, config: &[(String, String)]) -> Result<(), GuestError> {
        arm_deadline(&mut self.store, self.limits.init_timeout);
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
        arm_deadline(&mut self.store, self.limits.transform_timeout);
        plugin
            .wasmsink_plugin_transformer()
            .call_transform(&mut self.store, record)
            .await
            .map_err(|e| classify(&self.store, e, GuestCall::Transform, &self.limits))
    }

    /// Calls `decide`. Panics if the instance does not export it.
    pub async fn decide(
        &mut self,
        record: &RecordRef,
        outcome: &AttemptOutcome,
        info: AttemptInfo,
    ) -> Result<RetryDecision, GuestError> {
        let plugin = self.retry.as_ref().expect("the caller checks has_decide");
        arm_deadline(&mut self.store, self.limits.decide_timeout);
        plugin
            .wasmsink_plugin_retry_policy()
            .call_decide(&mut self.store, record, outcome, info)
            .await
            .map_err(|e| classify(&self.store, e, GuestCall::Decide, &self.limits))
    }
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
