//! The `controller` world: cluster-wide plugins that reconcile objects.

use std::marker::PhantomData;

use crate::wit::bosun::operator::types as wit;
use crate::{Context, Error, Metadata, Outcome, Request, instance};

/// A cluster-wide operator plugin, run by the central runtime.
///
/// The host calls [`metadata`](Self::metadata) once when it loads a revision, then
/// [`init`](Self::init) once per instance, then [`reconcile`](Self::reconcile) for each
/// key of the subscribed kinds. Calls for one key never overlap. Export the type with
/// [`export_controller!`](crate::export_controller).
pub trait Controller: Sized + 'static {
    /// Name, version, subscriptions and permissions.
    fn metadata() -> Metadata;

    /// Creates the instance from the JSON configuration (`{}` when none is given); see
    /// [`parse_config`](crate::parse_config). An error stops the revision from loading.
    fn init(config: &str) -> Result<Self, Error>;

    /// Brings the cluster closer to what the plugin wants for `req.target()`, by
    /// submitting commands through `ctx`. An error requeues the key with backoff.
    fn reconcile(&self, ctx: &mut Context, req: &Request) -> Result<Outcome, Error>;
}

/// Implements the generated world trait for a [`Controller`].
#[doc(hidden)]
pub struct ControllerExport<T>(PhantomData<T>);

impl<T: Controller> crate::wit::Guest for ControllerExport<T> {
    fn metadata() -> wit::PluginMetadata {
        T::metadata().into()
    }

    fn init(config: String) -> Result<(), String> {
        instance::set(T::init(&config).map_err(String::from)?);
        Ok(())
    }

    fn reconcile(request: wit::ReconcileRequest) -> Result<wit::ReconcileOutcome, String> {
        let plugin = instance::get::<T>()?;
        let outcome = plugin.reconcile(&mut Context::new(), &request.into())?;
        Ok(wit::ReconcileOutcome {
            requeue_after_ms: outcome.requeue_after_ms(),
        })
    }
}

/// Exports a [`Controller`] as the component's `controller` world.
///
/// ```ignore
/// bosun_sdk::export_controller!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_controller {
    ($plugin:ty) => {
        const _: () = {
            type __BosunControllerExport = $crate::__private::ControllerExport<$plugin>;
    $crate::wit::export!(__BosunControllerExport with_types_in $crate::wit);
        };
    };
}
