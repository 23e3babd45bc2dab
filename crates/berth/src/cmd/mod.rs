//! One module per verb.

pub mod admin;
pub mod completion;
pub mod config;
pub mod console;
pub mod copy;
pub mod delete;
pub mod device;
pub mod exec;
pub mod file;
pub mod image;
pub mod info;
pub mod launch;
pub mod lifecycle;
pub mod list;
pub mod monitor;
pub mod operation;
pub mod profile;
pub mod project;
pub mod query;
pub mod rename;
pub mod snapshot;
pub mod storage;
pub mod version;
