//! The read procedure of one refresh, generic over where pages come from, so the
//! service (PowerJob over HTTP) and the property tests (the simulator in virtual time)
//! run the very same code.
//!
//! 1. Read the *probe* page (the last page of the previous snapshot). Same page count
//!    and same text: nothing was added, done with one request.
//! 2. It starts with the lines it had ([`Probe::Grew`]): read the pages after it and
//!    apply them as a tail. So a growing log costs the pages that changed, plus one.
//! 3. Otherwise read the window `first_page..totalPages` (the region late lines can
//!    reach) in one burst, a few pages at a time. A burst may straddle a server rebuild
//!    and splice two files (docs/powerjob-protocol.md §6, pitfall 6). It is used only
//!    when it is provably cut from one file: a single page; a burst that ended before the
//!    file the probe found could be rebuilt again (see [`Follower::stable_until`]); or a
//!    burst read twice with identical results. Otherwise it is read again.
//! 4. Apply it; if the window no longer lines up, read the whole log and apply that.
//!
//! Page counts are trusted only within bounds: never more pages than
//! [`Timing::max_lines`] allows (the log is cut there), and a page that ends before its
//! `totalPages` says fails the read at once. A burst reads the last page its first page
//! claims before the pages in between: a count that lies (PowerJob or a proxy answering
//! page 0 with `totalPages: 1000000000` and the other pages with the true count) costs
//! one request past the real end, whose own count contradicts it, and fails the refresh;
//! the next refresh plans from what the follower holds, as before the failed one.

use std::borrow::{Borrow, BorrowMut};
use std::future::Future;
use std::sync::{Arc, RwLock};

use super::follower::{Follower, NeedFullRead, Pages, Probe, Timing};
use super::line::{classify, split_lines, PageText, PAGE_LINES};
use super::snapshot::{assemble, RawPage, Snapshot, SnapshotError};

/// Runs `f` on the follower in `cell`, read-locked.
fn with_ref<F: Borrow<Follower>, R>(cell: &RwLock<F>, f: impl FnOnce(&Follower) -> R) -> R {
    f(Borrow::<Follower>::borrow(&*cell.read().expect("follower lock poisoned")))
}

/// Runs `f` on the follower in `cell`, write-locked.
fn with_mut<F: BorrowMut<Follower>, R>(cell: &RwLock<F>, f: impl FnOnce(&mut Follower) -> R) -> R {
    f(BorrowMut::<Follower>::borrow_mut(&mut *cell.write().expect("follower lock poisoned")))
}

/// Pages of one snapshot read at once.
pub const PAGE_PARALLELISM: usize = 4;
/// Bursts read again when their pages came from different server snapshots.
pub const MAX_BURST_ATTEMPTS: usize = 4;
/// Reads of one page that answered a transient placeholder ("being prepared").
pub const PLACEHOLDER_RETRIES: usize = 2;

/// Where log pages come from.
pub trait PageSource {
    /// Transport error.
    type Error;
    /// Reads page `index` of the instance's log.
    fn page(&self, index: u64) -> impl Future<Output = Result<RawPage, Self::Error>>;
    /// The time now (epoch ms), on the clock `read_at` is measured with.
    fn now_ms(&self) -> i64;
    /// The whole log file in one request, if the source offers it (`None` otherwise).
    /// Its end may carry garbage (PowerJob pads downloads to 4 KiB blocks).
    fn whole_file(&self) -> impl Future<Output = Result<Option<Vec<u8>>, Self::Error>> {
        async { Ok(None) }
    }
}

/// Why a refresh read failed.
#[derive(Debug)]
pub enum ReadError<E> {
    /// The page source failed.
    Source(E),
    /// The server kept answering placeholders or splicing rebuilds.
    Snapshot(SnapshotError),
}

impl<E> From<SnapshotError> for ReadError<E> {
    fn from(e: SnapshotError) -> Self {
        ReadError::Snapshot(e)
    }
}

/// What a refresh read changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Lines appended.
    pub appended: usize,
    /// Pages requested.
    pub pages_read: usize,
}

