//! One module per verb.
//!
//! A verb's file imports another only to embed it as a sub-verb (`device`, under `config` and
//! `profile`; `trust`, under `config`); a helper several verbs share lives beside `main.rs` instead, so that no verb
//! depends on another's internals.

pub mod admin;
pub mod backup;
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
pub mod r#move;
pub mod network;
pub mod operation;
pub mod profile;
pub mod project;
pub mod publish;
pub mod query;
pub mod recover;
pub mod remote;
pub mod rename;
pub mod snapshot;
pub mod storage;
pub mod trust;
pub mod version;
pub mod volume;
pub mod warning;
