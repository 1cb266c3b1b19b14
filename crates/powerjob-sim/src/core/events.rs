//! The server's time-ordered queue: what is scheduled (runs, status reports, batch
//! arrivals, syncs) and how each event changes the state when its time comes.

use std::collections::BTreeMap;

use super::storage::Row;
use super::SimCore;
use crate::types::{Record, BATCH_RECORDS, INSERT_DELAY_MS};

/// Something that happens at a given time.
#[derive(Clone, Debug)]
pub(super) enum Event {
    /// A worker batch reaches the server: its rows, each with the real time its record
    /// was logged (to cancel the lines a stopped processor never logs); `run` is set for
    /// scripted batches.
    Arrive { id: i64, rows: Vec<(i64, Row)>, run: Option<u64> },
    /// A delayed run leaves the time wheel.
    Dispatch { id: i64, run: u64 },
    /// The worker's first status report of a scripted run.
    Running { id: i64, run: u64 },
    /// The scripted run's final status report.
    Finish { id: i64, run: u64, status: i32, result: String },
    /// The log sync timer (in server memory: a restart loses it).
    Sync { id: i64 },
}

impl SimCore {
    pub(super) fn schedule(&mut self, at: i64, event: Event) {
        self.queue.insert((at, self.next_event), event);
        self.next_event = self.next_event.wrapping_add(1);
    }

    /// A row for `record`, also remembered for [`SimCore::final_lines`].
    pub(super) fn delivered_row(&mut self, id: i64, record: Record) -> Row {
        let row = Row { seq: self.next_seq, record };
        self.next_seq = self.next_seq.wrapping_add(1);
        self.logs.entry(id).or_default().delivered.push(row.clone());
        row
    }

    pub(super) fn apply(&mut self, event: Event, at: i64) {
        let current = |core: &SimCore, id: i64, run: u64| core.instances.get(&id).is_some_and(|i| i.run == run);
        match event {
            Event::Arrive { id, rows, .. } => {
                // An empty batch is the instant between the live-map entry and the
                // insert: a live log without rows, served as an empty page (§4.5).
                let log = self.logs.entry(id).or_default();
                // The id enters the live map before the rows are inserted.
                log.live = true;
                log.rows.extend(rows.into_iter().map(|(_, row)| row));
            }
            Event::Dispatch { id, run } if current(self, id, run) => self.start_run(id, at),
            Event::Running { id, run } if current(self, id, run) => self.apply_running(id, at),
            Event::Finish { id, run, status, result } if current(self, id, run) => {
                self.apply_finish(id, status, &result, at);
            }
            Event::Sync { id } => self.sync(id),
            Event::Dispatch { .. } | Event::Running { .. } | Event::Finish { .. } => {}
        }
    }

    pub(super) fn apply_dispatch(&mut self, id: i64, now: i64) {
        if let Some(inst) = self.instances.get_mut(&id) {
            inst.status = 2;
            inst.actual_trigger_time = Some(now);
            inst.task_tracker_address = Some(self.cfg.worker.clone());
            inst.gmt_modified = now;
        }
    }

    pub(super) fn apply_running(&mut self, id: i64, now: i64) {
        if let Some(inst) = self.instances.get_mut(&id) {
            if matches!(inst.status, 1 | 2) {
                inst.status = 3;
                inst.running_times = inst.running_times.saturating_add(1);
                inst.gmt_modified = now;
            }
        }
    }

    pub(super) fn apply_finish(&mut self, id: i64, status: i32, result: &str, now: i64) {
        let Some(inst) = self.instances.get_mut(&id) else { return };
        inst.status = status;
        inst.result = Some(result.to_owned());
        inst.finished_time = Some(now);
        inst.gmt_modified = now;
        // `processFinishedInstance` schedules the sync; a cancel does not go through it.
        if status != 9 {
            self.schedule(now.saturating_add(self.cfg.sync_delay_ms), Event::Sync { id });
        }
    }