/// Runs the read of the module docs against `follower` (locked only between reads,
/// never across one; it may be held inside something else, such as the served log
/// [`super::Joined`], which catches up afterwards). `read_at` is when this refresh started (epoch ms). With
/// `whole_file_ok` (a finished instance), a first read of a log of at least
/// [`WHOLE_FILE_MIN_PAGES`] pages downloads the file in one request instead of paging.
///
/// # Errors
/// [`ReadError`] when no usable snapshot could be read; the follower is unchanged then.
pub async fn refresh_log<S: PageSource, F: BorrowMut<Follower>>(
    src: &S,
    follower: &RwLock<F>,
    pages: Pages,
    read_at: i64,
    timing: &Timing,
    whole_file_ok: bool,
) -> Result<ReadOutcome, ReadError<S::Error>> {
    let Pages { probe_page, first_page, .. } = pages;
    let max_pages = (timing.max_lines as u64).div_ceil(PAGE_LINES) + 1;
    let mut pages_read = 0;
    let probe = read_page(src, probe_page, &mut pages_read).await?;
    let first_read = with_ref(follower, |f| f.line_count()) == 0;
    if whole_file_ok && first_read && first_page == 0 && probe.index == 0 && probe.total_pages >= WHOLE_FILE_MIN_PAGES {
        if let Some(snapshot) = read_whole_file(src, probe.clone(), max_pages, &mut pages_read).await? {
            let appended = with_mut(follower, |f| f.apply(&snapshot, read_at, timing)).map_or(0, |a| a.appended);
            return Ok(ReadOutcome { appended, pages_read });
        }
    }
    // (`read_page` never returns a placeholder: a placeholder tells nothing about the file,
    // and in particular does not prove the rebuild `stable_until` relies on.)
    let seen = with_ref(follower, |f| f.probe(&probe));
    if seen == Probe::Unchanged {
        with_mut(follower, |f| f.apply_unchanged(read_at, timing));
        return Ok(ReadOutcome { appended: 0, pages_read });
    }
    let stable_until = with_ref(follower, |f| f.stable_until(timing));
    let big = probe.total_pages >= WHOLE_FILE_MIN_PAGES;
    // The probe is a page read too: what it holds whole must not be lost if the burst
    // that follows finds the log destroyed (a restart between the two reads).
    let mut unproven = vec![probe.clone()];
    let result =
        read_changed(src, follower, seen, probe, pages, stable_until, read_at, timing, &mut pages_read, &mut unproven)
            .await;
    if let (true, Err(ReadError::Snapshot(SnapshotError::Inconsistent(_)))) = (big, &result) {
        // A big log whose bursts of pages keep straddling rebuilds (each page request
        // re-reads the whole file on the server, so a burst can outlast half the cache
        // time): the download is one request, cut from one file, where the server allows it.
        let head = read_page(src, 0, &mut pages_read).await?;
        if let Some(snapshot) = read_whole_file(src, head, max_pages, &mut pages_read).await? {
            let applied = with_mut(follower, |f| f.apply_with(&snapshot, read_at, timing, false, &unproven));
            return Ok(ReadOutcome { appended: applied.map_or(0, |a| a.appended), pages_read });
        }
    }
    if let Err(ReadError::Snapshot(SnapshotError::Inconsistent(_))) = &result {
        // Bursts never proven to come from one file are not applied, but every page is
        // real: keep the records they hold whole that were never served, so that nothing
        // PowerJob served is lost even if it never serves it again (a sync that collapses
        // the log right after, a restart). A successful read does this as it applies.
        let salvaged = with_mut(follower, |f| f.salvage(&unproven, timing));
        if salvaged > 0 {
            tracing::debug!(salvaged, "kept whole records of pages never proven consistent");
        }
    }
    result
}

