//! Times as Kubernetes writes them: RFC 3339 in UTC with second precision
//! (`2026-11-29T03:00:00Z`), through `jiff` rather than hand-written calendar code.

use jiff::Timestamp;

/// `ms` (milliseconds since the Unix epoch) as `2026-11-29T03:00:00Z`; fractions of a
/// second are dropped, as in `metav1.Time`. Times past the end of year 9999 are clamped (jiff's last instant).
pub fn rfc3339(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let t = Timestamp::from_second(secs.min(Timestamp::MAX.as_second())).unwrap_or(Timestamp::MAX);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `t` as [`rfc3339`] writes it (times before the epoch read as the epoch).
pub fn rfc3339_of(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    rfc3339(ms)
}

/// Seconds since the Unix epoch of an RFC 3339 time (any offset, any fraction), or
/// `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    s.parse::<Timestamp>().ok().map(Timestamp::as_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_kubernetes_does() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_921_200_999), "2026-11-29T03:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_199_000), "2023-12-31T23:59:59Z");
        let before_epoch = std::time::UNIX_EPOCH - std::time::Duration::from_secs(1);
        assert_eq!(rfc3339_of(before_epoch), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-30T22:00:00Z");
    }

    #[test]
    fn parses_back() {
        for ms in [0, 951_782_400_000, 1_795_921_200_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some((ms / 1000) as i64));
        }
        assert_eq!(
            parse_rfc3339("2026-11-29T04:00:00.5+01:00"),
            Some(1_795_921_200)
        );
        // A MicroTime (a Lease's renewTime) reads as its whole second.
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.000000Z"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339(""), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
