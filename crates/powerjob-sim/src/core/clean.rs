//! Frequent jobs and `InstanceLogService.timingCheck` (§4.3 item 4, §6 pitfall 12).
//!
//! ```java
//! @Scheduled(fixedDelay = 120000)
//! public void timingCheck() {
//!     // ids in instanceId2LastReportTime whose job's timeExpressionType is FIXED_RATE or FIXED_DELAY
//!     long time = System.currentTimeMillis() - 10 * 60 * 1000;
//!     localInstanceLogRepository.deleteByInstanceIdInAndLogTimeLessThan(frequentInstanceIds, time);
//! }
//! ```
//!
//! Only H2 rows go: the id stays live, and the temporary file keeps the deleted lines until
//! its next rebuild, from which on they are gone from the head of the log. Stable files
//! and DFS copies are not touched. The timer runs from server start (a fixed delay, so its
//! first run finds nothing) and a restart starts it again.

use super::SimCore;
use crate::types::TimeExpression;

impl SimCore {
    /// The job's time expression (API when not configured).
    pub fn time_expression(&self, job_id: i64) -> TimeExpression {
        self.cfg.time_expressions.get(&job_id).cloned().unwrap_or_default()
    }

    /// Runs `timingCheck` now (a test hook; the periodic timer keeps its own schedule):
    /// deletes the rows older than `clean_age_ms` (by `logTime`) of the live logs of
    /// frequent jobs' instances. Returns how many rows it deleted.
    pub fn clean_now(&mut self, now: i64) -> usize {
        self.tick(now);
        self.timing_check(now)
    }

    /// When the periodic clean-ups ran (epoch ms, oldest first). Consecutive runs with no
    /// other event in between are recorded (and run) as the last of them only.
    pub fn clean_ups(&self) -> &[i64] {
        &self.clean_ups
    }

    /// The server (re)started at `now`: the next periodic `timingCheck` is one interval on.
    pub(super) fn start_clean_timer(&mut self, now: i64) {
        self.next_clean =
            if self.cfg.clean_interval_ms > 0 { now.checked_add(self.cfg.clean_interval_ms) } else { None };
    }

    /// Runs the periodic clean-ups due at or before `until`. Several due runs with no
    /// other event in between have the same effect as the last one alone (each deletes
    /// a superset of the rows of the previous one), so only that one runs: a long
    /// `tick` costs one clean-up, not one per interval.
    pub(super) fn clean_until(&mut self, until: i64) {
        let Some(next) = self.next_clean.filter(|&next| next <= until) else { return };
        let interval = self.cfg.clean_interval_ms.max(1);
        let last = next.saturating_add((until - next) / interval * interval);
        self.timing_check(last);
        self.clean_ups.push(last);
        self.next_clean = last.checked_add(interval);
    }