/// Steps 2–4 of the module docs, once the probe showed that the file changed.
#[allow(clippy::too_many_arguments)]
async fn read_changed<S: PageSource, F: BorrowMut<Follower>>(
    src: &S,
    follower: &RwLock<F>,
    seen: Probe,
    probe: RawPage,
    pages: Pages,
    stable_until: Option<i64>,
    read_at: i64,
    timing: &Timing,
    pages_read: &mut usize,
    unproven: &mut Vec<RawPage>,
) -> Result<ReadOutcome, ReadError<S::Error>> {
    let Pages { tail_page, first_page, .. } = pages;
    let max_pages = (timing.max_lines as u64).div_ceil(PAGE_LINES) + 1;
    if seen == Probe::Grew {
        // Nothing moved up to the old end: read only what follows it.
        let snapshot =
            read_snapshot(src, tail_page, Some(probe.clone()), stable_until, max_pages, pages_read, unproven).await?;
        if let Ok(a) = with_mut(follower, |f| f.apply_with(&snapshot, read_at, timing, true, unproven)) {
            return Ok(ReadOutcome { appended: a.appended, pages_read: *pages_read });
        }
    }
    let snapshot = read_snapshot(src, first_page, Some(probe), stable_until, max_pages, pages_read, unproven).await?;
    let applied = with_mut(follower, |f| f.apply_with(&snapshot, read_at, timing, false, unproven));
    let appended = match applied {
        Ok(a) => a.appended,
        Err(NeedFullRead) => {
            let snapshot = read_snapshot(src, 0, None, stable_until, max_pages, pages_read, unproven).await?;
            with_mut(follower, |f| f.apply_with(&snapshot, read_at, timing, false, unproven)).map_or(0, |a| a.appended)
        }
    };
    Ok(ReadOutcome { appended, pages_read: *pages_read })
}

/// Logs at least this long are downloaded whole on a first read of a finished instance.
pub const WHOLE_FILE_MIN_PAGES: u64 = 10;

/// The whole file as a snapshot, checked against its first and last pages; `None` when
/// the source has no download or it does not line up (another server's file, a
/// placeholder, a rebuild in between): the caller pages instead.
async fn read_whole_file<S: PageSource>(
    src: &S,
    first: RawPage,
    max_pages: u64,
    pages_read: &mut usize,
) -> Result<Option<Snapshot>, ReadError<S::Error>> {
    let total = first.total_pages;
    if total > max_pages {
        return Ok(None);
    }
    let last = read_page(src, total - 1, pages_read).await?;
    if contradicts(total, &last) {
        // A lie, or a file that shrank between the two reads: this refresh fails (paging
        // would ask past the end again); the next one starts from page 0 anew.
        return Err(SnapshotError::Inconsistent("a page past the end its own totalPages says").into());
    }
    let Some(bytes) = src.whole_file().await.map_err(ReadError::Source)? else { return Ok(None) };
    // Strictly UTF-8, up to the last whole line before any invalid byte (the block
    // padding may cut a character; a non-UTF-8 file, e.g. a GBK server, must not be
    // served as replacement characters: the pages, sent as JSON, are right).
    let valid = std::str::from_utf8(&bytes).map_or_else(|e| e.valid_up_to(), |_| bytes.len());
    let whole_lines = bytes[..valid].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&bytes[..whole_lines]).expect("a valid UTF-8 prefix");
    let lines = split_lines(text);
    let first_lines = split_lines(&first.data);
    let last_lines = split_lines(&last.data);
    let len = ((total - 1) * PAGE_LINES) as usize + last_lines.len();
    let fits = last.total_pages == total
        && lines.len() >= len
        && lines[..first_lines.len()] == first_lines[..]
        && lines[len - last_lines.len()..len] == last_lines[..];
    if !fits {
        tracing::debug!("the downloaded log does not match its pages; reading pages");
        return Ok(None);
    }
    // Only the first `len` lines: what follows is the download's block padding.
    let lines = lines[..len].iter().map(|l| Arc::from(*l)).collect();
    Ok(Some(Snapshot::Lines { first_page: 0, total_pages: total, lines }))
}

