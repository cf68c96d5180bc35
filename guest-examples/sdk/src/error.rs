//! The guest's error type.

use std::fmt;

/// What an [`Error`] means to the host when `transform` returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// This record cannot be turned into a request (a bad payload). The host
    /// applies the connector's policy for unusable records; the next record
    /// is processed.
    InvalidRecord,
    /// The guest cannot go on at all. From `transform` the host stops the
    /// connector without committing the record; from `init` the connector is
    /// rejected (every `init` error is reported with its message).
    Fatal,
}

/// An error with a kind and a human-readable message, shown in the
/// connector's state and logs.
///
/// Any [`std::error::Error`] converts into it with `?` as
/// [`ErrorKind::InvalidRecord`], its message being the error's text followed by
/// its sources. For that reason `Error` itself does not implement
/// `std::error::Error` (as `anyhow::Error` does not).
///
/// ```
/// use wasmsink_guest::{Error, ErrorKind};
///
/// fn parse(text: &str) -> Result<u32, Error> {
///     Ok(text.parse::<u32>()?)
/// }
/// let error = parse("x").unwrap_err();
/// assert_eq!(error.kind(), ErrorKind::InvalidRecord);
/// assert_eq!(error.message(), "invalid digit found in string");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// `Result` with [`Error`] as its default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        Error {
            kind,
            message: message.to_string(),
        }
    }

    /// An [`ErrorKind::InvalidRecord`] error: this record is unusable.
    pub fn invalid_record(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::InvalidRecord, message)
    }

    /// An [`ErrorKind::Fatal`] error: the guest cannot go on.
    pub fn fatal(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Fatal, message)
    }

    /// What the error means to the host.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with `context` (`"{context}: {message}"`).
    ///
    /// ```
    /// # use wasmsink_guest::Error;
    /// let error = Error::invalid_record("missing field `id`").context("order value");
    /// assert_eq!(error.message(), "order value: missing field `id`");
    /// ```
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The same error with another kind.
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::invalid_record(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_errors_convert_with_their_sources() {
        #[derive(Debug)]
        struct Outer(std::num::ParseIntError);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bad count")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = "x".parse::<u8>().unwrap_err();
        let error = Error::from(Outer(inner));
        assert_eq!(error.kind(), ErrorKind::InvalidRecord);
        assert_eq!(
            error.to_string(),
            "bad count: invalid digit found in string"
        );
    }

    #[test]
    fn kinds_and_context() {
        let error = Error::fatal("no key").context("init");
        assert_eq!(error.kind(), ErrorKind::Fatal);
        assert_eq!(error.message(), "init: no key");
        assert_eq!(
            error.with_kind(ErrorKind::InvalidRecord).kind(),
            ErrorKind::InvalidRecord
        );
    }
}
