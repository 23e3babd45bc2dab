//! Raw bindings to liblxc 5.0: `struct lxc_container` and its function table,
//! `lxc_attach_options_t`, and the few free functions berth calls.
//!
//! `src/bindings.rs` is bindgen's output, regenerated with `cargo xtask bindings` and
//! committed; its layout assertions are checked at compile time. Nothing here is safe to
//! call directly: use `berth-lxc`.

#![allow(
    unsafe_code,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case
)]
#![allow(
    missing_debug_implementations,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]

include!("bindings.rs");
