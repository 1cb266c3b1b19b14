//! Line-level facts about PowerJob log text: splitting pages into physical lines,
//! recognising placeholder pages, and reading a record's timestamp.
//!
//! Everything here is pure and allocation-light; it runs once per fetched line.

/// The text PowerJob writes when it has no log for an instance (protocol §4.5). It is
/// served as a normal one-line page, and it is also what a poisoned stable file holds.
pub const NO_ONLINE_LOG: &str = "SYSTEM: There is no online log for this job instance.";
/// Returned instead of a page when preparing the log file took longer than 5 s.
pub const PREPARING: &str = "log file is being prepared, please try again later.";
/// Prefix of the placeholder returned when reading the file failed on the server.
pub const SERVER_EXCEPTION: &str = "oms-server execution exception, caused by ";

/// Lines per `/instance/log` page (`MAX_LINE_COUNT` on the server).
pub const PAGE_LINES: u64 = 100;

/// Splits page text into physical lines the way Java's `readLine` does: `\r\n`, `\n`
/// and a lone `\r` each end a line. Only the final empty element (after the trailing
/// separator every non-empty page has) is dropped, so empty lines inside survive.
pub fn split_lines(data: &str) -> Vec<&str> {
    let mut lines = Vec::with_capacity(PAGE_LINES as usize);
    let bytes = data.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&data[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&data[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() {
        lines.push(&data[start..]);
    }
    lines
}

/// What a `/instance/log` page turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageText<'a> {
    /// Real log lines (possibly none).
    Lines(Vec<&'a str>),
    /// "There is no online log": no rows and nothing in the DFS, or a poisoned log.
    NoLog,
    /// A transient placeholder ("being prepared", server exception): retry later.
    Transient(&'a str),
}

/// Classifies a page. Placeholders built with `StringPage.simple` have no trailing
/// separator and always claim `index 0, totalPages 1`; the "no online log" text is a
/// normal one-line page. Real log lines always start with a timestamp, so a real log
/// can never consist of exactly one of these texts.
pub fn classify(total_pages: u64, data: &str) -> PageText<'_> {
    if total_pages == 1 {
        let trimmed = data.trim_end_matches(['\r', '\n']);
        if trimmed == NO_ONLINE_LOG && trimmed.len() != data.len() {
            return PageText::NoLog;
        }
        if trimmed.len() == data.len() && (data == PREPARING || data.starts_with(SERVER_EXCEPTION)) {
            return PageText::Transient(data);
        }
    }
    PageText::Lines(split_lines(data))
}

/// The worker timestamp of a record's first line, `yyyy-MM-dd HH:mm:ss.SSS [`, as
/// milliseconds on a naive (zone-less) scale: only differences matter. Continuation
/// lines of a multi-line record (stack traces, empty lines) have none.
pub fn record_time(line: &str) -> Option<i64> {
    let b = line.as_bytes();
    if b.len() < 25 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'.' || b[23] != b' ' || b[24] != b'[' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some((((days * 24 + h) * 60 + mi) * 60 + s) * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_read_line() {
        assert_eq!(split_lines("a\nb\n"), ["a", "b"]);
        assert_eq!(split_lines("a\r\nb\r\n"), ["a", "b"]);
        assert_eq!(split_lines("a\rb\n\n"), ["a", "b", ""]);
        assert_eq!(split_lines("a\n\nb"), ["a", "", "b"]);
        assert!(split_lines("").is_empty());
        assert_eq!(split_lines("\n"), [""]);
    }

    #[test]
    fn recognises_placeholders_only_in_their_exact_shape() {
        assert_eq!(classify(1, "SYSTEM: There is no online log for this job instance.\n"), PageText::NoLog);
        assert_eq!(classify(1, "SYSTEM: There is no online log for this job instance.\r\n"), PageText::NoLog);
        assert!(matches!(classify(1, PREPARING), PageText::Transient(_)));
        assert!(matches!(
            classify(1, "oms-server execution exception, caused by NullPointerException: "),
            PageText::Transient(_)
        ));
        // With a separator it is a real (if odd) line, not a StringPage.simple placeholder.
        assert_eq!(
            classify(1, "log file is being prepared, please try again later.\n"),
            PageText::Lines(vec![PREPARING])
        );
        assert_eq!(classify(0, ""), PageText::Lines(vec![]));
    }

    #[test]
    fn reads_record_times() {
        let a = record_time("2024-06-01 16:00:05.123 [10.0.0.21:27777] INFO x").unwrap();
        let b = record_time("2024-06-02 16:00:05.124 [10.0.0.21:27777] INFO y").unwrap();
        assert_eq!(b - a, 86_400_001);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(record_time("\tat java.lang.Thread.run(Thread.java:748)"), None);
        assert_eq!(record_time(""), None);
        assert_eq!(record_time("2024-06-01 16:00:05.123 INFO no worker"), None);
    }
}
