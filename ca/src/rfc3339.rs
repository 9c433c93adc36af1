//! Times as RFC 3339 text in UTC to the second (`2023-11-14T22:13:20Z`), the form Kubernetes writes and
//! the one every log line, banner and document of ambientd uses for certificate validity and status times.
//! Times before 1970 (a certificate may say anything) are written too, never refused.

use std::fmt;
use std::time::SystemTime;

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format(t: SystemTime) -> String {
    Rfc3339(t).to_string()
}

/// Displays a time as [`format`] does; for log fields (`not_after = %Rfc3339(t)`) without an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = match self.0.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // Rounded down, as for times after 1970: half a second before is 23:59:59.
            Err(e) => {
                let before = e.duration();
                i64::try_from(before.as_secs())
                    .map_or(i64::MIN, |s| -s - i64::from(before.subsec_nanos() > 0))
            }
        };
        let days = secs.div_euclid(86400);
        let rem = secs.rem_euclid(86400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_format_as_utc_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format(t), "2023-11-14T22:13:20Z");
        assert_eq!(format(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format(leap), "2000-02-29T00:00:00Z");
        let subsecond = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
        assert_eq!(format(subsecond), "2023-11-14T22:13:20Z");
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(format(before), "1969-12-31T00:00:00Z");
        let half = SystemTime::UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(format(half), "1969-12-31T23:59:59Z");
        assert_eq!(Rfc3339(t).to_string(), "2023-11-14T22:13:20Z");
    }
}