    /// One `timingCheck` at `now`.
    fn timing_check(&mut self, now: i64) -> usize {
        let cutoff = now.saturating_sub(self.cfg.clean_age_ms);
        let mut deleted = 0;
        for (id, log) in &mut self.logs {
            // `fetchJobInfoByInstanceId` fails (and the id is skipped) without an instance.
            let frequent = self
                .instances
                .get(id)
                .and_then(|i| self.cfg.time_expressions.get(&i.job_id))
                .is_some_and(TimeExpression::is_frequent);
            if log.live && frequent {
                let before = log.rows.len();
                log.rows.retain(|r| r.record.log_time >= cutoff);
                deleted += before - log.rows.len();
            }
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::config::{SimConfig, SimJob};
    use crate::file::read_lines;
    use crate::types::{Level, Record, StringPage};

    /// 2024-06-01T08:00:00Z.
    const T0: i64 = 1_717_228_800_000;

    fn rec(log_time: i64, content: &str) -> Record {
        Record { log_time, level: Level::Info, content: content.into(), worker: "10.0.0.21:27777".into() }
    }

    /// Job 12 is frequent (FIXED_RATE 5 s), job 13 is not.
    fn frequent_core(cfg: SimConfig) -> SimCore {
        let plain = SimJob { id: 13, name: "plain".into(), job_params: String::new(), script: None };
        let mut cfg = cfg.with_time_expression(12, TimeExpression::FixedRate(5_000));
        cfg.jobs.push(plain);
        SimCore::new(cfg)
    }

    fn live(c: &mut SimCore, job: i64, records: Vec<Record>, at: i64) -> i64 {
        let id = c.create_instance(job, None, at);
        c.dispatch(id, at);
        c.set_running(id, at);
        c.deliver(id, records, at);
        id
    }

    fn contents(c: &mut SimCore, id: i64, now: i64) -> Vec<String> {
        let page = c.log_page(id, 0, now);
        read_lines(&page.data).iter().map(|l| l.rsplit(' ').next().unwrap_or("").to_owned()).collect()
    }

    #[test]
    fn fetch_job_shows_the_time_expression() {
        let c = frequent_core(SimConfig::default());
        let info = c.job_info(12).expect("job 12");
        assert_eq!((info["timeExpressionType"].as_i64(), info["timeExpression"].as_str()), (Some(3), Some("5000")));
        let plain = c.job_info(13).expect("job 13");
        assert_eq!((plain["timeExpressionType"].as_i64(), plain["timeExpression"].clone()), (Some(1), Value::Null));
        assert_eq!(TimeExpression::FixedDelay(1).type_code(), 4);
        assert!(!TimeExpression::Cron("0 0 * * * ?".into()).is_frequent());
    }

    #[test]
    fn every_120_s_rows_older_than_10_min_leave_the_head_at_the_next_rebuild() {
        let mut c = frequent_core(SimConfig::default());
        // The server starts at T0: timingCheck at T0 + k * 120 s.
        let records = vec![rec(T0, "old"), rec(T0 + 120_000, "edge"), rec(T0 + 200_000, "new")];
        let id = live(&mut c, 12, records.clone(), T0);
        let plain = live(&mut c, 13, records, T0);
        assert_eq!(contents(&mut c, id, T0 + 719_999), ["old", "edge", "new"]);
        // The check at 720 s deletes logTime < 120 s (strictly: "edge", at 120 s, stays) ...
        c.tick(T0 + 720_000);
        assert_eq!(c.clean_ups().last(), Some(&(T0 + 720_000)));
        // ... but the cached file is served until its rebuild.
        assert_eq!(contents(&mut c, id, T0 + 729_998), ["old", "edge", "new"]);
        assert_eq!(contents(&mut c, id, T0 + 729_999), ["edge", "new"]);
        assert!(c.is_live(id));
        // Not a frequent job: untouched.
        assert_eq!(contents(&mut c, plain, T0 + 730_000), ["old", "edge", "new"]);
        // The perfect reader's view still has every line ever delivered.
        assert_eq!(c.final_lines(id).len(), 3);
        // Everything old enough goes: a live log without rows, served as an empty file.
        c.tick(T0 + 10_000_000);
        assert_eq!(c.log_page(id, 0, T0 + 10_000_000), StringPage { index: 0, total_pages: 0, data: String::new() });
    }

    #[test]
    fn clean_now_and_fast_timers_for_tests() {
        let cfg = SimConfig { clean_interval_ms: 1_000, clean_age_ms: 5_000, ..SimConfig::default() };
        let mut c = frequent_core(cfg);
        let id = live(&mut c, 12, vec![rec(T0, "a"), rec(T0 + 8_000, "b")], T0);
        assert_eq!(contents(&mut c, id, T0), ["a", "b"]);
        assert_eq!(contents(&mut c, id, T0 + 10_000), ["b"]);
        // The hook runs at once, whatever the timer says.
        let mut c = frequent_core(SimConfig { clean_interval_ms: 0, clean_age_ms: 5_000, ..SimConfig::default() });
        let id = live(&mut c, 12, vec![rec(T0, "a"), rec(T0 + 3_000, "b")], T0);
        c.tick(T0 + 1_000_000);
        assert!(c.clean_ups().is_empty());
        assert_eq!(c.clean_now(T0 + 7_000), 1);
        assert_eq!(contents(&mut c, id, T0 + 1_000_000), ["b"]);
    }

    #[test]
    fn synced_logs_and_restarts() {
        let mut c = frequent_core(SimConfig::default());
        let synced = live(&mut c, 12, vec![rec(T0, "kept")], T0);
        c.finish(synced, 5, "ok", T0);
        c.tick(T0 + 60_000);
        assert!(!c.is_live(synced));
        // A stable file is never cleaned.
        assert_eq!(contents(&mut c, synced, T0 + 2_000_000), ["kept"]);
        // A restart at 2000 s restarts the timer: the next check is at 2120 s.
        c.restart(T0 + 2_000_000);
        let id = live(&mut c, 12, vec![rec(T0 + 1_500_000, "x")], T0 + 2_000_001);
        c.tick(T0 + 2_119_999);
        assert_eq!(c.clean_ups().last(), Some(&(T0 + 1_920_000)));
        c.tick(T0 + 2_120_000);
        assert_eq!(c.clean_ups().last(), Some(&(T0 + 2_120_000)));
        assert_eq!(contents(&mut c, id, T0 + 2_120_000), Vec::<String>::new());
    }
}
