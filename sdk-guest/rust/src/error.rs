//! The error type plugins return.

use std::fmt;

/// A plugin error: a message the host logs and counts, and that makes the host retry the
/// key with backoff (controller) or fail the call (admission, pod-agent).
///
/// Converts from `&str`, `String`, [`serde_json::Error`] and [`Refused`](crate::Refused),
/// so `?` works on the common fallible calls.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Prefixes the message with what was being done: `"{context}: {message}"`.
    #[must_use]
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            message: format!("{context}: {}", self.message),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.message, f)
    }
}

impl std::error::Error for Error {}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::msg(message)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::msg(message)
    }
}

impl From<Error> for String {
    /// The message, without copying it.
    fn from(err: Error) -> Self {
        err.message
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Self::msg(format!("invalid JSON: {err}"))
    }
}

impl From<std::str::Utf8Error> for Error {
    fn from(err: std::str::Utf8Error) -> Self {
        Self::msg(format!("invalid UTF-8: {err}"))
    }
}

impl From<std::string::FromUtf8Error> for Error {
    fn from(err: std::string::FromUtf8Error) -> Self {
        Self::msg(format!("invalid UTF-8: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_adds_context() {
        let err: Error = "boom".into();
        assert_eq!(
            err.context("reading node").to_string(),
            "reading node: boom"
        );
        let json = serde_json::from_str::<serde_json::Value>("{").map_err(Error::from);
        assert!(json.is_err_and(|e| e.message().starts_with("invalid JSON: ")));
    }
}
