//! HTTP-date parsing and formatting (RFC 9110 §5.6.7).
//!
//! [`parse_http_date`] accepts the three forms RFC 9110 §5.6.7 requires recipients to accept:
//!
//! - IMF-fixdate, the preferred form: `Sun, 06 Nov 1994 08:49:37 GMT`;
//! - the obsolete RFC 850 form: `Sunday, 06-Nov-94 08:49:37 GMT`;
//! - the obsolete ANSI C `asctime()` form: `Sun Nov  6 08:49:37 1994`.
//!
//! [`format_http_date`] always produces IMF-fixdate (RFC 9110 §5.6.7: senders MUST generate
//! IMF-fixdate).
//!
//! Decisions where the RFC leaves room, all tested below:
//!
//! - **Case.** Day names, month names and `GMT` are matched ASCII case-insensitively (the
//!   grammar is case-sensitive; being liberal here cannot change the meaning of a date).
//! - **Whitespace.** Leading and trailing optional whitespace (SP / HTAB) is ignored; inside
//!   the date the separators are exactly as in the grammar, except that the day of the month
//!   may have one or two digits in every form (and, in asctime, a padding space).
//! - **Weekday.** The day name must be one of the seven names, in the form's spelling (short
//!   for IMF-fixdate and asctime, long for RFC 850). A *wrong* weekday for the date (e.g.
//!   `Mon, 06 Nov 1994`) is tolerated: the day name is redundant and senders get it wrong;
//!   the calendar fields decide.
//! - **Calendar.** The day must exist in that month (leap years per the Gregorian rules:
//!   `29 Feb 2000` is valid, `29 Feb 1900` is not); hour 00–23, minute 00–59.
//! - **Leap seconds.** Second `60` is accepted (RFC 5322 allows it) and read as `59` of the
//!   same minute, so a date never moves into the next day or year.
//! - **Two-digit years** (RFC 850 form). RFC 9110 §5.6.7 says a year that appears to be more
//!   than 50 years in the future is the most recent past year with the same last two digits.
//!   [`parse_http_date`] has no clock, so it uses the fixed window 1970–2069 (`70`–`99` →
//!   19xx, `00`–`69` → 20xx). [`parse_http_date_relative`] applies the RFC rule relative to a
//!   given `now`, at year granularity. A four-digit year is also accepted in the RFC 850 form.
//! - **Range.** Dates before the Unix epoch (1970-01-01T00:00:00Z) are rejected (`None`):
//!   [`Timestamp`] cannot represent them, and for every use in caching (Date, Expires,
//!   Last-Modified) such a date is as good as invalid — RFC 9111 §5.3 already treats an
//!   invalid `Expires` as "in the past". The latest date is 9999-12-31T23:59:59Z
//!   ([`MAX_HTTP_DATE`]); [`format_http_date`] saturates there.
//! - Anything else (trailing junk, a missing `GMT`, other zones, numeric months) is `None`.

use alloc::string::String;
use core::fmt::Write as _;

use crate::time::Timestamp;

/// The latest instant an HTTP-date can express: `Fri, 31 Dec 9999 23:59:59 GMT`.
pub const MAX_HTTP_DATE: Timestamp = Timestamp::from_secs(MAX_SECS);

/// Seconds from the epoch to 9999-12-31T23:59:59Z.
const MAX_SECS: u64 = 253_402_300_799;

const SHORT_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses an HTTP-date in any of the three forms of RFC 9110 §5.6.7, with two-digit years
/// read in the fixed window 1970–2069. Returns `None` for anything that is not a valid date
/// at or after the Unix epoch (see the module documentation for the exact rules).
pub fn parse_http_date(value: &[u8]) -> Option<Timestamp> {
    // The fixed window 1970..=2069 is the RFC rule applied in 2019.
    parse(value, 2019)
}

/// Parses an HTTP-date like [`parse_http_date`], but reads a two-digit RFC 850 year as
/// RFC 9110 §5.6.7 says: relative to `now`, a year more than 50 years in the future is the
/// most recent past year with the same last two digits (compared at year granularity).
pub fn parse_http_date_relative(value: &[u8], now: Timestamp) -> Option<Timestamp> {
    let days = now.as_secs() / 86_400;
    let (year, _, _) = civil_from_days(days);
    parse(value, year)
}

