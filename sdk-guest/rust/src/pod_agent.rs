//! The `pod-agent` world: plugins in the Bosun sidecar of one pod.

use std::marker::PhantomData;

use crate::wit::bosun::operator::types as wit;
use crate::{Error, Metadata, instance};

/// Which probe the kubelet is asking for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// May the pod receive traffic?
    Readiness,
    /// Is the app alive (or should it be restarted)?
    Liveness,
    /// Has the app finished starting?
    Startup,
}

/// A probe's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// Whether the probe passes.
    pub healthy: bool,
    /// Why, for humans.
    pub message: String,
}

impl ProbeResult {
    /// A passing probe.
    pub fn healthy() -> Self {
        Self {
            healthy: true,
            message: String::new(),
        }
    }

    /// A failing probe, with the reason.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self {
            healthy: false,
            message: message.into(),
        }
    }
}

/// A pod-level plugin, run by the Bosun sidecar inside one pod. Reach the pod through
/// [`pod`](crate::pod). Export the type with [`export_pod_agent!`](crate::export_pod_agent).
pub trait PodAgent: Sized + 'static {
    /// Name, version and permissions.
    fn metadata() -> Metadata;

    /// Creates the instance from the JSON configuration (`{}` when none is given).
    fn init(config: &str) -> Result<Self, Error>;

    /// The app container started (or the sidecar started beside a running app).
    fn on_start(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Served as the pod's readiness/liveness/startup endpoint. Healthy by default.
    fn probe(&self, kind: ProbeKind) -> ProbeResult {
        let _ = kind;
        ProbeResult::healthy()
    }

    /// A command from a controller plugin (`Command::pod`); `Ok` carries the reply.
    /// Refuses every command by default.
    fn on_command(&self, payload: &str) -> Result<String, Error> {
        let _ = payload;
        Err(Error::msg("this plugin takes no commands"))
    }

    /// The pod is terminating; the last call this instance gets.
    fn on_stop(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// Implements the generated world trait for a [`PodAgent`].
#[doc(hidden)]
pub struct PodAgentExport<T>(PhantomData<T>);

impl<T: PodAgent> crate::wit::Guest for PodAgentExport<T> {
    fn metadata() -> wit::PluginMetadata {
        T::metadata().into()
    }

    fn init(config: String) -> Result<(), String> {
        instance::set(T::init(&config).map_err(String::from)?);
        Ok(())
    }

    fn on_start() -> Result<(), String> {
        Ok(instance::get::<T>()?.on_start()?)
    }

    fn probe(kind: wit::ProbeKind) -> wit::ProbeResult {
        let kind = match kind {
            wit::ProbeKind::Readiness => ProbeKind::Readiness,
            wit::ProbeKind::Liveness => ProbeKind::Liveness,
            wit::ProbeKind::Startup => ProbeKind::Startup,
        };
        let result = match instance::get::<T>() {
            Ok(plugin) => plugin.probe(kind),
            Err(err) => ProbeResult::unhealthy(err),
        };
        wit::ProbeResult {
            healthy: result.healthy,
            message: result.message,
        }
    }

    fn on_command(payload: String) -> Result<String, String> {
        Ok(instance::get::<T>()?.on_command(&payload)?)
    }

    fn on_stop() -> Result<(), String> {
        Ok(instance::get::<T>()?.on_stop()?)
    }
}

/// Exports a [`PodAgent`] as the component's `pod-agent` world.
///
/// ```ignore
/// bosun_sdk::export_pod_agent!(MyAgent);
/// ```
#[macro_export]
macro_rules! export_pod_agent {
    ($plugin:ty) => {
        const _: () = {
            type __BosunPodAgentExport = $crate::__private::PodAgentExport<$plugin>;
    $crate::wit::export!(__BosunPodAgentExport with_types_in $crate::wit);
        };
    };
}
