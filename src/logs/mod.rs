//! The pure core of the log adapter: no I/O, no clock, no HTTP.
//!
//! * [`line`]: splitting pages, placeholders, record times;
//! * [`snapshot`]: a burst of pages → one consistent snapshot;
//! * [`reader`]: the read procedure of one refresh, generic over the page source;
//! * [`follower`]: the append-only view of one instance and its completeness (the
//!   refresh plan in `follower/plan.rs`, merging what was read in `follower/apply.rs`);
//! * [`units`]: records as the unit of matching;
//! * [`lines`]: compact storage of the served lines;
//! * [`status`]: instance status and the facts the follower needs;
//! * [`rules`]: start-up rules (regexes over a job's own text) and the built-ins for vLLM;
//! * [`startup`]: the start-up state of one attempt, computed from its lines;
//! * [`merge`]: pushed lines and PowerJob's records of the same log call, served once;
//! * [`joined`]: the served log: the follower's lines joined with pushed ones (issue 19).

pub mod follower;
pub mod joined;
pub mod line;
pub mod lines;
pub mod merge;
pub mod reader;
pub mod rules;
pub mod snapshot;
pub mod startup;
pub mod status;
pub mod units;

pub use follower::{Applied, Attempt, Follower, NeedFullRead, Pages, Plan, Probe, SharedMeta, Timing};
pub use joined::{JoinConfig, JoinMeta, Joined, PushStats, Pushed};
pub use reader::{refresh_log, PageSource, ReadError, ReadOutcome};
pub use snapshot::{assemble, RawPage, Snapshot, SnapshotError};
pub use status::{InstanceFacts, Status};