    /// Dispatches now and, for a scripted job, schedules the run's events from `start`.
    pub(super) fn start_run(&mut self, id: i64, start: i64) {
        self.apply_dispatch(id, start);
        let Some(inst) = self.instances.get(&id) else { return };
        let run = inst.run;
        let Some(script) = self.job(inst.job_id).and_then(|j| j.script.clone()) else { return };
        // The run reads its params as a start script would (`${port:-8000}`).
        let script = script.for_run(&inst.job_params, inst.instance_params.as_deref());
        let job_id = inst.job_id;
        self.started(super::StartedRun::new(id, job_id, run, start, &script));
        self.schedule(start.saturating_add(script.running_at_ms), Event::Running { id, run });
        let flush = self.cfg.worker_flush_ms.max(1);
        let mut lines: Vec<_> = script.lines.iter().filter(|l| l.worker < script.workers.len()).collect();
        lines.sort_by_key(|l| l.at_ms);
        // (arrive_at, worker) -> records logged before that flush tick, in log order.
        let mut batches: BTreeMap<(i64, usize), Vec<(i64, Record)>> = BTreeMap::new();
        for line in lines {
            let Some(worker) = script.workers.get(line.worker) else { continue };
            let logged_at = start.saturating_add(line.at_ms);
            let first_tick = start.saturating_add(worker.flush_phase_ms);
            // The first flush tick strictly after the log call.
            let tick = if logged_at < first_tick {
                first_tick
            } else {
                let k = (logged_at - first_tick) / flush + 1;
                first_tick.saturating_add(k.saturating_mul(flush))
            };
            let record = Record {
                log_time: logged_at.saturating_add(worker.clock_skew_ms),
                level: line.level,
                content: line.content.clone(),
                worker: worker.address.clone(),
            };
            batches.entry((tick.saturating_add(INSERT_DELAY_MS), line.worker)).or_default().push((logged_at, record));
        }
        for ((arrive_at, _), records) in batches {
            let mut records = records.into_iter().peekable();
            while records.peek().is_some() {
                let chunk: Vec<(i64, Record)> = records.by_ref().take(BATCH_RECORDS).collect();
                let rows = chunk.into_iter().map(|(logged_at, r)| (logged_at, self.delivered_row(id, r))).collect();
                self.schedule(arrive_at, Event::Arrive { id, rows, run: Some(run) });
            }
        }
        self.schedule(
            start.saturating_add(script.end_ms),
            Event::Finish { id, run, status: script.final_status, result: script.result.clone() },
        );
    }

    /// Drops the run's future: its delayed dispatch, status reports and, with
    /// `cut_lines_after`, the scripted lines logged after that time (which the stopped
    /// processor never logs).
    pub(super) fn cancel_run(&mut self, id: i64, run: u64, cut_lines_after: Option<i64>) {
        if let Some(now) = cut_lines_after {
            self.cut_runs.insert((id, run), now);
        }
        let Some(now) = cut_lines_after else {
            self.queue.retain(|_, event| match event {
                Event::Dispatch { id: i, run: r }
                | Event::Running { id: i, run: r }
                | Event::Finish { id: i, run: r, .. } => !(*i == id && *r == run),
                Event::Arrive { .. } | Event::Sync { .. } => true,
            });
            return;
        };
        let mut cancelled: Vec<u64> = Vec::new();
        self.queue.retain(|_, event| match event {
            Event::Dispatch { id: i, run: r }
            | Event::Running { id: i, run: r }
            | Event::Finish { id: i, run: r, .. } => !(*i == id && *r == run),
            Event::Arrive { id: i, rows, run: Some(r) } if *i == id && *r == run => {
                rows.retain(|(logged_at, row)| {
                    let keep = *logged_at <= now;
                    if !keep {
                        cancelled.push(row.seq);
                    }
                    keep
                });
                !rows.is_empty()
            }
            Event::Arrive { .. } | Event::Sync { .. } => true,
        });
        if let Some(log) = self.logs.get_mut(&id) {
            log.delivered.retain(|r| !cancelled.contains(&r.seq));
        }
    }
}
