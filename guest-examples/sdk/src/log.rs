//! Logging into the host's log (the contract's `logging` import).
//!
//! The host tags every message with the connector's name and caps message
//! size and rate. Use the macros ([`info!`](crate::info), [`warn!`](crate::warn),
//! ...): they skip formatting when the host would discard the level, and tag
//! messages with the calling module's path. When the SDK is compiled for
//! anything but WebAssembly (a guest's native unit tests), messages go to
//! standard error instead.
//!
//! ```
//! let offset = 42;
//! wasmsink_guest::info!("routing record at offset {offset}");
//! wasmsink_guest::log::warn("no route header; using the default path");
//! ```

/// Log severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the guest handled.
    Warn,
    /// Something failed.
    Error,
}

/// True when a message at `level` would be written.
pub fn enabled(level: Level) -> bool {
    imp::enabled(level)
}

/// Writes `message` at `level`, tagged with `context` (a short free-form tag).
pub fn log(level: Level, context: &str, message: &str) {
    imp::log(level, context, message);
}

/// Writes `message` at [`Level::Trace`].
pub fn trace(message: &str) {
    log(Level::Trace, "", message);
}

/// Writes `message` at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, "", message);
}

/// Writes `message` at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, "", message);
}

/// Writes `message` at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, "", message);
}

/// Writes `message` at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, "", message);
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;
    use crate::bindings::lifecycle::wasmsink::plugin::logging;

    fn wit(level: Level) -> logging::Level {
        match level {
            Level::Trace => logging::Level::Trace,
            Level::Debug => logging::Level::Debug,
            Level::Info => logging::Level::Info,
            Level::Warn => logging::Level::Warn,
            Level::Error => logging::Level::Error,
        }
    }

    pub(super) fn enabled(level: Level) -> bool {
        logging::enabled(wit(level))
    }

    pub(super) fn log(level: Level, context: &str, message: &str) {
        logging::log(wit(level), context, message);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Level;

    pub(super) fn enabled(_level: Level) -> bool {
        true
    }

    pub(super) fn log(level: Level, context: &str, message: &str) {
        eprintln!("[{level:?}] {context}: {message}");
    }
}

/// Logs at a level with `format!` arguments, tagged with the module path;
/// nothing is formatted when the host discards the level.
///
/// ```
/// use wasmsink_guest::log::Level;
/// wasmsink_guest::log!(Level::Debug, "parsed {} fields", 3);
/// ```
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {{
        let level = $level;
        if $crate::log::enabled(level) {
            $crate::log::log(level, ::core::module_path!(), &::std::format!($($arg)+));
        }
    }};
}

/// Logs at [`Level::Trace`](crate::log::Level::Trace) with `format!` arguments.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Trace, $($arg)+) };
}

/// Logs at [`Level::Debug`](crate::log::Level::Debug) with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Debug, $($arg)+) };
}

/// Logs at [`Level::Info`](crate::log::Level::Info) with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Info, $($arg)+) };
}

/// Logs at [`Level::Warn`](crate::log::Level::Warn) with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Warn, $($arg)+) };
}

/// Logs at [`Level::Error`](crate::log::Level::Error) with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Error, $($arg)+) };
}
