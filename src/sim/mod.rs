//! A protocol-faithful PowerJob server simulator (4.3.x and 5.1.x) for tests and
//! `powertail demo`. It writes its own JSON and shares no wire type with the client, so
//! a misunderstanding of the protocol cannot hide in a shared type.
//!
//! * [`core`]: the pure, deterministic state machine (instances, H2 rows, live map,
//!   temporary and stable files, sync, placeholders, paging) in explicit time;
//! * [`file`](mod@file): the log files: rendering, `readLine`, paging, the download padding, and
//!   the origin of every served line (a test oracle);
//! * [`script`]: scripted job runs (several workers, skewed clocks, flush batches, late
//!   lines);
//! * [`http`]: the axum server with the wall clock, 5.x auth, counters and fault injection.
//!
//! The reference is `docs/powerjob-protocol.md`; section numbers in comments point into it.

pub mod core;
pub mod file;
pub mod http;
pub mod script;

pub use self::core::{
    Level, LogFile, Record, SimClock, SimConfig, SimCore, SimJob, StringPage, TimeExpression, Version,
};
pub use self::file::LineId;
pub use self::http::{Fault, FaultKind, SimHandle, Simulator};
pub use self::script::{JobScript, ScriptLine, ScriptWorker};
