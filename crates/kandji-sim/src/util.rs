//! Small helpers: deterministic hashing, id and timestamp formatting, base64.

use time::OffsetDateTime;

/// SplitMix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a sequence of words.
pub fn h(parts: &[u64]) -> u64 {
    let mut acc = 0x243F_6A88_85A3_08D3u64;
    for p in parts {
        acc = mix(acc ^ p.wrapping_mul(0x1000_0000_01B3));
    }
    acc
}

/// Hash of words plus a string tag.
pub fn hs(tag: &str, parts: &[u64]) -> u64 {
    let mut t = 0xcbf2_9ce4_8422_2325u64;
    for b in tag.bytes() {
        t ^= u64::from(b);
        t = t.wrapping_mul(0x100_0000_01b3);
    }
    let mut acc = mix(t);
    for p in parts {
        acc = mix(acc ^ p.wrapping_mul(0x1000_0000_01B3));
    }
    acc
}

/// A value in `0..n` from a hash.
pub fn pick(hv: u64, n: usize) -> usize {
    if n == 0 { 0 } else { (hv % n as u64) as usize }
}

/// A probability check: true with probability `p` for a uniformly distributed hash.
pub fn chance(hv: u64, p: f64) -> bool {
    ((hv >> 11) as f64 / (1u64 << 53) as f64) < p
}

/// A UUID (version 4 layout) from a 128-bit value.
pub fn uuid_of(v: u128) -> String {
    let mut b = v.to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).hyphenated().to_string()
}

pub fn uuid_u128(tag: &str, parts: &[u64]) -> u128 {
    let a = hs(tag, parts);
    let b = mix(a ^ 0x5555_5555_5555_5555);
    (u128::from(a) << 64) | u128::from(b)
}

/// Parse a UUID string into the u128 used internally (normalised to the v4 layout).
pub fn parse_uuid(s: &str) -> Option<u128> {
    uuid::Uuid::parse_str(s).ok().map(|u| u.as_u128())
}

/// The u128 of a UUID after applying the v4 layout bits (what `uuid_of` prints).
pub fn canon_uuid(v: u128) -> u128 {
    let mut b = v.to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    u128::from_be_bytes(b)
}

/// A ULID string for a timestamp (µs) and 80 random bits from a hash.
pub fn ulid_of(ts_us: i64, rnd: u64) -> String {
    let ms = (ts_us.max(0) / 1000) as u64;
    let r = (u128::from(rnd) << 16) | u128::from(mix(rnd) & 0xffff);
    ulid::Ulid::from_parts(ms, r).to_string()
}

pub fn to_odt(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

struct Parts {
    y: i32,
    mo: u8,
    d: u8,
    h: u8,
    mi: u8,
    s: u8,
    us: u32,
}

fn parts(us: i64) -> Parts {
    let t = to_odt(us);
    Parts {
        y: t.year(),
        mo: u8::from(t.month()),
        d: t.day(),
        h: t.hour(),
        mi: t.minute(),
        s: t.second(),
        us: t.microsecond(),
    }
}

/// `2024-01-26 16:15:36.087016+00:00`
pub fn ts_space(us: i64) -> String {
    let p = parts(us);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00:00",
        p.y, p.mo, p.d, p.h, p.mi, p.s, p.us
    )
}

/// `2024-07-23T14:11:37.150080Z`
pub fn ts_z(us: i64) -> String {
    let p = parts(us);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        p.y, p.mo, p.d, p.h, p.mi, p.s, p.us
    )
}

/// `2021-05-11T19:45:19Z`: DRF's form for a time without microseconds.
pub fn ts_z_s(us: i64) -> String {
    let p = parts(us);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        p.y, p.mo, p.d, p.h, p.mi, p.s
    )
}

/// `2026-07-01T19:02:37.320664+00:00`
pub fn ts_plus(us: i64) -> String {
    let p = parts(us);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        p.y, p.mo, p.d, p.h, p.mi, p.s, p.us
    )
}

/// `2024-05-13 20:09:23 +0000`
pub fn ts_profile(us: i64) -> String {
    let p = parts(us);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000",
        p.y, p.mo, p.d, p.h, p.mi, p.s
    )
}

/// `2023-04-21T17:23:13.883134` (naive)
pub fn ts_naive_t(us: i64) -> String {
    let p = parts(us);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        p.y, p.mo, p.d, p.h, p.mi, p.s, p.us
    )
}

/// `2023-04-21 17:23:15.071621` (naive, space)
pub fn ts_naive_space(us: i64) -> String {
    let p = parts(us);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        p.y, p.mo, p.d, p.h, p.mi, p.s, p.us
    )
}

/// `2021-05-11 19:45:19+00:00` (no fraction)
pub fn ts_space_s(us: i64) -> String {
    let p = parts(us);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+00:00",
        p.y, p.mo, p.d, p.h, p.mi, p.s
    )
}

/// `Feb 27, 2024 at 7:34:21 AM`
pub fn ts_human(us: i64) -> String {
    let t = to_odt(us);
    const M: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (h12, ampm) = match t.hour() {
        0 => (12, "AM"),
        h @ 1..=11 => (h, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    format!(
        "{} {}, {} at {}:{:02}:{:02} {}",
        M[usize::from(u8::from(t.month()) - 1)],
        t.day(),
        t.year(),
        h12,
        t.minute(),
        t.second(),
        ampm
    )
}

/// `YYYY-MM-DD`
pub fn ts_date(us: i64) -> String {
    let p = parts(us);
    format!("{:04}-{:02}-{:02}", p.y, p.mo, p.d)
}

/// Parse the many timestamp shapes (and `YYYY-MM-DD`) into µs since the epoch (UTC assumed).
pub fn parse_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    // Every form below is ASCII; the byte offsets that follow rely on it.
    if s.is_empty() || !s.is_ascii() {
        return None;
    }
    let mut t = s.replacen(' ', "T", 1);
    if t.len() == 10 {
        t.push_str("T00:00:00Z");
    }
    if let Some(stripped) = t
        .strip_suffix(" +0000")
        .or_else(|| t.strip_suffix("T+0000"))
    {
        t = format!("{stripped}Z");
    }
    if t.ends_with("+0000") {
        t.truncate(t.len() - 5);
        t.push('Z');
    }
    let has_zone = t.ends_with('Z') || {
        let tail = &t[t.len().saturating_sub(6)..];
        tail.starts_with('+')
            || (tail.starts_with('-') && tail.len() == 6 && tail[1..].contains(':'))
    };
    if !has_zone {
        t.push('Z');
    }
    let odt = OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()?;
    Some((odt.unix_timestamp_nanos() / 1000) as i64)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn b64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        if c == b'=' {
            break;
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

/// Percent-encode a query value.
pub fn qenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_roundtrip() {
        let us = 1_714_000_000_123_456;
        for f in [ts_space, ts_z, ts_plus, ts_naive_t, ts_naive_space] {
            assert_eq!(parse_ts(&f(us)), Some(us), "{}", f(us));
        }
        assert_eq!(parse_ts(&ts_profile(us)), Some(us - 123_456));
        assert!(parse_ts("2024-04-25").is_some());
    }

    #[test]
    fn base64_roundtrip() {
        for s in ["", "a", "ab", "abc", "abcd|12|x"] {
            assert_eq!(unb64(&b64(s.as_bytes())).unwrap(), s.as_bytes());
        }
    }
}
