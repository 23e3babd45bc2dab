//! One module per verb.

pub mod completion;
pub mod image;
pub mod info;
pub mod monitor;
pub mod operation;
pub mod query;
pub mod storage;
pub mod version;
