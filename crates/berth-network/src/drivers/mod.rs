//! One folder per network driver.

pub mod bridge;
