//! Guest stdout and stderr, and the `logging` import, written to the
//! runtime's log: one line per event, tagged with the connector, control
//! characters replaced, long lines cut and a per-instance rate cap.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line passed on; longer ones are cut.
pub const MAX_LINE: usize = 2048;
/// Lines allowed per second per instance, and the burst.
const RATE_PER_SEC: f64 = 50.0;
const BURST: f64 = 100.0;
/// Bytes of stderr kept to explain a trap.
const STDERR_TAIL: usize = 2048;

/// Where one guest instance's text goes; shared by its stdout, stderr and
/// `logging` calls.
#[derive(Clone)]
pub struct GuestLog {
    inner: Arc<Mutex<LogState>>,
    connector: Arc<str>,
}

struct LogState {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
    stderr_tail: String,
}

/// A guest log level (the WIT `logging.level`, and stdout/stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very fine detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal events, and stdout.
    Info,
    /// Something odd, and stderr.
    Warn,
    /// A failure.
    Error,
}

impl GuestLog {
    /// A log for one instance of `connector`'s guest.
    pub fn new(connector: Arc<str>) -> Self {
        let state = LogState {
            tokens: BURST,
            refilled: Instant::now(),
            suppressed: 0,
            stderr_tail: String::new(),
        };
        Self {
            inner: Arc::new(Mutex::new(state)),
            connector,
        }
    }

    /// True when a message at `level` would be written.
    pub fn enabled(level: Level) -> bool {
        tracing_level(level) <= tracing::level_filters::LevelFilter::current()
    }

    /// Writes one guest message, unless the rate cap is reached.
    pub fn write(&self, level: Level, source: &str, message: &str) {
        if !Self::enabled(level) {
            return;
        }
        let mut state = self.inner.lock().expect("guest log lock");
        let now = Instant::now();
        state.tokens = (state.tokens
            + now.duration_since(state.refilled).as_secs_f64() * RATE_PER_SEC)
            .min(BURST);
        state.refilled = now;
        if state.tokens < 1.0 {
            state.suppressed += 1;
            return;
        }
        state.tokens -= 1.0;
        let suppressed = std::mem::take(&mut state.suppressed);
        drop(state);
        let text = clean(message);
        let connector = &*self.connector;
        match level {
            Level::Trace => {
                tracing::trace!(target: "wasmsink::guest", connector, source, suppressed, "{text}")
            }
            Level::Debug => {
                tracing::debug!(target: "wasmsink::guest", connector, source, suppressed, "{text}")
            }
            Level::Info => {
                tracing::info!(target: "wasmsink::guest", connector, source, suppressed, "{text}")
            }
            Level::Warn => {
                tracing::warn!(target: "wasmsink::guest", connector, source, suppressed, "{text}")
            }
            Level::Error => {
                tracing::error!(target: "wasmsink::guest", connector, source, suppressed, "{text}")
            }
        }
    }

    /// The end of what the guest wrote to stderr, to explain a trap.
    pub fn stderr_tail(&self) -> String {
        clean(&self.inner.lock().expect("guest log lock").stderr_tail)
    }

    fn remember_stderr(&self, line: &str) {
        let mut state = self.inner.lock().expect("guest log lock");
        state.stderr_tail.push_str(line);
        state.stderr_tail.push(' ');
        if state.stderr_tail.len() > STDERR_TAIL {
            let cut = state.stderr_tail.len() - STDERR_TAIL;
            let cut = (cut..state.stderr_tail.len())
                .find(|i| state.stderr_tail.is_char_boundary(*i))
                .unwrap_or(0);
            state.stderr_tail.drain(..cut);
        }
    }

    /// The guest's stdout (logged at INFO) or stderr (logged at WARN).
    pub fn stream(&self, stderr: bool) -> GuestOutput {
        GuestOutput {
            log: self.clone(),
            stderr,
        }
    }
}

fn tracing_level(level: Level) -> tracing::Level {
    match level {
        Level::Trace => tracing::Level::TRACE,
        Level::Debug => tracing::Level::DEBUG,
        Level::Info => tracing::Level::INFO,
        Level::Warn => tracing::Level::WARN,
        Level::Error => tracing::Level::ERROR,
    }
}

/// Replaces control characters (so guest text cannot forge log lines or
/// terminal escapes) and cuts the text at [`MAX_LINE`] bytes.
fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_LINE {
        let cut = (0..=MAX_LINE)
            .rev()
            .find(|i| out.is_char_boundary(*i))
            .unwrap_or(0);
        out.truncate(cut);
        out.push_str("...");
    }
    out.trim_end().to_owned()
}

/// A guest's stdout or stderr.
#[derive(Clone)]
pub struct GuestOutput {
    log: GuestLog,
    stderr: bool,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            output: self.clone(),
            line: Vec::new(),
        })
    }
}

/// Splits written bytes into lines and logs each one.
struct LineWriter {
    output: GuestOutput,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let (level, source) = if self.output.stderr {
            (Level::Warn, "stderr")
        } else {
            (Level::Info, "stdout")
        };
        if self.output.stderr {
            self.output.log.remember_stderr(&text);
        }
        self.output.log.write(level, source, &text);
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        for &byte in buf {
            if byte == b'\n' {
                self.emit();
            } else if self.line.len() < MAX_LINE + 1 {
                self.line.push(byte);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_replaced_and_long_lines_cut() {
        assert_eq!(clean("a\u{1b}[31mred\r\nforged"), "a [31mred  forged");
        let long = "x".repeat(MAX_LINE * 2);
        assert_eq!(clean(&long).len(), MAX_LINE + 3);
    }

    #[test]
    fn stderr_keeps_a_bounded_tail() {
        let log = GuestLog::new(Arc::from("c"));
        for n in 0..1000 {
            log.remember_stderr(&format!("line {n}"));
        }
        let tail = log.stderr_tail();
        assert!(
            tail.len() <= STDERR_TAIL + 3 && tail.ends_with("line 999"),
            "{tail}"
        );
    }
}
