//! One module per verb.

pub mod completion;
pub mod info;
pub mod monitor;
pub mod operation;
pub mod query;
pub mod version;