/// Formats `t` as an IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
/// Milliseconds are dropped (rounded down); instants after [`MAX_HTTP_DATE`] are written
/// as [`MAX_HTTP_DATE`].
pub fn format_http_date(t: Timestamp) -> String {
    let secs = t.as_secs().min(MAX_SECS);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 in SHORT_DAYS).
    let weekday = SHORT_DAYS
        .get(usize::try_from((days + 3) % 7).unwrap_or(0))
        .copied()
        .unwrap_or("Mon");
    let month_name = month
        .checked_sub(1)
        .and_then(|m| MONTHS.get(usize::try_from(m).ok()?))
        .copied()
        .unwrap_or("Jan");
    let mut out = String::with_capacity(29);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    out
}

/// Parses `value`; a two-digit year is read as the latest year with those digits that is at
/// most 50 years after `current_year`.
fn parse(value: &[u8], current_year: u64) -> Option<Timestamp> {
    let mut c = Cursor::new(crate::headers::trim_ows(value));
    let day_name = c.alpha();
    let date = if c.eat(b',') {
        if is_name(day_name, &SHORT_DAYS) {
            imf_fixdate(&mut c)?
        } else if is_name(day_name, &LONG_DAYS) {
            rfc850_date(&mut c, current_year)?
        } else {
            return None;
        }
    } else if is_name(day_name, &SHORT_DAYS) {
        asctime_date(&mut c)?
    } else {
        return None;
    };
    if !c.at_end() {
        return None;
    }
    date.to_timestamp()
}

