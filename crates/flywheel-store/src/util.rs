//! Small helpers: time arithmetic, hashing, key encoding.

use sha2::{Digest, Sha256};

use crate::{Error, Result};

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Unpadded base64url (RFC 4648 §5).
pub(crate) fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day) of a day number since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` of a day number since 1970-01-01.
pub fn format_day(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds.
pub fn format_time(t: i64) -> String {
    let s = t.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        format_day(t.div_euclid(86_400)),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Parses a strict `YYYY-MM-DD` into a day number since 1970-01-01.
pub fn parse_day(s: &str) -> Result<i64> {
    let bad = || Error::Invalid(format!("date {s:?} (expected YYYY-MM-DD, e.g. 2026-01-31)"));
    let b = s.as_bytes();
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return Err(bad());
    }
    let y: i64 = s[0..4].parse().map_err(|_| bad())?;
    let m: i64 = s[5..7].parse().map_err(|_| bad())?;
    let d: i64 = s[8..10].parse().map_err(|_| bad())?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if d < 1 || d > days_in_month {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, d))
}

/// The `[from, to)` Unix-second range of the inclusive UTC days `from..=to` (`YYYY-MM-DD`).
pub fn day_range(from: Option<&str>, to: Option<&str>) -> Result<(Option<i64>, Option<i64>)> {
    let from = from.map(parse_day).transpose()?;
    let to = to.map(parse_day).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(Error::Invalid(format!(
                "date range: {} is after {}",
                format_day(f),
                format_day(t)
            )));
        }
    }
    Ok((from.map(|d| d * 86_400), to.map(|d| (d + 1) * 86_400)))
}

/// Start (inclusive) and end (exclusive) of the UTC calendar month containing `now`, Unix seconds.
pub fn month_bounds(now: i64) -> (i64, i64) {
    let (y, m, _) = civil_from_days(now.div_euclid(86_400));
    let start = days_from_civil(y, m, 1) * 86_400;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start, days_from_civil(ny, nm, 1) * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(format_day(days_from_civil(2024, 2, 29)), "2024-02-29");
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        let (start, end) = month_bounds(days_from_civil(2026, 11, 29) * 86_400 + 6_224);
        assert_eq!(start, days_from_civil(2026, 11, 1) * 86_400);
        assert_eq!(end, days_from_civil(2026, 12, 1) * 86_400);
        let (s, e) = month_bounds(days_from_civil(2026, 12, 31) * 86_400 + 5);
        assert_eq!(
            (s, e),
            (
                days_from_civil(2026, 12, 1) * 86_400,
                days_from_civil(2027, 1, 1) * 86_400
            )
        );
    }

    #[test]
    fn days_and_ranges() {
        assert_eq!(parse_day("1970-01-01").unwrap(), 0);
        assert_eq!(parse_day("2024-02-29").unwrap(), 19_782);
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "yesterday",
            "2024-00-10",
            "+024-01-01",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
        assert_eq!(
            day_range(Some("1970-01-01"), Some("1970-01-02")).unwrap(),
            (Some(0), Some(2 * 86_400))
        );
        assert!(day_range(Some("2024-01-02"), Some("2024-01-01")).is_err());
    }

    #[test]
    fn times_format_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(86_400 + 3661), "1970-01-02 01:01:01");
        assert_eq!(format_time(-1), "1969-12-31 23:59:59");
        assert_eq!(
            format_time(days_from_civil(2024, 2, 29) * 86_400 + 86_399),
            "2024-02-29 23:59:59"
        );
    }

    #[test]
    fn digests_are_fixed_values() {
        // SHA-256 of "abc" (FIPS 180-2, appendix B.1) in lower-case hex: what the registry stores
        // for an artifact and what identifies API keys, on every replica alike.
        assert_eq!(
            to_hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn base64url_matches_rfc4648() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
