//! Timestamps as LXD writes them.

/// The current time as LXD formats timestamps (RFC 3339, nanoseconds, UTC).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// LXD's "never": the zero time, for `last_used_at` and `expires_at`.
pub const NEVER: &str = "0001-01-01T00:00:00Z";