/// `IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT`, after the comma;
/// `date1 = day SP month SP year`.
fn imf_fixdate(c: &mut Cursor<'_>) -> Option<Date> {
    c.expect(b' ')?;
    let day = c.number(1, 2)?;
    c.expect(b' ')?;
    let month = c.month()?;
    c.expect(b' ')?;
    let year = c.number(4, 4)?;
    c.expect(b' ')?;
    let (hour, minute, second) = c.time_of_day()?;
    c.expect(b' ')?;
    c.gmt()?;
    Some(Date {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// `rfc850-date = day-name-l "," SP date2 SP time-of-day SP GMT`, after the comma;
/// `date2 = day "-" month "-" 2DIGIT` (a four-digit year is tolerated).
fn rfc850_date(c: &mut Cursor<'_>, current_year: u64) -> Option<Date> {
    c.expect(b' ')?;
    let day = c.number(1, 2)?;
    c.expect(b'-')?;
    let month = c.month()?;
    c.expect(b'-')?;
    let start = c.pos;
    let raw_year = c.number(2, 4)?;
    let year = match c.pos - start {
        2 => two_digit_year(raw_year, current_year)?,
        4 => raw_year,
        _ => return None,
    };
    c.expect(b' ')?;
    let (hour, minute, second) = c.time_of_day()?;
    c.expect(b' ')?;
    c.gmt()?;
    Some(Date {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// `asctime-date = day-name SP date3 SP time-of-day SP year`, after the day name;
/// `date3 = month SP ( 2DIGIT / ( SP DIGIT ) )`.
fn asctime_date(c: &mut Cursor<'_>) -> Option<Date> {
    c.expect(b' ')?;
    let month = c.month()?;
    c.expect(b' ')?;
    c.eat(b' ');
    let day = c.number(1, 2)?;
    c.expect(b' ')?;
    let (hour, minute, second) = c.time_of_day()?;
    c.expect(b' ')?;
    let year = c.number(4, 4)?;
    Some(Date {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// RFC 9110 §5.6.7: the latest year ending in `yy` that is at most 50 years after
/// `current_year`.
fn two_digit_year(yy: u64, current_year: u64) -> Option<u64> {
    let horizon = current_year.checked_add(50)?;
    let back = horizon.checked_sub(yy)? % 100;
    horizon.checked_sub(back)
}

fn is_name(word: &[u8], names: &[&str]) -> bool {
    names
        .iter()
        .any(|n| n.as_bytes().eq_ignore_ascii_case(word))
}

/// Broken-down calendar fields, not yet validated.
struct Date {
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
}

impl Date {
    /// Validates the fields and converts them to a timestamp; `None` if invalid or before
    /// the epoch.
    fn to_timestamp(&self) -> Option<Timestamp> {
        if !(1970..=9999).contains(&self.year)
            || !(1..=12).contains(&self.month)
            || self.day < 1
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
        {
            return None;
        }
        // A leap second stays inside its minute (see the module documentation).
        let second = self.second.min(59);
        let days = days_from_civil(self.year, self.month, self.day)?;
        let secs = days
            .checked_mul(86_400)?
            .checked_add(self.hour * 3600 + self.minute * 60 + second)?;
        Some(Timestamp::from_secs(secs))
    }
}

fn is_leap_year(year: u64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian; H. Hinnant's algorithm).
/// `None` before the epoch.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y % 400;
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day.checked_sub(1)?;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// The (year, month, day) of the day `days` after 1970-01-01 (inverse of
/// [`days_from_civil`]).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days.saturating_add(719_468);
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era
        .saturating_mul(400)
        .saturating_add(yoe)
        .saturating_add(u64::from(month <= 2));
    (year, month, day)
}

/// A byte cursor: every read is bounds-checked and fails with `None`.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a [u8]) -> Self {
        Cursor { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Consumes `b` if it is next; returns whether it did.
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        self.eat(b).then_some(())
    }

    /// Consumes a run of ASCII letters (possibly empty).
    fn alpha(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or_default()
    }

    /// Consumes between `min` and `max` ASCII digits (greedily) as a number.
    fn number(&mut self, min: usize, max: usize) -> Option<u64> {
        let mut n: u64 = 0;
        let mut count = 0;
        while count < max {
            let Some(b) = self.peek().filter(u8::is_ascii_digit) else {
                break;
            };
            n = n * 10 + u64::from(b - b'0');
            self.pos += 1;
            count += 1;
        }
        // More digits than allowed is not a shorter number followed by junk.
        if count < min || self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(n)
    }

    /// A three-letter month name, as 1..=12.
    fn month(&mut self) -> Option<u64> {
        let word = self.alpha();
        let index = MONTHS
            .iter()
            .position(|m| m.as_bytes().eq_ignore_ascii_case(word))?;
        u64::try_from(index).ok().map(|i| i + 1)
    }

    /// `time-of-day = hour ":" minute ":" second`, each exactly two digits.
    fn time_of_day(&mut self) -> Option<(u64, u64, u64)> {
        let hour = self.number(2, 2)?;
        self.expect(b':')?;
        let minute = self.number(2, 2)?;
        self.expect(b':')?;
        let second = self.number(2, 2)?;
        Some((hour, minute, second))
    }

    /// The literal `GMT` (case-insensitive).
    fn gmt(&mut self) -> Option<()> {
        self.alpha().eq_ignore_ascii_case(b"GMT").then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// 1994-11-06T08:49:37Z, the RFC's example.
    const EXAMPLE: Timestamp = Timestamp::from_secs(784_111_777);

    fn p(s: &str) -> Option<Timestamp> {
        parse_http_date(s.as_bytes())
    }

    #[test]
    fn the_three_forms_of_the_rfc_example() {
        assert_eq!(p("Sun, 06 Nov 1994 08:49:37 GMT"), Some(EXAMPLE));
        assert_eq!(p("Sunday, 06-Nov-94 08:49:37 GMT"), Some(EXAMPLE));
        assert_eq!(p("Sun Nov  6 08:49:37 1994"), Some(EXAMPLE));
    }

    #[test]
    fn tolerated_variations() {
        // Case, surrounding whitespace, one-digit days, a two-digit asctime day, a
        // four-digit RFC 850 year.
        for s in [
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            " \tSun, 06 Nov 1994 08:49:37 GMT\t ",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sunday, 6-Nov-94 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov 06 08:49:37 1994",
            "Sun Nov 6 08:49:37 1994",
        ] {
            assert_eq!(p(s), Some(EXAMPLE), "{s:?}");
        }
    }

    #[test]
    fn wrong_weekday_is_tolerated_but_unknown_names_are_not() {
        assert_eq!(p("Mon, 06 Nov 1994 08:49:37 GMT"), Some(EXAMPLE));
        assert_eq!(p("Monday, 06-Nov-94 08:49:37 GMT"), Some(EXAMPLE));
        assert_eq!(p("Fri Nov  6 08:49:37 1994"), Some(EXAMPLE));
        for s in [
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06 Nov 1994 08:49:37 GMT", // long name in IMF-fixdate
            "Sun, 06-Nov-94 08:49:37 GMT",      // short name in RFC 850
            "Sunday Nov  6 08:49:37 1994",      // long name in asctime
            ", 06 Nov 1994 08:49:37 GMT",
            "06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(p(s), None, "{s:?}");
        }
    }

    #[test]
    fn junk_is_rejected() {
        for s in [
            "",
            " ",
            "0",
            "-1",
            "Sun",
            "Sun,",
            "Sun, 06 Nov 1994",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 06 Nov 1994 08:49:37 GMT junk",
            "Sun, 06 Nov 1994 08:49:37 GMTx",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:7 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Nov 01994 08:49:37 GMT",
            "Sun, 006 Nov 1994 08:49:37 GMT",
            "Sun, 06 11 1994 08:49:37 GMT",
            "Sun, 06 November 1994 08:49:37 GMT",
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37  GMT",
            "Sun, 06 Nov 1994 08-49-37 GMT",
            "Sunday, 06-Nov-994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov  6 08:49:37 1994 GMT",
            "Sun Nov   6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 GMT\0",
            "Sun, ０6 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(p(s), None, "{s:?}");
        }
        assert_eq!(parse_http_date(b"\xff\xfe"), None);
    }

    #[test]
    fn calendar_validation() {
        assert_eq!(p("Thu, 01 Jan 1970 00:00:00 GMT"), Some(Timestamp::EPOCH));
        assert_eq!(p("Wed, 31 Dec 1969 23:59:59 GMT"), None, "before the epoch");
        assert_eq!(p("Mon, 01 Jan 0001 00:00:00 GMT"), None);
        assert_eq!(p("Sun, 31 Jun 2024 00:00:00 GMT"), None);
        assert_eq!(p("Sun, 30 Feb 2024 00:00:00 GMT"), None);
        assert_eq!(p("Sun, 00 Feb 2024 00:00:00 GMT"), None);
        assert_eq!(p("Sun, 32 Jan 2024 00:00:00 GMT"), None);
        assert_eq!(p("Sun, 01 Jan 2024 24:00:00 GMT"), None);
        assert_eq!(p("Sun, 01 Jan 2024 23:60:00 GMT"), None);
        assert_eq!(p("Sun, 01 Jan 2024 23:59:61 GMT"), None);
        assert_eq!(p("Sun, 01 Jan 2024 99:99:99 GMT"), None);
        // A leap second stays in its minute.
        assert_eq!(
            p("Sat, 31 Dec 2016 23:59:60 GMT"),
            p("Sat, 31 Dec 2016 23:59:59 GMT")
        );
        assert!(p("Sat, 31 Dec 2016 23:59:59 GMT").is_some());
    }

    #[test]
    fn leap_years() {
        assert!(p("Tue, 29 Feb 2000 12:00:00 GMT").is_some(), "div by 400");
        assert!(p("Thu, 29 Feb 2024 12:00:00 GMT").is_some(), "div by 4");
        assert!(p("Mon, 29 Feb 2100 12:00:00 GMT").is_none(), "div by 100");
        assert!(p("Sat, 29 Feb 2023 12:00:00 GMT").is_none());
        assert!(p("Sunday, 29-Feb-04 00:00:00 GMT").is_some());
        assert!(p("Sunday, 29-Feb-03 00:00:00 GMT").is_none());
        assert!(p("Thu Feb 29 12:00:00 2024").is_some());
        assert_eq!(
            p("Fri, 01 Mar 2024 00:00:00 GMT").map(|t| t.as_secs()),
            p("Thu, 29 Feb 2024 00:00:00 GMT").map(|t| t.as_secs() + 86_400)
        );
        assert_eq!(
            format_http_date(p("Thu, 29 Feb 2024 01:02:03 GMT").unwrap_or_default()),
            "Thu, 29 Feb 2024 01:02:03 GMT"
        );
    }

    #[test]
    fn two_digit_years() {
        let year = |s: &str| p(s).map(format_http_date);
        assert_eq!(
            year("Thursday, 01-Jan-70 00:00:00 GMT").as_deref(),
            Some("Thu, 01 Jan 1970 00:00:00 GMT")
        );
        assert_eq!(
            year("Friday, 31-Dec-99 00:00:00 GMT").as_deref(),
            Some("Fri, 31 Dec 1999 00:00:00 GMT")
        );
        assert_eq!(
            year("Saturday, 01-Jan-00 00:00:00 GMT").as_deref(),
            Some("Sat, 01 Jan 2000 00:00:00 GMT")
        );
        assert_eq!(
            year("Sunday, 31-Dec-69 00:00:00 GMT").as_deref(),
            Some("Tue, 31 Dec 2069 00:00:00 GMT")
        );

        // The RFC rule, relative to a clock in 2025: 75 is at most 50 years ahead (2075),
        // 76 would be 51 years ahead, so it is 1976.
        let now = p("Wed, 01 Jan 2025 00:00:00 GMT").unwrap_or_default();
        let rel = |s: &str| parse_http_date_relative(s.as_bytes(), now).map(format_http_date);
        assert_eq!(
            rel("Monday, 01-Jan-75 00:00:00 GMT").as_deref(),
            Some("Tue, 01 Jan 2075 00:00:00 GMT")
        );
        assert_eq!(
            rel("Monday, 01-Jan-76 00:00:00 GMT").as_deref(),
            Some("Thu, 01 Jan 1976 00:00:00 GMT")
        );
        assert_eq!(
            rel("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(format_http_date(EXAMPLE))
        );
        // In 2100, "05" is 2105 and "94" is 2094; in 1970, "20" is 2020 and "21" is 1921.
        let now = p("Fri, 01 Jan 2100 00:00:00 GMT").unwrap_or_default();
        assert!(
            parse_http_date_relative(b"Monday, 01-Jan-05 00:00:00 GMT", now)
                .is_some_and(|t| format_http_date(t).contains("2105"))
        );
        assert!(
            parse_http_date_relative(b"Monday, 01-Jan-94 00:00:00 GMT", now)
                .is_some_and(|t| format_http_date(t).contains("2094"))
        );
        assert!(
            parse_http_date_relative(b"Monday, 01-Jan-20 00:00:00 GMT", Timestamp::EPOCH)
                .is_some_and(|t| format_http_date(t).contains("2020"))
        );
        assert_eq!(
            parse_http_date_relative(b"Monday, 01-Jan-21 00:00:00 GMT", Timestamp::EPOCH),
            None,
            "1921, before the epoch"
        );
        // A clock beyond year 9999 never panics; the year is out of range.
        assert_eq!(
            parse_http_date_relative(b"Monday, 01-Jan-21 00:00:00 GMT", Timestamp::MAX),
            None
        );
        // Four-digit years are not reinterpreted.
        assert_eq!(
            parse_http_date_relative(b"Sunday, 06-Nov-1994 08:49:37 GMT", now),
            Some(EXAMPLE)
        );
    }

    #[test]
    fn far_future_years() {
        let max = p("Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(max, Some(MAX_HTTP_DATE));
        assert_eq!(
            format_http_date(MAX_HTTP_DATE),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(
            format_http_date(Timestamp::MAX),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(
            format_http_date(MAX_HTTP_DATE.plus_secs(1)),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(
            p("Fri, 31 Dec 9999 23:59:60 GMT"),
            Some(MAX_HTTP_DATE),
            "a leap second cannot overflow the range"
        );
        assert_eq!(p("Sat, 01 Jan 10000 00:00:00 GMT"), None);
        assert_eq!(
            p("Thu, 01 Jan 2088 00:00:00 GMT")
                .map(format_http_date)
                .as_deref(),
            Some("Thu, 01 Jan 2088 00:00:00 GMT")
        );
        assert_eq!(
            p("Tue, 19 Jan 2038 03:14:08 GMT"),
            Some(Timestamp::from_secs(1 << 31))
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(format_http_date(EXAMPLE), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            format_http_date(EXAMPLE.plus_millis(999)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            format_http_date(Timestamp::EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn round_trip_across_the_range() {
        // About every 11.6 days (plus odd seconds) from the epoch to year 9999: formatting
        // then parsing gives the instant back, and the weekday written is right.
        let mut secs: u64 = 0;
        let mut checked = 0;
        while secs <= MAX_SECS {
            let t = Timestamp::from_secs(secs);
            let s = format_http_date(t);
            assert_eq!(s.len(), 29, "{s}");
            assert_eq!(parse_http_date(s.as_bytes()), Some(t), "{s}");
            let day = usize::try_from((secs / 86_400 + 3) % 7).unwrap_or(0);
            assert!(s.starts_with(SHORT_DAYS[day]), "{s}");
            secs += 999_983 + (secs % 7919);
            checked += 1;
        }
        assert!(checked > 200_000);
        let near_max: Vec<u64> = (0..5).map(|i| MAX_SECS - i).collect();
        for s in near_max {
            let t = Timestamp::from_secs(s);
            assert_eq!(parse_http_date(format_http_date(t).as_bytes()), Some(t));
        }
    }

    #[test]
    fn civil_conversions_agree() {
        for days in (0..3_000_000u64).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days));
        }
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(1969, 12, 31), None);
    }
}
