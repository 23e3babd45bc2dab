//! The small, stable set of error kinds that decide an HTTP status.
//!
//! Daemon errors expose a kind; exactly one place in the daemon turns a kind into the LXD error
//! envelope, and the client turns an HTTP status back into a kind.

/// What went wrong, as far as a caller needs to know to react.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400: the request is malformed or names a bad value.
    InvalidRequest,
    /// 403: the request is understood but not allowed.
    Forbidden,
    /// 404: the object does not exist.
    NotFound,
    /// 405: the path exists but not with this method.
    MethodNotAllowed,
    /// 409: the object exists already.
    AlreadyExists,
    /// 409: the object is in a state that does not allow the request.
    Conflict,
    /// 412: an `If-Match` ETag did not match.
    PreconditionFailed,
    /// 413: the body is larger than the server accepts.
    PayloadTooLarge,
    /// 503: a resource the request needs is not available now.
    Unavailable,
    /// 500: anything else.
    Internal,
}

impl ErrorKind {
    /// The HTTP status code for the kind.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::AlreadyExists | Self::Conflict => 409,
            Self::PreconditionFailed => 412,
            Self::PayloadTooLarge => 413,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The kind for an HTTP status code (used by clients).
    pub fn from_http_status(status: u16) -> Self {
        match status {
            400 => Self::InvalidRequest,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            405 => Self::MethodNotAllowed,
            409 => Self::Conflict,
            412 => Self::PreconditionFailed,
            413 => Self::PayloadTooLarge,
            503 => Self::Unavailable,
            _ => Self::Internal,
        }
    }
}
