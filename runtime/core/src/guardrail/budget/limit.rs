//! A budget's configured limit: a number, or a percentage of a workload's pods.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A budget's limit: a number, or a percentage of a workload's pods.
///
/// Written in config as a number (`1`) or a percentage string (`"25%"`), like a
/// Kubernetes int-or-string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// At most this many.
    Count(u32),
    /// At most this percentage, rounded up (as a PodDisruptionBudget does).
    Percent(u32),
}

impl Limit {
    /// The limit for a workload of `total` pods.
    pub fn of(self, total: u32) -> u32 {
        match self {
            Limit::Count(n) => n,
            Limit::Percent(p) => {
                let scaled = u64::from(total) * u64::from(p.min(100));
                u32::try_from(scaled.div_ceil(100)).unwrap_or(u32::MAX)
            }
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Count(n) => serializer.serialize_u32(*n),
            Limit::Percent(_) => serializer.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LimitVisitor;
        impl Visitor<'_> for LimitVisitor {
            type Value = Limit;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of pods (2) or a percentage (\"25%\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Limit, E> {
                u32::try_from(v)
                    .map(Limit::Count)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Limit, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Limit, E> {
                let bad = || E::custom(format!("{v:?} is not a number or a percentage"));
                match v.trim().strip_suffix('%') {
                    Some(p) => {
                        let p: u32 = p.trim().parse().map_err(|_| bad())?;
                        if p > 100 {
                            return Err(E::custom(format!("{v:?} is over 100%")));
                        }
                        Ok(Limit::Percent(p))
                    }
                    None => v.trim().parse().map(Limit::Count).map_err(|_| bad()),
                }
            }
        }
        deserializer.deserialize_any(LimitVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_up() {
        assert_eq!(Limit::Percent(25).of(4), 1);
        assert_eq!(Limit::Percent(25).of(5), 2);
        assert_eq!(Limit::Percent(10).of(3), 1);
        assert_eq!(Limit::Percent(0).of(10), 0);
    }

    #[test]
    fn limits_parse_as_int_or_percent() {
        let count: Limit = serde_json::from_str("2").expect("a count");
        let percent: Limit = serde_json::from_str("\"25%\"").expect("a percent");
        assert_eq!((count, percent), (Limit::Count(2), Limit::Percent(25)));
        assert!(serde_json::from_str::<Limit>("\"150%\"").is_err());
        assert!(serde_json::from_str::<Limit>("-1").is_err());
        assert_eq!(
            serde_json::to_string(&percent).expect("serialises"),
            "\"25%\""
        );
    }
}
