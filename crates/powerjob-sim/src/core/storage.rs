//! The server's log storage: H2 rows, the live map, the temporary and stable files and
//! the DFS copies, and the sync that turns a live log into a stable file (§4.3–§4.5).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::SimCore;
use crate::config::SimConfig;
use crate::file::FileLines;
use crate::types::{LogFile, Record};

/// A row of `local_instance_log`, with the order in which it was delivered.
#[derive(Clone, Debug)]
pub(super) struct Row {
    pub(super) seq: u64,
    pub(super) record: Record,
}

/// The server's log state of one instance id (also for ids that have no instance row:
/// reading an unknown id writes a stable file too).
#[derive(Clone, Debug, Default)]
pub(super) struct LogState {
    /// H2 rows that have arrived.
    pub(super) rows: Vec<Row>,
    /// The id is in `instanceId2LastReportTime`.
    pub(super) live: bool,
    /// `<id>-temporary.log`: built at, lines.
    pub(super) temp: Option<(i64, FileLines)>,
    /// `<id>-stable.log`.
    pub(super) stable: Option<FileLines>,
    /// Every record ever delivered (pending ones included), for [`SimCore::final_lines`].
    pub(super) delivered: Vec<Row>,
    /// When the temporary file was (re)built, for [`SimCore::rebuilds`].
    pub(super) rebuilds: Vec<i64>,
}

impl SimCore {
    /// `sync(instanceId)`: stable file (an existing one is reused: the poisoning bug),
    /// DFS upload, rows deleted, id out of the live map.
    pub(super) fn sync(&mut self, id: i64) {
        let log = self.logs.entry(id).or_default();
        if log.stable.is_none() {
            log.stable = Some(if log.live {
                build_lines(&log.rows, &mut self.rng, &self.cfg)
            } else {
                self.dfs.get(&id).cloned().unwrap_or_else(FileLines::placeholder)
            });
        }
        if self.cfg.dfs {
            if let Some(stable) = &log.stable {
                self.dfs.insert(id, stable.clone());
            }
        }
        log.rows.clear();
        log.live = false;
    }

    /// Makes sure the file a read of `id` serves exists (§4.3 step 2) and says which.
    pub(super) fn prepare(&mut self, id: i64, now: i64) -> LogFile {
        let log = self.logs.entry(id).or_default();
        if log.live {
            let fresh =
                matches!(&log.temp, Some((built_at, _)) if now.saturating_sub(*built_at) < self.cfg.log_cache_ms);
            if !fresh {
                log.temp = Some((now, build_lines(&log.rows, &mut self.rng, &self.cfg)));
                log.rebuilds.push(now);
            }
            LogFile::Temporary
        } else {
            if log.stable.is_none() {
                // Not live and no file: the DFS copy, else the placeholder, which stays
                // forever (the poisoning bug when the first batch has not arrived yet).
                log.stable = Some(self.dfs.get(&id).cloned().unwrap_or_else(FileLines::placeholder));
            }
            LogFile::Stable
        }
    }

    pub(super) fn file(&self, id: i64, kind: LogFile) -> &FileLines {
        static EMPTY: FileLines = FileLines { lines: Vec::new(), origins: Vec::new() };
        let log = self.logs.get(&id);
        let file = match kind {
            LogFile::Temporary => log.and_then(|l| l.temp.as_ref()).map(|(_, file)| file),
            LogFile::Stable => log.and_then(|l| l.stable.as_ref()),
        };
        file.unwrap_or(&EMPTY)
    }
}

/// The file rebuilt from H2: rows `ORDER BY logTime`, ties in a fresh random order.
fn build_lines(rows: &[Row], rng: &mut StdRng, cfg: &SimConfig) -> FileLines {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    // Shuffle, then a stable sort: equal log times end up in a random order.
    sorted.shuffle(rng);
    sorted.sort_by_key(|r| r.record.log_time);
    FileLines::render(sorted.into_iter().map(|r| (r.seq, &r.record)), cfg.separator(), cfg.utc_offset_minutes)
}
