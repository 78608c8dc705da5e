//! One lenient timestamp parser for every format the Kandji API emits (NOTES §7).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Parse any Kandji timestamp. Naive timestamps are taken as UTC.
///
/// Accepted shapes (with any number of fractional-second digits, 0–9 kept):
/// - `2024-07-23T14:11:37.150080Z`, `2026-07-01T19:02:37.320664+00:00`
/// - `2024-01-26 16:15:36.087016+00:00` (space separator)
/// - `2024-05-13 20:09:23 +0000` (space before a colon-less offset)
/// - `2023-04-21T17:23:13.883134`, `2023-10-13 16:15:00.000000` (naive → UTC)
/// - `2024-07-23T14:11` (no seconds), `2024-07-23` (midnight UTC)
/// - `Feb 27, 2024 at 7:34:21 AM` (human, UTC)
///
/// Returns `None` for `""`, `"1 month ago"` and anything else; never panics.
pub fn parse_timestamp(input: &str) -> Option<OffsetDateTime> {
    let s = input.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let first = s.as_bytes()[0];
    if first.is_ascii_alphabetic() {
        return parse_human(s);
    }
    let mut p = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    let date = p.date()?;
    if p.done() {
        return Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc());
    }
    match p.peek()? {
        b'T' | b't' | b' ' => p.i += 1,
        _ => return None,
    }
    p.skip_spaces();
    let time = p.time()?;
    p.skip_spaces();
    let offset = if p.done() {
        UtcOffset::UTC
    } else {
        p.offset()?
    };
    p.skip_spaces();
    if !p.done() {
        return None;
    }
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }
    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }
    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let b = self.peek()?;
            if !b.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(b - b'0');
            self.i += 1;
        }
        Some(v)
    }
    fn date(&mut self) -> Option<Date> {
        let y = self.digits(4)?;
        self.expect(b'-')?;
        let m = self.digits(2)?;
        self.expect(b'-')?;
        let d = self.digits(2)?;
        let month = Month::try_from(u8::try_from(m).ok()?).ok()?;
        Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?).ok()
    }
    fn time(&mut self) -> Option<Time> {
        let h = self.digits(2)?;
        self.expect(b':')?;
        let mi = self.digits(2)?;
        let mut sec = 0;
        let mut nanos = 0u32;
        if self.peek() == Some(b':') {
            self.i += 1;
            sec = self.digits(2)?;
            if matches!(self.peek(), Some(b'.') | Some(b',')) {
                self.i += 1;
                let mut count = 0;
                while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
                    if count < 9 {
                        nanos = nanos * 10 + u32::from(b - b'0');
                    }
                    count += 1;
                    self.i += 1;
                }
                if count == 0 {
                    return None;
                }
                for _ in count..9 {
                    nanos *= 10;
                }
            }
        }
        let sec = if sec == 60 { 59 } else { sec }; // leap second: clamp
        Time::from_hms_nano(
            u8::try_from(h).ok()?,
            u8::try_from(mi).ok()?,
            u8::try_from(sec).ok()?,
            nanos,
        )
        .ok()
    }
    fn offset(&mut self) -> Option<UtcOffset> {
        let b = self.peek()?;
        if b == b'Z' || b == b'z' {
            self.i += 1;
            return Some(UtcOffset::UTC);
        }
        if self.s[self.i..].eq_ignore_ascii_case(b"UTC")
            || self.s[self.i..].eq_ignore_ascii_case(b"GMT")
        {
            self.i = self.s.len();
            return Some(UtcOffset::UTC);
        }
        let sign: i32 = match b {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.i += 1;
        let h = self.digits(2)?;
        let mut m = 0;
        if self.peek() == Some(b':') {
            self.i += 1;
            m = self.digits(2)?;
        } else if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            m = self.digits(2)?;
        }
        let secs = sign * (i32::try_from(h).ok()? * 3600 + i32::try_from(m).ok()? * 60);
        UtcOffset::from_whole_seconds(secs).ok()
    }
}