/// Reads pages `first_page..` (up to `max_pages` of the log) as one consistent
/// snapshot (see the module docs). `known` is a page already read in this refresh,
/// reused when it belongs to the window; `stable_until` is [`Follower::stable_until`].
///
/// # Errors
/// [`ReadError`] on a source failure, a placeholder, a malformed page, or a log that
/// kept changing.
pub async fn read_snapshot<S: PageSource>(
    src: &S,
    first_page: u64,
    known: Option<RawPage>,
    stable_until: Option<i64>,
    max_pages: u64,
    pages_read: &mut usize,
    unproven: &mut Vec<RawPage>,
) -> Result<Snapshot, ReadError<S::Error>> {
    let mut known = known;
    let mut previous: Option<Vec<RawPage>> = None;
    // A page count a later page contradicted (see `read_burst`).
    let mut contradicted = None;
    for _ in 0..MAX_BURST_ATTEMPTS {
        let burst = read_burst(src, first_page, known.take(), max_pages, pages_read, &mut contradicted, unproven).await;
        let pages = match burst {
            Ok(pages) => pages,
            Err(ReadError::Snapshot(SnapshotError::Inconsistent(why))) => {
                tracing::debug!(why, "the log changed while it was read; reading again");
                previous = None;
                continue;
            }
            Err(e) => return Err(e),
        };
        unproven.extend(pages.iter().cloned());
        let proven =
            pages.len() == 1 || stable_until.is_some_and(|t| src.now_ms() < t) || previous.as_ref() == Some(&pages);
        let checked = assemble(first_page, &pages, proven, max_pages);
        match checked {
            Ok(snapshot) if proven => return Ok(snapshot),
            Ok(_) => previous = Some(pages),
            Err(SnapshotError::Inconsistent(why)) => {
                tracing::debug!(why, "pages from different server snapshots; reading again");
                previous = Some(pages);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(SnapshotError::Inconsistent("the log kept changing while it was read").into())
}

/// Reads pages `first_page..totalPages` (at least one, at most up to page `max_pages`):
/// the first, then the last it claims (see the module docs), then those in between,
/// [`PAGE_PARALLELISM`] at a time. Stops at the first page that ends before its own
/// `totalPages` says the log does: a malformed answer (an absurd page count) fails the
/// read there instead of asking for page after page. A last page that lies past the end
/// its own `totalPages` says contradicts the first page's count: the file changed (a
/// restart, a collapse: read again), or the count lies; a first page that claims a
/// count already `contradicted` in this read fails it, so a lie costs one request past
/// the end.
async fn read_burst<S: PageSource>(
    src: &S,
    first_page: u64,
    known: Option<RawPage>,
    max_pages: u64,
    pages_read: &mut usize,
    contradicted: &mut Option<u64>,
    unproven: &mut Vec<RawPage>,
) -> Result<Vec<RawPage>, ReadError<S::Error>> {
    let (head, known) = match known {
        Some(p) if p.index == first_page => (p, None),
        other => (read_page(src, first_page, pages_read).await?, other),
    };
    let total = head.total_pages;
    if *contradicted == Some(total) {
        return Err(SnapshotError::Malformed("pages disagree about the log's page count (totalPages)").into());
    }
    let end = total.min(max_pages).max(first_page + 1);
    let mut pages = Vec::with_capacity(usize::try_from(end - first_page).unwrap_or(0).min(4096));
    check_length(&head)?;
    pages.push(head);
    let reuse = |index: u64| known.as_ref().filter(|p| p.index == index && p.total_pages == total).cloned();
    let last = if end > first_page + 1 {
        let page = match reuse(end - 1) {
            Some(p) => p,
            None => read_page(src, end - 1, pages_read).await?,
        };
        if contradicts(total, &page) {
            // What was read stays a candidate for salvage (the log may be destroyed
            // before it is read again): a restart can shrink the file under a burst.
            unproven.extend(pages.iter().cloned());
            unproven.push(page);
            *contradicted = Some(total);
            return Err(SnapshotError::Inconsistent("a page past the end its own totalPages says").into());
        }
        check_length(&page)?;
        Some(page)
    } else {
        None
    };
    let mut next = first_page + 1;
    let end = end.saturating_sub(1).max(first_page + 1);
    while next < end {
        let group = next..(next + PAGE_PARALLELISM as u64).min(end);
        next = group.end;
        let read = futures::future::try_join_all(group.map(|index| {
            let reuse = reuse(index);
            async move {
                let mut reads = 0;
                let page = match reuse {
                    Some(p) => p,
                    None => read_page(src, index, &mut reads).await?,
                };
                Ok::<_, ReadError<S::Error>>((page, reads))
            }
        }))
        .await?;
        for (page, reads) in read {
            *pages_read += reads;
            check_length(&page)?;
            pages.push(page);
        }
    }
    pages.extend(last);
    Ok(pages)
}

/// A page read after a first page that claimed `total` pages contradicts that claim when
/// it lies past the end its own `totalPages` says.
fn contradicts(total: u64, page: &RawPage) -> bool {
    page.total_pages != total && page.index >= page.total_pages
}

/// A page before the last one its own `totalPages` claims holds exactly 100 lines.
fn check_length<E>(page: &RawPage) -> Result<(), ReadError<E>> {
    if page.index + 1 < page.total_pages && split_lines(&page.data).len() as u64 != PAGE_LINES {
        return Err(SnapshotError::Malformed("a page ends before the log's totalPages says it does").into());
    }
    Ok(())
}

/// Reads one page, reading it again (a few times) while the server answers a transient
/// placeholder instead of the page. A placeholder that persists fails the read.
async fn read_page<S: PageSource>(src: &S, index: u64, pages_read: &mut usize) -> Result<RawPage, ReadError<S::Error>> {
    let mut attempt = 0;
    loop {
        *pages_read += 1;
        let page = src.page(index).await.map_err(ReadError::Source)?;
        match classify(page.total_pages, &page.data) {
            PageText::Transient(text) if attempt >= PLACEHOLDER_RETRIES => {
                return Err(SnapshotError::Placeholder(text.to_owned()).into());
            }
            PageText::Transient(_) => attempt += 1,
            _ => return Ok(page),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;
    use crate::logs::{Plan, Status};

    /// A log that grows by 50 lines at every rebuild, rebuilt (lazily, at a read) once
    /// the file is `cache` ms old; every request takes `step` ms.
    struct Growing {
        lines: RefCell<Vec<String>>,
        now: Cell<i64>,
        built_at: Cell<i64>,
        step: i64,
        cache: i64,
        download: bool,
        downloads: Cell<usize>,
    }

    impl Growing {
        fn new(lines: usize, step: i64, cache: i64, download: bool) -> Self {
            let g = Growing {
                lines: RefCell::new(Vec::new()),
                now: Cell::new(0),
                built_at: Cell::new(0),
                step,
                cache,
                download,
                downloads: Cell::new(0),
            };
            g.grow(lines);
            g
        }

        fn grow(&self, n: usize) {
            let mut lines = self.lines.borrow_mut();
            let start = lines.len();
            lines.extend((start..start + n).map(|i| {
                format!("2024-06-01 16:{:02}:{:02}.{:03} [w:1] INFO line {i}", i / 60_000, i / 1000 % 60, i % 1000)
            }));
        }

        fn tick(&self) {
            self.now.set(self.now.get() + self.step);
            if self.now.get() - self.built_at.get() >= self.cache {
                self.grow(50);
                self.built_at.set(self.now.get());
            }
        }
    }

    impl PageSource for Growing {
        type Error = std::convert::Infallible;

        async fn page(&self, index: u64) -> Result<RawPage, Self::Error> {
            self.tick();
            let lines = self.lines.borrow();
            let total = lines.len().div_ceil(100) as u64;
            let from = (index as usize * 100).min(lines.len());
            let data = lines[from..(from + 100).min(lines.len())].iter().map(|l| format!("{l}\n")).collect();
            Ok(RawPage { index, total_pages: total, data })
        }

        fn now_ms(&self) -> i64 {
            self.now.get()
        }

        async fn whole_file(&self) -> Result<Option<Vec<u8>>, Self::Error> {
            self.tick();
            if !self.download {
                return Ok(None);
            }
            self.downloads.set(self.downloads.get() + 1);
            let mut bytes: Vec<u8> = self.lines.borrow().iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
            bytes.resize(bytes.len().div_ceil(4096) * 4096, 0); // the server's padding
            Ok(Some(bytes))
        }
    }

    fn refresh(src: &Growing, follower: &RwLock<Follower>) -> Result<ReadOutcome, ReadError<std::convert::Infallible>> {
        let timing = Timing { log_cache_ms: src.cache, ..Timing::default() };
        let facts = crate::logs::InstanceFacts {
            status: Status::Running,
            actual_trigger_time: Some(-1_000_000),
            running_times: 1,
            ..Default::default()
        };
        let Plan::Read(pages) = follower.read().unwrap().plan(&facts, src.now_ms(), &timing) else { panic!("a read") };
        futures::executor::block_on(refresh_log(src, follower, pages, src.now_ms(), &timing, false))
    }

    /// A log of `lines` lines whose page 0 claims `claim` pages (every page when
    /// `every`), the others the true count; counts the requests past the real end.
    struct Lying {
        lines: usize,
        claim: u64,
        every: bool,
        past_end: Cell<usize>,
    }

    impl PageSource for Lying {
        type Error = std::convert::Infallible;

        async fn page(&self, index: u64) -> Result<RawPage, Self::Error> {
            let real = self.lines.div_ceil(100) as u64;
            if index >= real {
                self.past_end.set(self.past_end.get() + 1);
            }
            let from = (index as usize * 100).min(self.lines);
            let data = (from..(from + 100).min(self.lines))
                .map(|i| format!("2024-06-01 16:00:{:02}.{:03} [w:1] INFO line {i}\n", i / 1000, i % 1000))
                .collect();
            let total_pages = if index == 0 || self.every { self.claim } else { real };
            Ok(RawPage { index, total_pages, data })
        }

        fn now_ms(&self) -> i64 {
            0
        }
    }

    #[test]
    fn a_page_count_that_lies_costs_one_request_past_the_end_per_refresh() {
        let timing = Timing::default();
        let facts = crate::logs::InstanceFacts {
            status: Status::Running,
            actual_trigger_time: Some(-1_000_000),
            running_times: 1,
            ..Default::default()
        };
        for (claim, every) in [(1_000_000_000, false), (1_000_000_000, true), (50, false), (4, false)] {
            let src = Lying { lines: 250, claim, every, past_end: Cell::new(0) };
            let follower = RwLock::new(Follower::default());
            let plan = follower.read().unwrap().plan(&facts, 0, &timing);
            for refresh in 1..=5 {
                // Planned from what is held, whatever the failed refreshes read.
                assert_eq!(follower.read().unwrap().plan(&facts, 0, &timing), plan);
                let Plan::Read(pages) = plan else { panic!("a read") };
                let got = futures::executor::block_on(refresh_log(&src, &follower, pages, 0, &timing, true));
                // (Malformed when paging; a first read that would download the file fails
                // on its last page, as a file that shrank would.)
                let failed = matches!(
                    got,
                    Err(ReadError::Snapshot(SnapshotError::Malformed(_) | SnapshotError::Inconsistent(_)))
                );
                assert!(failed, "{claim}: {got:?}");
                assert_eq!(src.past_end.get(), refresh, "claim {claim} (every page: {every}): one past the end each");
                assert_eq!(follower.read().unwrap().line_count(), 0, "nothing served from a contradiction");
            }
        }
        // The truth is read whole, with no request past the end.
        let src = Lying { lines: 250, claim: 3, every: true, past_end: Cell::new(0) };
        let follower = RwLock::new(Follower::default());
        let Plan::Read(pages) = follower.read().unwrap().plan(&facts, 0, &timing) else { panic!("a read") };
        let got = futures::executor::block_on(refresh_log(&src, &follower, pages, 0, &timing, false)).unwrap();
        // (3 pages twice: a first burst of several pages is proven by reading it again.)
        assert_eq!((got.appended, got.pages_read, src.past_end.get()), (250, 6, 0));
    }

    #[test]
    fn a_big_log_whose_bursts_straddle_rebuilds_converges_through_the_download() {
        // 15 pages at 150 ms a request, rebuilt every second: no burst is from one file.
        let src = Growing::new(1_500, 150, 1_000, false);
        let follower = RwLock::new(Follower::default());
        assert!(matches!(refresh(&src, &follower), Err(ReadError::Snapshot(SnapshotError::Inconsistent(_)))));
        {
            // The pages read were kept (whole records only), each once, all real.
            let f = follower.read().unwrap();
            let held: std::collections::HashSet<&str> = f.lines().iter().collect();
            assert!(!held.is_empty() && held.len() == f.line_count());
            assert!(held.iter().all(|l| src.lines.borrow().iter().any(|x| x == l)));
        }
        let src = Growing::new(1_500, 150, 1_000, true);
        let follower = RwLock::new(Follower::default());
        let outcome = refresh(&src, &follower).unwrap();
        assert_eq!(src.downloads.get(), 1);
        let f = follower.read().unwrap();
        let held: Vec<&str> = f.lines().iter().collect();
        let file = src.lines.borrow();
        assert!(outcome.appended >= 1_500 && held.len() == outcome.appended);
        assert_eq!(held, file[..held.len()].iter().map(String::as_str).collect::<Vec<_>>(), "a prefix of the file");
    }
}
