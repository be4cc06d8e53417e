//! The WIT worlds of the plugin contract, as the CRD, the CLI and the host name them.

/// The WIT world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Cluster-wide reconciler.
    Controller,
    /// Admission webhook handler.
    Admission,
    /// Pod-level agent in the sidecar.
    PodAgent,
}

impl World {
    /// Every world, in the contract's order.
    pub const ALL: [World; 3] = [World::Controller, World::Admission, World::PodAgent];

    /// The world's name in the WIT (and in the CRD).
    pub fn as_str(self) -> &'static str {
        match self {
            World::Controller => "controller",
            World::Admission => "admission",
            World::PodAgent => "pod-agent",
        }
    }

    /// The functions a component of this world exports.
    pub fn exports(self) -> &'static [&'static str] {
        match self {
            World::Controller => &["metadata", "init", "reconcile"],
            World::Admission => &["metadata", "init", "review"],
            World::PodAgent => &[
                "metadata",
                "init",
                "on-start",
                "probe",
                "on-command",
                "on-stop",
            ],
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A world name that is not one of the contract's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown world {0:?} (expected controller, admission or pod-agent)")]
pub struct UnknownWorld(pub String);

impl std::str::FromStr for World {
    type Err = UnknownWorld;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        World::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| UnknownWorld(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for w in World::ALL {
            assert_eq!(w.as_str().parse::<World>(), Ok(w));
            assert_eq!(
                serde_json::to_value(w).expect("serialises"),
                serde_json::Value::String(w.to_string())
            );
        }
        assert!("sidecar".parse::<World>().is_err());
    }
}
