//! A protocol-faithful PowerJob server simulator (4.3.x and 5.1.x), for the tests and
//! `powertail demo`. It writes its own JSON and shares no wire type with the client.
//!
//! * [`core`]: the pure state machine (rows, live map, temporary and stable files, sync,
//!   placeholders, paging) in explicit time;
//! * [`script`]: scripted job runs (lines from several workers, flush batches, late lines);
//! * [`http`]: the HTTP server with the wall clock, auth, counters and fault injection.

pub mod core;
pub mod http;
pub mod script;

pub use self::core::{Level, Record, SimConfig, SimCore, SimJob, StringPage, Version};
pub use self::http::{Fault, FaultKind, SimHandle, Simulator};
pub use self::script::{JobScript, ScriptLine, ScriptWorker};
