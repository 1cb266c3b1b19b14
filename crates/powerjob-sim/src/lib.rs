//! A protocol-faithful PowerJob server simulator (4.3.x and 5.1.x) for tests and
//! `powertail demo`. It writes its own JSON and shares no type with any client, so a
//! misunderstanding of the protocol cannot hide in a shared type.
//!
//! Its modules import in one direction only, leaves first:
//!
//! * [`types`]: the shared vocabulary (constants, [`Version`], [`Record`], [`StringPage`],
//!   [`InstanceInfo`], [`TimeExpression`], [`LineId`], [`InstanceIds`]); imports nothing
//!   of the crate;
//! * [`file`](mod@file): the log files: rendering, `readLine`, paging, the download
//!   padding, and the origin of every served line (a test oracle);
//! * [`script`]: scripted job runs (several workers, skewed clocks, flush batches, late
//!   lines);
//! * [`config`]: [`SimConfig`] and [`SimJob`];
//! * [`json`]: every JSON body the server writes (envelopes, DTOs, token claims);
//! * [`core`]: the pure, deterministic state machine (instances, H2 rows, live map,
//!   temporary and stable files, sync, placeholders, paging, ids) in explicit time;
//! * [`http`]: the axum server with the wall clock, 5.x auth, counters and fault injection;
//!   and the simulated processor's pushes to powertail ([`Pusher`], issue 19), played
//!   against the same clock from the runs the core starts ([`StartedRun`]).
//!
//! The reference is `docs/powerjob-protocol.md`; section numbers in comments point into it.

pub mod config;
pub mod core;
pub mod file;
pub mod http;
pub mod json;
pub mod script;
pub mod types;

pub use self::config::{SimClock, SimConfig, SimJob};
pub use self::core::SimCore;
pub use self::core::StartedRun;
pub use self::file::LineId;
pub use self::http::{Fate, Fault, FaultKind, PushFaults, PushStats, PushedLine, Pusher, SimHandle, Simulator};
pub use self::script::{JobScript, ScriptLine, ScriptWorker};
pub use self::types::{InstanceIds, InstanceInfo, Level, LogFile, Record, StringPage, TimeExpression, Version};
