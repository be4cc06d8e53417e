//! The release parameters a StatefulSet carries as annotations.

use std::time::Duration;

use crate::At as _;
use serde_json::Value;

/// Opts a StatefulSet in: `InPlaceIfPossible`, `InPlaceOnly` or `Recreate`.
pub const STRATEGY: &str = "release.bosun.dev/strategy";
/// Most pods not Ready at once: a number (`2`) or a share of the replicas (`10%`).
pub const MAX_UNAVAILABLE: &str = "release.bosun.dev/max-unavailable";
/// Ordinals below this stay at their revision.
pub const PARTITION: &str = "release.bosun.dev/partition";
/// `true` stops the release where it is.
pub const PAUSED: &str = "release.bosun.dev/paused";
/// Failed pods tolerated before the release pauses: a number or a share of the replicas.
pub const FAILURE_THRESHOLD: &str = "release.bosun.dev/failure-threshold";
/// Seconds between marking a pod for update and patching its images.
pub const GRACE_PERIOD: &str = "release.bosun.dev/grace-period-seconds";
/// Seconds an in-place update may take, from the image patch to the new containers
/// running and ready, before the pod counts as failed (default
/// [`DEFAULT_UPDATE_TIMEOUT`]).
pub const UPDATE_TIMEOUT: &str = "release.bosun.dev/update-timeout-seconds";
/// The update timeout when [`UPDATE_TIMEOUT`] is absent.
pub const DEFAULT_UPDATE_TIMEOUT: Duration = Duration::from_secs(300);
/// `ordinal` (highest first, the default) or `priority` (label [`PRIORITY_LABEL`], highest
/// first, then ordinal).
pub const ORDER: &str = "release.bosun.dev/order";
/// The pod label `order: priority` sorts by (an integer; absent is 0).
pub const PRIORITY_LABEL: &str = "release.bosun.dev/priority";

/// How a pod reaches the target revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// In place when only images differ, else evict and let the StatefulSet recreate it.
    InPlaceIfPossible,
    /// In place, or not at all: the release reports that it cannot proceed.
    InPlaceOnly,
    /// Always evict.
    Recreate,
}

/// The order pods are updated in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Highest ordinal first.
    Ordinal,
    /// Highest [`PRIORITY_LABEL`] first, then highest ordinal.
    Priority,
}

/// A number of pods, or a share of the replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
    /// This many pods.
    Count(u64),
    /// This percentage of the replicas (0..=100).
    Percent(u64),
}

impl Amount {
    /// The amount for a workload of `total` pods; a percentage rounds down, at least `floor`.
    pub fn of(self, total: u64, floor: u64) -> u64 {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => (total * p / 100).max(floor),
        }
    }
}

/// A StatefulSet's release parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// How pods are updated.
    pub strategy: Strategy,
    /// Most pods not Ready at once (at least 1).
    pub max_unavailable: Amount,
    /// Ordinals below it are left alone.
    pub partition: u64,
    /// Whether the release is paused by the user.
    pub paused: bool,
    /// Failed pods tolerated.
    pub failure_threshold: Amount,
    /// Between marking a pod and patching it.
    pub grace_period: Duration,
    /// From an in-place patch to the pod counting as failed if it is not running ready.
    pub update_timeout: Duration,
    /// Update order.
    pub order: Order,
}

/// An annotation with a value the plugin cannot use: which one and what is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The annotation's key.
    pub key: &'static str,
    /// The value found.
    pub value: String,
    /// The valid forms.
    pub expected: &'static str,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "annotation {}: invalid value {:?}, expected {}",
            self.key, self.value, self.expected
        )
    }
}

fn amount(key: &'static str, value: &str, allow_zero: bool) -> Result<Amount, Invalid> {
    let expected = if allow_zero {
        "a number (0, 2) or a percentage (0%..100%)"
    } else {
        "a positive number (1, 2) or a percentage (1%..100%)"
    };
    let invalid = || Invalid {
        key,
        value: value.to_owned(),
        expected,
    };
    let v = value.trim();
    let (digits, percent) = match v.strip_suffix('%') {
        Some(d) => (d, true),
        None => (v, false),
    };
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    if (n == 0 && !allow_zero) || (percent && n > 100) {
        return Err(invalid());
    }
    Ok(if percent {
        Amount::Percent(n)
    } else {
        Amount::Count(n)
    })
}

