//! Wire types of the berth REST API.
//!
//! berth speaks the LXD/Incus REST API 1.0: the same paths, envelopes and JSON field names, so
//! that the real `lxc` and `incus` clients and pylxd work unchanged. Types are named the LXD way
//! (`Server`, `ServerPut`, `Operation`, `Event`, …), one module per resource. This crate knows
//! nothing of the daemon or the client and depends on nothing of ours.

pub mod backup;
pub mod certificate;
pub mod cluster;
pub mod error;
pub mod event;
pub mod extensions;
pub mod image;
pub mod instance;
pub mod migration;
pub mod network;
pub mod operation;
pub mod project;
pub mod resources;
pub mod response;
pub mod server;
pub mod simplestreams;
pub mod status;
pub mod storage;
pub mod warning;

pub use error::ErrorKind;
pub use event::{Event, EventLifecycle, EventLogging, EventType};
pub use operation::{Operation, OperationClass};
pub use response::{Response, ResponseType};
pub use server::{Server, ServerEnvironment, ServerPut};
pub use status::StatusCode;

/// The API version berth serves.
pub const API_VERSION: &str = "1.0";

/// The only project that exists until projects are implemented.
pub const DEFAULT_PROJECT: &str = "default";

/// Go clients send `null` for an empty list, map or string: read it as the default
/// (`#[serde(deserialize_with = "berth_api::null_as_default")]`).
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}
