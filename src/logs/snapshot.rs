//! Turning a burst of `/instance/log` pages into one consistent snapshot.
//!
//! The server rebuilds the log file at most every `LOG_CACHE_TIME` and every page is
//! cut from whichever file is current when that page is read (protocol §6, pitfall 6).
//! A rebuild falling inside a burst splices two different files: lines inserted before
//! the page boundary push the tail of one page onto the start of the next, so the burst
//! would hold one line twice and miss another. The checks here reject such bursts; the
//! caller re-reads, and a burst read twice with identical results is trusted whatever
//! the checks say (rebuilds are at least `LOG_CACHE_TIME` apart).

use std::sync::Arc;

use super::line::{classify, record_time, PageText, PAGE_LINES};

/// One `/instance/log` page as the server sent it (the `StringPage` payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPage {
    /// The page index the server echoed.
    pub index: u64,
    /// `totalPages` of the file this page was cut from.
    pub total_pages: u64,
    /// The page text, separators included.
    pub data: String,
}

/// What the upstream log looks like now, from page `first_page` to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    /// Log lines of pages `first_page..total_pages`, separators stripped.
    Lines {
        /// First page read; its first line is line `first_page * 100` of the log.
        first_page: u64,
        /// Pages the upstream log has in all.
        total_pages: u64,
        /// The lines read (shared: the follower keeps the new ones without a copy).
        lines: Vec<Arc<str>>,
    },
    /// The server has no log (the "no online log" placeholder).
    NoLog,
}

impl Snapshot {
    /// Lines the upstream log has in all, as far as this snapshot tells.
    pub fn upstream_len(&self) -> u64 {
        match self {
            Snapshot::Lines { first_page, lines, .. } => first_page * PAGE_LINES + lines.len() as u64,
            Snapshot::NoLog => 0,
        }
    }
}

