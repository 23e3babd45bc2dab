//! The one error type of berthd's services and drivers.
//!
//! ```text
//!   Failure { kind, message, source }
//!     kind     what the caller may match on; api/error.rs maps it to an HTTP status
//!     message  one line for the user, naming the key, value or object at fault
//!     source   the underlying failure, kept for the log (never shown twice)
//! ```
//!
//! Libraries' errors become a [`Failure`] at the edge of the service that called them:
//! `From` impls here for the driver crates, in `db/` for the database (constraint
//! violations are classified there, so no SQLite text reaches a user).

use std::fmt::{self, Write as _};

/// What class of failure a [`Failure`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The object does not exist.
    NotFound,
    /// An object of that name exists already.
    AlreadyExists,
    /// The object's state does not allow the request (it is in use, running…).
    Conflict,
    /// The request names a bad value.
    Invalid,
    /// The request is understood but a rule forbids it.
    Forbidden,
    /// The caller's view of the object is stale (an `If-Match` ETag).
    Precondition,
    /// Something the request needs is not available now.
    Unavailable,
    /// Anything else: a failure of the host or of berthd.
    Internal,
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure with a kind, one line for the user and its cause.
#[derive(Debug)]
pub struct Failure {
    kind: Kind,
    message: String,
    source: Option<Source>,
}

/// What services and drivers return.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, message)
    }

    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(Kind::AlreadyExists, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Kind::Conflict, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Kind::Forbidden, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Kind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Kind::Internal, message)
    }

    /// An internal failure of `what` ("Failed to create X"): the message carries the
    /// cause on the same line, the cause stays the source.
    pub fn failed(
        what: impl fmt::Display,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Failure {
            kind: Kind::Internal,
            message: format!("{what}: {}", chain(&cause)),
            source: Some(Box::new(cause)),
        }
    }

    /// The same failure with `source` kept as its cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The same failure told about `what` ("Instance \"c1\": …").
    pub fn about(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<berth_storage::StorageError> for Failure {
    fn from(e: berth_storage::StorageError) -> Self {
        use berth_storage::StorageErrorKind as K;
        let kind = match e.kind() {
            K::InvalidConfig => Kind::Invalid,
            K::NotFound => Kind::NotFound,
            K::AlreadyExists => Kind::AlreadyExists,
            K::Busy => Kind::Conflict,
            K::Io => Kind::Internal,
        };
        Failure {
            kind,
            message: chain(&e),
            source: Some(Box::new(e)),
        }
    }
}

impl From<berth_network::NetworkError> for Failure {
    fn from(e: berth_network::NetworkError) -> Self {
        use berth_network::NetworkErrorKind as K;
        let kind = match e.kind() {
            K::InvalidConfig => Kind::Invalid,
            K::Conflict => Kind::Conflict,
            K::Host => Kind::Internal,
        };
        Failure {
            kind,
            message: chain(&e),
            source: Some(Box::new(e)),
        }
    }
}

impl From<tokio::task::JoinError> for Failure {
    fn from(e: tokio::task::JoinError) -> Self {
        Failure::failed("A background task failed", e)
    }
}

/// Renders an error and its causes on one line: `outer: cause: root cause` (a cause an
/// outer message already ends with is not repeated).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.ends_with(&s) {
            let _ = write!(out, ": {s}");
        }
        cur = e.source();
    }
    out
}

/// `text` as one line of printable text for a client: control characters (line breaks
/// included) become spaces, bytes that were not text (U+FFFD) `?`, runs of spaces one;
/// at most 200 characters.
pub fn one_line(text: &str) -> String {
    let (mut out, mut count) = (String::new(), 0);
    for c in text.chars() {
        let c = match c {
            '\u{fffd}' => '?',
            c if c.is_control() || c.is_whitespace() => ' ',
            c => c,
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if count == 200 {
            out.push('…');
            break;
        }
        out.push(c);
        count += 1;
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_printable_text() {
        assert_eq!(
            one_line("numeric field: \u{fffd}\u{fffd}\0\x07 when\n  getting\tcksum"),
            "numeric field: ?? when getting cksum"
        );
        let long = one_line(&"x".repeat(500));
        assert_eq!(long.chars().count(), 201);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn failed_names_the_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Failure::failed("Failed to open x", io);
        assert_eq!(e.kind(), Kind::Internal);
        assert_eq!(e.message(), "Failed to open x: gone");
        assert_eq!(chain(&e), "Failed to open x: gone");
    }

    #[test]
    fn about_prefixes_the_message() {
        let e = Failure::invalid("bad key").about("Instance \"c1\"");
        assert_eq!(e.to_string(), "Instance \"c1\": bad key");
        assert_eq!(e.kind(), Kind::Invalid);
    }
}
