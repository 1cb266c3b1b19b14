//! # powertail
//!
//! Follows PowerJob online logs and serves them as a stable, append-only line cursor.
//!
//! # Layout
//!
//! * [`logs`]: the pure core (paging, merge, completeness), unit- and property-tested;
pub mod logs;
