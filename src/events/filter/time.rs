//! Dates and times as Postgres writes them in `to_jsonb` and reads them
//! back: microseconds (days for dates) since 2000-01-01, like Postgres's own
//! representation, with infinities at the ends of i64.

/// Microseconds per day.
const DAY_US: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01 (Postgres's epoch).
const PG_EPOCH_DAYS: i64 = 10_957;

/// Days since 2000-01-01 of a proleptic Gregorian date (astronomical year:
/// 1 BC is year 0).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 - PG_EPOCH_DAYS
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + PG_EPOCH_DAYS + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// What kind of date/time text is expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimeKind {
    /// `timestamptz`: an offset is required.
    Timestamptz,
    /// `timestamp`: no offset allowed.
    Timestamp,
    /// `date`.
    Date,
}

/// A parsed date/time, before range checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Parsed {
    /// Microseconds (days for dates) since 2000-01-01, UTC for timestamptz.
    pub(super) value: i64,
    /// Year as written (astronomical: 1 BC = 0), before the offset.
    pub(super) year: i64,
    /// Offset in seconds east of UTC.
    pub(super) offset: i64,
    /// Fractional-second digits given.
    pub(super) frac_digits: usize,
}

/// Parses ISO 8601 as Postgres writes and reads it:
/// `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]][Z|±HH[:MM[:SS]]|±HHMM][ BC]`,
/// years of four or more digits; `infinity`/`-infinity`. Time and offset
/// follow `kind` (a date has neither).
pub(super) fn parse_time(text: &str, kind: TimeKind) -> Option<Parsed> {
    let special = |value| Parsed {
        value,
        year: 0,
        offset: 0,
        frac_digits: 0,
    };
    match text {
        "infinity" | "+infinity" => return Some(special(i64::MAX)),
        "-infinity" => return Some(special(i64::MIN)),
        _ => {}
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    };
    let mut s = Scanner(text.as_bytes());
    let year = s.digits(4, 9)?;
    s.expect(b'-')?;
    let month = s.digits(2, 2)? as u32;
    s.expect(b'-')?;
    let day = s.digits(2, 2)? as u32;
    if year == 0 || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let year = if bc { 1 - year } else { year };
    if day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if kind == TimeKind::Date {
        return s.0.is_empty().then_some(Parsed {
            value: days,
            year,
            offset: 0,
            frac_digits: 0,
        });
    }
    if !matches!(s.next(), Some(b'T' | b' ')) {
        return None;
    }
    let hour = s.digits(2, 2)?;
    s.expect(b':')?;
    let minute = s.digits(2, 2)?;
    let mut second = 0;
    let mut micros = 0;
    let mut frac_digits = 0;
    if s.peek() == Some(b':') {
        s.next();
        second = s.digits(2, 2)?;
        if s.peek() == Some(b'.') {
            s.next();
            let start = s.0;
            while s.peek().is_some_and(|b| b.is_ascii_digit()) {
                s.next();
            }
            frac_digits = start.len() - s.0.len();
            if frac_digits == 0 || frac_digits > 6 {
                return None;
            }
            let frac = std::str::from_utf8(&start[..frac_digits]).ok()?;
            micros = frac.parse::<i64>().ok()? * 10_i64.pow((6 - frac_digits) as u32);
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset = match (kind, s.peek()) {
        (TimeKind::Timestamptz, Some(b'Z' | b'z')) => {
            s.next();
            0
        }
        (TimeKind::Timestamptz, Some(sign @ (b'+' | b'-'))) => {
            s.next();
            let h = s.digits(2, 2)?;
            let (m, sec) = if s.peek() == Some(b':') {
                s.next();
                let m = s.digits(2, 2)?;
                let sec = if s.peek() == Some(b':') {
                    s.next();
                    s.digits(2, 2)?
                } else {
                    0
                };
                (m, sec)
            } else if s.peek().is_some_and(|b| b.is_ascii_digit()) {
                (s.digits(2, 2)?, 0)
            } else {
                (0, 0)
            };
            if m > 59 || sec > 59 {
                return None;
            }
            let total = h * 3600 + m * 60 + sec;
            if sign == b'-' { -total } else { total }
        }
        (TimeKind::Timestamptz, _) => return None,
        _ => 0,
    };
    if !s.0.is_empty() {
        return None;
    }
    let time = ((hour * 60 + minute) * 60 + second - offset) * 1_000_000 + micros;
    Some(Parsed {
        value: days.checked_mul(DAY_US)?.checked_add(time)?,
        year,
        offset,
        frac_digits,
    })
}

/// Canonical ISO text of a time value (`kind` as parsed), read back by
/// Postgres to the same value: UTC with `+00:00` for timestamptz.
pub(super) fn time_text(value: i64, kind: TimeKind) -> String {
    match value {
        i64::MAX => return "infinity".into(),
        i64::MIN => return "-infinity".into(),
        _ => {}
    }
    if kind == TimeKind::Date {
        let (y, m, d) = civil_from_days(value);
        return format!("{y:04}-{m:02}-{d:02}");
    }
    let days = value.div_euclid(DAY_US);
    let in_day = value.rem_euclid(DAY_US);
    let (y, m, d) = civil_from_days(days);
    let secs = in_day / 1_000_000;
    let text = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        in_day % 1_000_000
    );
    match kind {
        TimeKind::Timestamptz => text + "+00:00",
        _ => text,
    }
}

/// Year (astronomical) of a time value.
pub(super) fn year_of(value: i64, kind: TimeKind) -> i64 {
    let days = match kind {
        TimeKind::Date => value,
        _ => value.div_euclid(DAY_US),
    };
    civil_from_days(days).0
}

/// A tiny byte cursor for [`parse_time`].
struct Scanner<'a>(&'a [u8]);

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn next(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// Between `min` and `max` ASCII digits.
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let n = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if n < min || n > max {
            return None;
        }
        let (digits, rest) = self.0.split_at(n);
        self.0 = rest;
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_to_instants_across_offsets() {
        let tz = |s| parse_time(s, TimeKind::Timestamptz).unwrap().value;
        assert_eq!(
            tz("2026-12-01T20:23:47.123456+00:00"),
            tz("2026-12-01 22:23:47.123456+02")
        );
        assert_eq!(tz("2026-12-01T20:23:47Z"), tz("2026-12-01T15:53:47-04:30"));
        assert_eq!(
            tz("1850-01-01T17:53:28+05:53:28"),
            tz("1850-01-01T12:00:00+00:00")
        );
        assert_eq!(tz("2000-01-01T00:00:00+00:00"), 0);
        assert!(tz("0044-03-15T10:00:00+00:00 BC") < tz("0001-01-01T00:00:00+00:00"));
        assert_eq!(tz("infinity"), i64::MAX);
        for bad in [
            "2026-12-01T20:23:47",
            "2026-02-30T00:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T20:23:47.1234567Z",
            "2026-12-01",
            "yesterday",
        ] {
            assert_eq!(parse_time(bad, TimeKind::Timestamptz), None, "{bad}");
        }
        assert_eq!(
            parse_time("2026-12-01T20:23:47+01:00", TimeKind::Timestamp),
            None
        );
        let d = parse_time("2024-02-29", TimeKind::Date).unwrap().value;
        assert_eq!(time_text(d, TimeKind::Date), "2024-02-29");
        assert_eq!(parse_time("2023-02-29", TimeKind::Date), None);
        let t = tz("2026-12-01T22:23:47.5+02:00");
        assert_eq!(
            time_text(t, TimeKind::Timestamptz),
            "2026-12-01T20:23:47.500000+00:00"
        );
        let before_epoch = parse_time("1969-07-20 20:17:40", TimeKind::Timestamp)
            .unwrap()
            .value;
        assert_eq!(
            time_text(before_epoch, TimeKind::Timestamp),
            "1969-07-20T20:17:40.000000"
        );
        assert_eq!(year_of(before_epoch, TimeKind::Timestamp), 1969);
    }
}
