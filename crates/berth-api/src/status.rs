//! Status codes of operations and resources, as LXD numbers and names them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An LXD status code: the numeric value travels as `status_code`, the name as `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    OperationCreated,
    Started,
    Stopped,
    Running,
    Cancelling,
    Pending,
    Starting,
    Stopping,
    Aborting,
    Freezing,
    Frozen,
    Thawed,
    Error,
    Ready,
    Success,
    Failure,
    Cancelled,
}

impl StatusCode {
    const ALL: [StatusCode; 17] = [
        Self::OperationCreated,
        Self::Started,
        Self::Stopped,
        Self::Running,
        Self::Cancelling,
        Self::Pending,
        Self::Starting,
        Self::Stopping,
        Self::Aborting,
        Self::Freezing,
        Self::Frozen,
        Self::Thawed,
        Self::Error,
        Self::Ready,
        Self::Success,
        Self::Failure,
        Self::Cancelled,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::OperationCreated => 100,
            Self::Started => 101,
            Self::Stopped => 102,
            Self::Running => 103,
            Self::Cancelling => 104,
            Self::Pending => 105,
            Self::Starting => 106,
            Self::Stopping => 107,
            Self::Aborting => 108,
            Self::Freezing => 109,
            Self::Frozen => 110,
            Self::Thawed => 111,
            Self::Error => 112,
            Self::Ready => 113,
            Self::Success => 200,
            Self::Failure => 400,
            Self::Cancelled => 401,
        }
    }

    /// The name LXD gives the code (`status` fields, and the keys of `GET /1.0/operations`
    /// in lower case).
    pub fn name(self) -> &'static str {
        match self {
            Self::OperationCreated => "Operation created",
            Self::Started => "Started",
            Self::Stopped => "Stopped",
            Self::Running => "Running",
            Self::Cancelling => "Cancelling",
            Self::Pending => "Pending",
            Self::Starting => "Starting",
            Self::Stopping => "Stopping",
            Self::Aborting => "Aborting",
            Self::Freezing => "Freezing",
            Self::Frozen => "Frozen",
            Self::Thawed => "Thawed",
            Self::Error => "Error",
            Self::Ready => "Ready",
            Self::Success => "Success",
            Self::Failure => "Failure",
            Self::Cancelled => "Cancelled",
        }
    }

    /// The status for a numeric code.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Whether an operation in this status has finished for good.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Cancelled)
    }
}

impl Serialize for StatusCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.code())
    }
}

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(d)?;
        Self::from_code(code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown status code {code}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for s in StatusCode::ALL {
            assert_eq!(StatusCode::from_code(s.code()), Some(s));
        }
        assert_eq!(StatusCode::from_code(999), None);
    }
}