impl Params {
    /// The parameters of `sts`; `Ok(None)` when it has not opted in.
    pub fn of(sts: &Value) -> Result<Option<Params>, Invalid> {
        let annotation = |key: &str| {
            sts.at("/metadata/annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
        };
        let Some(strategy) = annotation(STRATEGY) else {
            return Ok(None);
        };
        let strategy = match strategy {
            "InPlaceIfPossible" => Strategy::InPlaceIfPossible,
            "InPlaceOnly" => Strategy::InPlaceOnly,
            "Recreate" => Strategy::Recreate,
            other => {
                return Err(Invalid {
                    key: STRATEGY,
                    value: other.to_owned(),
                    expected: "InPlaceIfPossible, InPlaceOnly or Recreate",
                });
            }
        };
        let max_unavailable = annotation(MAX_UNAVAILABLE)
            .map(|v| amount(MAX_UNAVAILABLE, v, false))
            .transpose()?
            .unwrap_or(Amount::Count(1));
        let failure_threshold = annotation(FAILURE_THRESHOLD)
            .map(|v| amount(FAILURE_THRESHOLD, v, true))
            .transpose()?
            .unwrap_or(Amount::Count(0));
        let number = |key: &'static str| -> Result<u64, Invalid> {
            annotation(key).map_or(Ok(0), |v| {
                v.trim().parse().map_err(|_| Invalid {
                    key,
                    value: v.to_owned(),
                    expected: "a non-negative integer",
                })
            })
        };
        let partition = number(PARTITION)?;
        let grace_period = Duration::from_secs(number(GRACE_PERIOD)?);
        let update_timeout = match annotation(UPDATE_TIMEOUT) {
            None => DEFAULT_UPDATE_TIMEOUT,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => Duration::from_secs(n),
                _ => {
                    return Err(Invalid {
                        key: UPDATE_TIMEOUT,
                        value: v.to_owned(),
                        expected: "a positive number of seconds",
                    });
                }
            },
        };
        let paused = match annotation(PAUSED) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Invalid {
                    key: PAUSED,
                    value: other.to_owned(),
                    expected: "true or false",
                });
            }
        };
        let order = match annotation(ORDER) {
            None | Some("ordinal") => Order::Ordinal,
            Some("priority") => Order::Priority,
            Some(other) => {
                return Err(Invalid {
                    key: ORDER,
                    value: other.to_owned(),
                    expected: "ordinal or priority",
                });
            }
        };
        Ok(Some(Params {
            strategy,
            max_unavailable,
            partition,
            paused,
            failure_threshold,
            grace_period,
            update_timeout,
            order,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sts(annotations: Value) -> Value {
        json!({"metadata": {"annotations": annotations}})
    }

    #[test]
    fn defaults_apply_and_absent_strategy_means_not_opted_in() {
        assert_eq!(Params::of(&sts(json!({}))), Ok(None));
        let p = Params::of(&sts(json!({STRATEGY: "InPlaceIfPossible"})))
            .ok()
            .flatten()
            .expect("opted in");
        assert_eq!(p.max_unavailable, Amount::Count(1));
        assert_eq!(p.failure_threshold, Amount::Count(0));
        assert_eq!((p.partition, p.paused, p.order), (0, false, Order::Ordinal));
        assert_eq!(p.update_timeout, DEFAULT_UPDATE_TIMEOUT);
    }

    #[test]
    fn parses_every_annotation() {
        let p = Params::of(&sts(json!({
            STRATEGY: "InPlaceOnly", MAX_UNAVAILABLE: "10%", PARTITION: "3", PAUSED: "true",
            FAILURE_THRESHOLD: "2", GRACE_PERIOD: "5", ORDER: "priority",
            UPDATE_TIMEOUT: "60",
        })))
        .ok()
        .flatten()
        .expect("opted in");
        assert_eq!(
            p,
            Params {
                strategy: Strategy::InPlaceOnly,
                max_unavailable: Amount::Percent(10),
                partition: 3,
                paused: true,
                failure_threshold: Amount::Count(2),
                grace_period: Duration::from_secs(5),
                update_timeout: Duration::from_secs(60),
                order: Order::Priority,
            }
        );
        assert_eq!(Amount::Percent(10).of(50, 1), 5);
        assert_eq!(Amount::Percent(10).of(6, 1), 1);
    }

    #[test]
    fn invalid_values_name_the_annotation_and_the_valid_forms() {
        for bad in ["abc", "200%", "0", "-1", "1.5"] {
            let err = Params::of(&sts(json!({STRATEGY: "Recreate", MAX_UNAVAILABLE: bad})))
                .expect_err("invalid");
            assert_eq!(err.key, MAX_UNAVAILABLE);
            assert!(err.to_string().contains("percentage"), "{err}");
        }
        let err = Params::of(&sts(json!({STRATEGY: "Rolling"}))).expect_err("invalid");
        assert_eq!(err.key, STRATEGY);
        assert!(Params::of(&sts(json!({STRATEGY: "Recreate", PAUSED: "yes"}))).is_err());
        for bad in ["0", "soon", "-5"] {
            let err = Params::of(&sts(json!({STRATEGY: "Recreate", UPDATE_TIMEOUT: bad})))
                .expect_err("invalid timeout");
            assert_eq!(err.key, UPDATE_TIMEOUT);
        }
    }
}