/// Why a burst of pages is not a usable snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The server answered with a transient placeholder ("being prepared", exception).
    #[error("PowerJob returned a placeholder instead of the log: {0}")]
    Placeholder(String),
    /// The pages were cut from different versions of the log file; read them again.
    #[error("log pages from different server snapshots: {0}")]
    Inconsistent(&'static str),
    /// An answer no version of the file can give (an absurd page count): fail this read.
    #[error("PowerJob answered a malformed log page: {0}")]
    Malformed(&'static str),
}

/// Assembles the pages `first_page, first_page + 1, …` (in that order, as many as the
/// log has, or up to page `max_pages` when it has more: the snapshot is then cut) into
/// a snapshot. `trusted` skips the splice heuristics: the caller sets it when the burst
/// is proven to come from one file.
///
/// # Errors
/// [`SnapshotError::Placeholder`] when any page is a transient placeholder,
/// [`SnapshotError::Inconsistent`] when the pages cannot come from one file.
pub fn assemble(first_page: u64, pages: &[RawPage], trusted: bool, max_pages: u64) -> Result<Snapshot, SnapshotError> {
    let Some(head) = pages.first() else {
        return Err(SnapshotError::Inconsistent("no page read"));
    };
    let total_pages = head.total_pages;
    let mut lines: Vec<Arc<str>> = Vec::with_capacity(pages.len() * PAGE_LINES as usize);
    // (time, text) of the last timestamped line of the previous page.
    let mut prev_page_records: Vec<(i64, &str)> = Vec::new();
    for (offset, page) in pages.iter().enumerate() {
        let wanted = first_page + offset as u64;
        let text = match classify(page.total_pages, &page.data) {
            PageText::Transient(t) => return Err(SnapshotError::Placeholder(t.to_owned())),
            PageText::NoLog if wanted == 0 && pages.len() == 1 => return Ok(Snapshot::NoLog),
            PageText::NoLog => return Err(SnapshotError::Inconsistent("placeholder inside a log")),
            PageText::Lines(text) => text,
        };
        if page.total_pages != total_pages {
            return Err(SnapshotError::Inconsistent("totalPages changed within one read"));
        }
        if page.index != wanted {
            return Err(SnapshotError::Inconsistent("the server answered another page"));
        }
        let is_last = wanted + 1 >= total_pages;
        let full = text.len() as u64 == PAGE_LINES;
        if wanted < total_pages && !(full || is_last && !text.is_empty()) {
            return Err(SnapshotError::Inconsistent("a page of the wrong length"));
        }
        if !trusted && offset > 0 {
            check_boundary(&prev_page_records, &text)?;
        }
        prev_page_records = text.iter().filter_map(|l| record_time(l).map(|t| (t, *l))).collect();
        lines.extend(text.into_iter().map(Arc::from));
    }
    if first_page + (pages.len() as u64) < total_pages.min(max_pages) {
        return Err(SnapshotError::Inconsistent("fewer pages read than the log has"));
    }
    Ok(Snapshot::Lines { first_page, total_pages, lines })
}

/// The log file is sorted by record time, so across a page boundary time never goes
/// back, and the first record of a page is not a repeat of a record on the page before
/// (the signature of a rebuild that shifted lines across the boundary).
fn check_boundary(prev: &[(i64, &str)], next: &[&str]) -> Result<(), SnapshotError> {
    let Some(&(last_time, _)) = prev.last() else {
        return Ok(());
    };
    let Some((time, text)) = next.iter().find_map(|l| record_time(l).map(|t| (t, *l))) else {
        return Ok(());
    };
    if time < last_time {
        return Err(SnapshotError::Inconsistent("record time goes back across pages"));
    }
    if prev.iter().rev().take_while(|(t, _)| *t == time).any(|(_, l)| *l == text) {
        return Err(SnapshotError::Inconsistent("a record repeated across pages"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(index: u64, total: u64, lines: &[String]) -> RawPage {
        let mut data = String::new();
        for l in lines {
            data.push_str(l);
            data.push('\n');
        }
        RawPage { index, total_pages: total, data }
    }

    fn log(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("2024-06-01 16:00:{:02}.{:03} [w:1] INFO line {i}", i / 100, i % 100 * 10)).collect()
    }

    #[test]
    fn assembles_consecutive_pages() {
        let l = log(250);
        let pages = [page(1, 3, &l[100..200]), page(2, 3, &l[200..])];
        let snap = assemble(1, &pages, false, u64::MAX).unwrap();
        assert_eq!(
            snap,
            Snapshot::Lines {
                first_page: 1,
                total_pages: 3,
                lines: l[100..].iter().map(|l| Arc::from(l.as_str())).collect()
            }
        );
        assert_eq!(snap.upstream_len(), 250);
    }

    #[test]
    fn rejects_a_splice_that_repeats_lines() {
        let old = log(200);
        let mut new = old.clone();
        new.insert(50, "2024-06-01 16:00:00.505 [w:2] INFO late".into());
        // page 0 of the old file, page 1 of the new one: line 99 appears twice.
        let pages = [page(0, 3, &old[..100]), page(1, 3, &new[100..200])];
        assert!(matches!(assemble(0, &pages, false, u64::MAX), Err(SnapshotError::Inconsistent(_))));
        let pages = [page(0, 2, &old[..100]), page(1, 3, &new[100..200])];
        assert!(matches!(assemble(0, &pages, false, u64::MAX), Err(SnapshotError::Inconsistent(_))));
    }

    #[test]
    fn rejects_time_going_back_and_short_pages() {
        let l = log(200);
        let pages = [page(0, 2, &l[100..200]), page(1, 2, &l[..100])];
        assert!(assemble(0, &pages, false, u64::MAX).is_err());
        assert!(assemble(0, &pages, true, u64::MAX).is_ok(), "trusted bursts skip the heuristics");
        let pages = [page(0, 2, &l[..99]), page(1, 2, &l[100..200])];
        assert!(assemble(0, &pages, true, u64::MAX).is_err());
        let pages = [page(0, 3, &l[..100]), page(1, 3, &l[100..200])];
        assert!(assemble(0, &pages, true, u64::MAX).is_err(), "a page is missing");
    }

    #[test]
    fn placeholders_are_never_lines() {
        let p = RawPage { index: 0, total_pages: 1, data: super::super::line::PREPARING.into() };
        assert!(matches!(assemble(3, &[p], false, u64::MAX), Err(SnapshotError::Placeholder(_))));
        let p = RawPage {
            index: 0,
            total_pages: 1,
            data: "SYSTEM: There is no online log for this job instance.\n".into(),
        };
        assert_eq!(assemble(0, &[p], false, u64::MAX), Ok(Snapshot::NoLog));
        let empty = RawPage { index: 0, total_pages: 0, data: String::new() };
        assert_eq!(
            assemble(0, &[empty], false, u64::MAX),
            Ok(Snapshot::Lines { first_page: 0, total_pages: 0, lines: vec![] })
        );
        // Past the end of a log that shrank: an empty window, not an error.
        let past = RawPage { index: 4, total_pages: 1, data: String::new() };
        assert_eq!(
            assemble(4, &[past], false, u64::MAX),
            Ok(Snapshot::Lines { first_page: 4, total_pages: 1, lines: vec![] })
        );
    }
}
