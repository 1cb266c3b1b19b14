//! The integration tests, one binary: each module was a test binary of its own, and every
//! binary links the whole crate, so one binary builds and links far faster, and its tests
//! run in parallel with each other rather than one binary after another.
//!
//! Run one group with a filter: `cargo test --test it lifecycle::` (what was
//! `cargo test --test lifecycle`), one test with its path: `cargo test --test it
//! follow::follows_a_run_to_exactly_the_servers_log_without_poisoning_it`. The tests that
//! need Redis or Chromium are `#[ignore]`d: add `-- --include-ignored`.
//!
//! Test binaries of their own (`tests/*.rs`) are for tests that need the process to
//! themselves: `metrics` (the metrics recorder is one per process: another test's
//! requests would change its counts), `follower_props` (property tests, CPU-bound),
//! `viewer_browser` (Chromium).

#[path = "../common/mod.rs"]
mod common;

mod api_edges;
mod api_errors;
mod archive;
mod archive_pg;
mod archive_store;
mod cluster;
mod cluster_faults;
mod cluster_harness;
mod cluster_identity;
mod cluster_push;
mod cluster_secrets;
mod cluster_sentinel;
mod cluster_stream;
mod config_errors;
mod demo;
mod demo_replicas;
mod docs_examples;
mod epoch;
mod follow;
mod jobs;
mod lifecycle;
mod limits;
mod logging;
mod page_count;
mod push;
mod push_cli;
mod push_e2e;
mod readiness;
mod secrets;
mod sim_fixtures;
mod soak;
mod startup;
mod startup_final;
mod stream;
mod tls;
mod webhook;
mod ws;
