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
    /// At most this percentage, rounded down but at least 1 (as a Deployment's
    /// `maxUnavailable` with no surge): "25%" of 3 pods is 1, of 8 is 2, of 10 is 2.
    Percent(u32),
}

impl Limit {
    /// The limit for a workload of `total` pods (or a cluster of `total` nodes).
    pub fn of(self, total: u32) -> u32 {
        match self {
            Limit::Count(n) => n,
            Limit::Percent(0) => 0,
            Limit::Percent(p) => {
                let scaled = u64::from(total) * u64::from(p.min(100)) / 100;
                u32::try_from(scaled).unwrap_or(u32::MAX).max(1)
            }
        }
    }
}

/// Reads a limit that may be switched off: `off`, `false` or `null` give `None`.
pub(crate) fn or_off<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Limit>, D::Error> {
    deserializer.deserialize_any(LimitVisitor { off: true })
}

/// Like [`or_off`], for an override: absent is "inherit" (`None`), `off` is `Some(None)`.
pub(crate) fn override_or_off<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<Limit>>, D::Error> {
    or_off(deserializer).map(Some)
}

/// Writes `None` as `off`.
pub(crate) fn serialize_or_off<S: Serializer>(
    limit: &Option<Limit>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match limit {
        Some(l) => l.serialize(serializer),
        None => serializer.serialize_str("off"),
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
        deserializer
            .deserialize_any(LimitVisitor { off: false })?
            .ok_or_else(|| de::Error::custom("a limit cannot be off here"))
    }
}

/// A number or a percentage string; with `off`, also `"off"`, `false` and `null`.
struct LimitVisitor {
    off: bool,
}

impl<'de> Visitor<'de> for LimitVisitor {
    type Value = Option<Limit>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number of pods (2) or a percentage (\"25%\")")?;
        if self.off {
            f.write_str(", or off")?;
        }
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        u32::try_from(v)
            .map(|n| Some(Limit::Count(n)))
            .map_err(|_| E::custom(format!("{v} is too large")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format!("{v} is negative")))
            .and_then(|v| self.visit_u64(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        if self.off && !v {
            Ok(None)
        } else {
            Err(E::invalid_type(de::Unexpected::Bool(v), &self))
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.off {
            Ok(None)
        } else {
            Err(E::invalid_type(de::Unexpected::Unit, &self))
        }
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let bad = || E::custom(format!("{v:?} is not a number or a percentage"));
        if self.off && v.trim() == "off" {
            return Ok(None);
        }
        match v.trim().strip_suffix('%') {
            Some(p) => {
                let p: u32 = p.trim().parse().map_err(|_| bad())?;
                if p > 100 {
                    return Err(E::custom(format!("{v:?} is over 100%")));
                }
                Ok(Some(Limit::Percent(p)))
            }
            None => v
                .trim()
                .parse()
                .map(|n| Some(Limit::Count(n)))
                .map_err(|_| bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_down_to_at_least_one() {
        assert_eq!(Limit::Percent(25).of(4), 1);
        assert_eq!(Limit::Percent(25).of(5), 1);
        assert_eq!(Limit::Percent(25).of(8), 2);
        assert_eq!(Limit::Percent(25).of(3), 1);
        assert_eq!(Limit::Percent(10).of(3), 1);
        assert_eq!(Limit::Percent(10).of(25), 2);
        assert_eq!(Limit::Percent(0).of(10), 0);
        assert_eq!(Limit::Percent(100).of(7), 7);
    }

    #[test]
    fn limits_may_be_switched_off_where_allowed() {
        #[derive(Deserialize)]
        struct S {
            #[serde(deserialize_with = "or_off")]
            l: Option<Limit>,
        }
        for off in [r#"{"l":"off"}"#, r#"{"l":false}"#, r#"{"l":null}"#] {
            assert_eq!(
                serde_json::from_str::<S>(off).expect("off").l,
                None,
                "{off}"
            );
        }
        let on: S = serde_json::from_str(r#"{"l":"10%"}"#).expect("a percent");
        assert_eq!(on.l, Some(Limit::Percent(10)));
        assert!(serde_json::from_str::<S>(r#"{"l":true}"#).is_err());
        assert!(serde_json::from_str::<Limit>("\"off\"").is_err());
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
