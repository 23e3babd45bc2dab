//! The storage drivers, one folder each with the same shape: `mod.rs` (the [`crate::Driver`]
//! implementation, `NAME`, `info()` and `load()`), `config.rs` (keys, validation, defaults)
//! and `tests.rs`.

pub mod btrfs;
pub mod dir;
