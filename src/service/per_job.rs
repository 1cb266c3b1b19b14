//! [`PerJob`]: a value configured per named job (`[jobs.<name>]`: its webhook, its
//! start-up rules), looked up for an instance by the job it was run as through
//! powertail, else by its PowerJob job id (an instance started elsewhere).

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Config, JobConfig};

/// How long an instance run through powertail is remembered as run as its job.
const STARTED_IDLE: Duration = Duration::from_secs(7 * 86_400);

pub(super) struct PerJob<T> {
    by_name: HashMap<String, T>,
    /// The first named job of each job id.
    by_job_id: HashMap<i64, T>,
    /// Instances run through powertail, by the job they were run as.
    started: moka::sync::Cache<i64, T>,
}

impl<T: Clone + Send + Sync + 'static> PerJob<T> {
    /// The value of each configured job that has one (`value` answers `None` otherwise);
    /// at most `capacity` started instances are remembered.
    pub(super) fn new(config: &Config, capacity: u64, mut value: impl FnMut(&str, &JobConfig) -> Option<T>) -> Self {
        let mut by_name = HashMap::new();
        let mut by_job_id = HashMap::new();
        for (name, job) in &config.jobs {
            let Some(v) = value(name, job) else { continue };
            by_job_id.entry(job.job_id).or_insert_with(|| v.clone());
            by_name.insert(name.clone(), v);
        }
        let started = moka::sync::Cache::builder().max_capacity(capacity).time_to_idle(STARTED_IDLE).build();
        PerJob { by_name, by_job_id, started }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Instance `id` was run as job `job`: remembers it, and gives the job's value.
    pub(super) fn started_as(&self, id: i64, job: &str) -> Option<T> {
        let v = self.by_name.get(job)?.clone();
        self.started.insert(id, v.clone());
        Some(v)
    }

    /// The value for instance `id`: that of the job it was run as, else that of its job id.
    pub(super) fn for_instance(&self, id: i64, job_id: Option<i64>) -> Option<T> {
        self.started.get(&id).or_else(|| job_id.and_then(|j| self.by_job_id.get(&j).cloned()))
    }
}
