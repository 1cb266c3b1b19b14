//! The server's log files: records rendered as lines (§4.4), read back with `readLine`,
//! cut into pages (§4.2), padded on download (§4.8), and, for tests, where each line of a
//! file came from ([`LineId`]).

use chrono::{DateTime, FixedOffset, Offset, Utc};

pub use crate::types::LineId;
use crate::types::{Record, StringPage, NO_ONLINE_LOG, PAGE_LINES};

/// `OmsFileUtils.file2HttpResponse` buffer size: downloads are padded to a multiple of it.
pub const DOWNLOAD_BUFFER: usize = 4_096;

/// A file as the server wrote it: its lines, and the origin of each (`None` for the
/// "no online log" placeholder line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileLines {
    pub(crate) lines: Vec<String>,
    pub(crate) origins: Vec<Option<LineId>>,
}

impl FileLines {
    /// The stable file written when there is no log: one placeholder line.
    pub(crate) fn placeholder() -> Self {
        FileLines { lines: vec![NO_ONLINE_LOG.to_owned()], origins: vec![None] }
    }

    /// Writes the records as the server does (one formatted line + separator each) and
    /// reads the file back with `readLine` (§4.4). Every record's text ends with the
    /// separator, so splitting record by record gives the lines of the whole file.
    pub(crate) fn render<'a>(
        records: impl Iterator<Item = (u64, &'a Record)>,
        separator: &str,
        utc_offset_minutes: i32,
    ) -> Self {
        let mut file = FileLines::default();
        for (seq, r) in records {
            let text = render(r, utc_offset_minutes) + separator;
            for (n, line) in read_lines(&text).into_iter().enumerate() {
                file.lines.push(line);
                file.origins.push(Some(LineId { record: seq, line: u32::try_from(n).unwrap_or(u32::MAX) }));
            }
        }
        file
    }

    /// Page `index` (§4.2) and the origins of its lines.
    pub(crate) fn page(&self, index: i64, separator: &str) -> (StringPage, Vec<Option<LineId>>) {
        let total_pages = i64::try_from(self.lines.len().div_ceil(PAGE_LINES)).unwrap_or(i64::MAX);
        let start =
            usize::try_from(index).ok().and_then(|i| i.checked_mul(PAGE_LINES)).filter(|&s| s < self.lines.len());
        let Some(start) = start else {
            return (StringPage { index, total_pages, data: String::new() }, Vec::new());
        };
        let end = self.lines.len().min(start + PAGE_LINES);
        let data = self.lines[start..end].iter().flat_map(|l| [l.as_str(), separator]).collect();
        (StringPage { index, total_pages, data }, self.origins[start..end].to_vec())
    }

    /// The file's bytes as written (every line followed by the separator).
    pub(crate) fn text(&self, separator: &str) -> String {
        self.lines.iter().flat_map(|l| [l.as_str(), separator]).collect()
    }
}

/// One record as a log line: `yyyy-MM-dd HH:mm:ss.SSS [worker] LEVEL content`.
pub fn render(record: &Record, utc_offset_minutes: i32) -> String {
    format!(
        "{} [{}] {} {}",
        local_time(record.log_time, utc_offset_minutes),
        record.worker,
        record.level,
        record.content
    )
}

/// `BufferedReader.readLine` over a whole text: `\n`, `\r\n` and a lone `\r` end a line;
/// a final line without terminator still counts.
pub fn read_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => lines.push(std::mem::take(&mut current)),
            '\r' => {
                chars.next_if_eq(&'\n');
                lines.push(std::mem::take(&mut current));
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// The `file2HttpResponse` bug: the whole 4096-byte buffer is written after every read,
/// so the body is padded with NULs (first chunk) or stale bytes of the previous chunk.
pub(crate) fn pad_like_file2http(file: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; DOWNLOAD_BUFFER];
    let mut out = Vec::with_capacity(file.len().div_ceil(DOWNLOAD_BUFFER) * DOWNLOAD_BUFFER);
    for chunk in file.chunks(DOWNLOAD_BUFFER) {
        buf[..chunk.len()].copy_from_slice(chunk);
        out.extend_from_slice(&buf);
    }
    out
}

/// `log_time` in the server's time zone, `yyyy-MM-dd HH:mm:ss.SSS`.
pub fn local_time(ms: i64, utc_offset_minutes: i32) -> String {
    let offset = FixedOffset::east_opt(utc_offset_minutes.saturating_mul(60)).unwrap_or_else(|| Utc.fix());
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.with_timezone(&offset).format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        // Out of chrono's range: still a line, never a panic.
        None => ms.to_string(),
    }
}

/// A `java.util.Date` as Spring Boot's Jackson writes it: UTC, millis, `+00:00`.
pub fn iso(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string(),
        None => "1970-01-01T00:00:00.000+00:00".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Level;

    fn rec(content: &str) -> Record {
        Record { log_time: 1_717_228_800_000, level: Level::Info, content: content.into(), worker: "w:1".into() }
    }

    #[test]
    fn lines_know_their_record_even_when_texts_repeat() {
        let trace = "failed\n\tat a.B.c(B.java:1)\n";
        let (a, b) = (rec(trace), rec(trace));
        let file = FileLines::render([(7, &a), (9, &b)].into_iter(), "\n", 480);
        // Each record: its line, the trace line, the empty line its final '\n' makes.
        assert_eq!(file.lines.len(), 6);
        assert_eq!(file.lines[1], file.lines[4]);
        assert_eq!((file.lines[2].as_str(), file.lines[5].as_str()), ("", ""));
        let id = |record, line| Some(LineId { record, line });
        assert_eq!(file.origins[..3], [id(7, 0), id(7, 1), id(7, 2)]);
        assert_eq!(file.origins[5], id(9, 2));
        // A lone '\r' in the content ends a line too, and "\r" + "\n" is one terminator.
        let cr = rec("a\rb\r");
        assert_eq!(FileLines::render([(1, &cr)].into_iter(), "\n", 0).lines.len(), 2);
    }

    #[test]
    fn pages_carry_their_origins() {
        let records: Vec<Record> = (0..150).map(|i| rec(&format!("l{i}"))).collect();
        let file = FileLines::render(records.iter().enumerate().map(|(i, r)| (i as u64, r)), "\n", 0);
        let (p1, origins) = file.page(1, "\n");
        assert_eq!((p1.index, p1.total_pages, origins.len()), (1, 2, 50));
        assert_eq!(origins[0], Some(LineId { record: 100, line: 0 }));
        let (past, none) = file.page(2, "\n");
        assert_eq!((past.data.as_str(), past.total_pages, none.len()), ("", 2, 0));
        assert_eq!(FileLines::placeholder().page(0, "\n").1, [None]);
    }
}