/// `Feb 27, 2024 at 7:34:21 AM` (also without `at`, without seconds, full month names).
fn parse_human(s: &str) -> Option<OffsetDateTime> {
    let cleaned = s.replace(',', " ");
    let mut parts: Vec<&str> = cleaned.split_whitespace().collect();
    parts.retain(|p| !p.eq_ignore_ascii_case("at"));
    if parts.len() < 3 {
        return None;
    }
    let month = month_from_name(parts[0])?;
    let day: u8 = parts[1].parse().ok()?;
    let year: i32 = parts[2].parse().ok()?;
    if !(1..=9999).contains(&year) {
        return None;
    }
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = if parts.len() >= 4 {
        let mut hms = parts[3].split(':');
        let mut h: u8 = hms.next()?.parse().ok()?;
        let m: u8 = hms.next().unwrap_or("0").parse().ok()?;
        let sec: u8 = hms.next().unwrap_or("0").parse().ok()?;
        if hms.next().is_some() {
            return None;
        }
        match parts.get(4).map(|p| p.to_ascii_uppercase()) {
            Some(ap) if ap == "AM" => {
                if h == 12 {
                    h = 0;
                } else if h > 12 {
                    return None;
                }
            }
            Some(ap) if ap == "PM" => {
                if h < 12 {
                    h += 12;
                } else if h > 12 {
                    return None;
                }
            }
            Some(ap) if ap == "UTC" || ap == "GMT" => {}
            None => {}
            Some(_) => return None,
        }
        if parts.len() > 6
            || (parts.len() == 6
                && !matches!(parts[5].to_ascii_uppercase().as_str(), "UTC" | "GMT"))
        {
            return None;
        }
        Time::from_hms(h, m, sec).ok()?
    } else {
        Time::MIDNIGHT
    };
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

fn month_from_name(name: &str) -> Option<Month> {
    let n = name.to_ascii_lowercase();
    let key = n.get(..3)?;
    Some(match key {
        "jan" => Month::January,
        "feb" => Month::February,
        "mar" => Month::March,
        "apr" => Month::April,
        "may" => Month::May,
        "jun" => Month::June,
        "jul" => Month::July,
        "aug" => Month::August,
        "sep" => Month::September,
        "oct" => Month::October,
        "nov" => Month::November,
        "dec" => Month::December,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    #[test]
    fn every_documented_format() {
        let cases = [
            (
                "2024-07-23T14:11:37.150080Z",
                datetime!(2024-07-23 14:11:37.150080 UTC),
            ),
            (
                "2026-07-01T19:02:37.320664+00:00",
                datetime!(2026-07-01 19:02:37.320664 UTC),
            ),
            (
                "2024-01-26 16:15:36.087016+00:00",
                datetime!(2024-01-26 16:15:36.087016 UTC),
            ),
            (
                "2024-05-13 20:09:23 +0000",
                datetime!(2024-05-13 20:09:23 UTC),
            ),
            (
                "2023-04-21T17:23:13.883134",
                datetime!(2023-04-21 17:23:13.883134 UTC),
            ),
            (
                "2023-10-13 16:15:00.000000",
                datetime!(2023-10-13 16:15:00 UTC),
            ),
            (
                "2025-09-24T17:15:39.940000",
                datetime!(2025-09-24 17:15:39.94 UTC),
            ),
            ("2024-07-23", datetime!(2024-07-23 00:00 UTC)),
            ("2024-07-23T10:00:00-05:00", datetime!(2024-07-23 15:00 UTC)),
            ("2024-07-23T10:00:00+0530", datetime!(2024-07-23 04:30 UTC)),
            (
                "Feb 27, 2024 at 7:34:21 AM",
                datetime!(2024-02-27 07:34:21 UTC),
            ),
            (
                "Feb 27, 2024 at 12:04:21 PM",
                datetime!(2024-02-27 12:04:21 UTC),
            ),
            (
                "Feb 27, 2024 at 12:04:21 AM",
                datetime!(2024-02-27 00:04:21 UTC),
            ),
            (
                "December 1, 2024 at 7:34 PM",
                datetime!(2024-12-01 19:34 UTC),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(parse_timestamp(s), Some(want), "{s}");
        }
        for s in [
            "",
            "  ",
            "1 month ago",
            "null",
            "2024-13-01",
            "2024-02-30T00:00:00Z",
            "20240101",
            "Feb 30, 2024",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s}");
        }
    }

    fn arb_datetime() -> impl Strategy<Value = OffsetDateTime> {
        (0i64..4_102_444_800, 0u32..1_000_000_000, -86_399i32..86_399).prop_map(
            |(secs, nanos, off)| {
                let off = UtcOffset::from_whole_seconds(off / 60 * 60).unwrap_or(UtcOffset::UTC);
                (OffsetDateTime::from_unix_timestamp(secs).unwrap()
                    + time::Duration::nanoseconds(i64::from(nanos)))
                .to_offset(off)
            },
        )
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = parse_timestamp(&s);
        }

        #[test]
        fn never_panics_on_timestampish(s in "[0-9TZ:+. -]{0,40}") {
            let _ = parse_timestamp(&s);
        }

        #[test]
        fn round_trips(dt in arb_datetime()) {
            let (h, m) = (dt.offset().whole_hours(), dt.offset().minutes_past_hour().abs());
            let sign = if dt.offset().is_negative() { '-' } else { '+' };
            let date = format!("{:04}-{:02}-{:02}", dt.year(), u8::from(dt.month()), dt.day());
            let hms = format!("{:02}:{:02}:{:02}", dt.hour(), dt.minute(), dt.second());
            let frac = format!("{:09}", dt.nanosecond());
            let off_colon = format!("{sign}{:02}:{:02}", h.abs(), m);
            let off_plain = format!("{sign}{:02}{:02}", h.abs(), m);
            for s in [
                format!("{date}T{hms}.{frac}{off_colon}"),
                format!("{date} {hms}.{frac}{off_colon}"),
                format!("{date} {hms}.{frac} {off_plain}"),
            ] {
                prop_assert_eq!(parse_timestamp(&s), Some(dt), "{}", s);
            }
            let utc = dt.to_offset(UtcOffset::UTC);
            let udate = format!("{:04}-{:02}-{:02}", utc.year(), u8::from(utc.month()), utc.day());
            let uhms = format!("{:02}:{:02}:{:02}", utc.hour(), utc.minute(), utc.second());
            let micros = utc.nanosecond() / 1000;
            let trunc = utc.replace_nanosecond(micros * 1000).unwrap();
            for s in [
                format!("{udate}T{uhms}.{micros:06}Z"),
                format!("{udate}T{uhms}.{micros:06}"),
                format!("{udate} {uhms}.{micros:06}"),
            ] {
                prop_assert_eq!(parse_timestamp(&s), Some(trunc), "{}", s);
            }
            let rfc = utc.format(&time::format_description::well_known::Rfc3339).unwrap();
            prop_assert_eq!(parse_timestamp(&rfc), Some(utc));
            // Human form (second precision, UTC).
            let human_fmt = time::macros::format_description!(
                "[month repr:short] [day padding:none], [year] at [hour repr:12 padding:none]:[minute]:[second] [period]"
            );
            let secs = utc.replace_nanosecond(0).unwrap();
            let human = secs.format(&human_fmt).unwrap();
            prop_assert_eq!(parse_timestamp(&human), Some(secs), "{}", human);
        }
    }
}
