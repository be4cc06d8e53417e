//! Where the host's functions come from: the WIT imports in a component, the in-memory
//! [`testing::Host`](crate::testing::Host) in a native build (unit tests).

#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::*;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crate::testing::backend::*;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use crate::log::Level;
    use crate::wit::bosun::operator::{clock, log, types};

    #[cfg(any(feature = "controller", feature = "admission"))]
    use crate::wit::bosun::operator::cache;

    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn get(target: &crate::ObjectRef) -> Option<String> {
        cache::get(&target.into())
    }

    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn get_fields(
        target: &crate::ObjectRef,
        fields: &[&str],
    ) -> Result<Option<String>, String> {
        cache::get_fields(&target.into(), &fields.join(","))
    }

    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn list(
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<String>, String> {
        cache::list_objects(api_version, kind, namespace, selector)
    }

    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn state_get(key: &str) -> Option<Vec<u8>> {
        cache::state_get(key)
    }

    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
        cache::state_set(key, value)
    }

    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn state_delete(key: &str) {
        cache::state_delete(key);
    }

    #[cfg(feature = "controller")]
    pub(crate) fn submit(command: crate::Command) -> Result<u64, String> {
        crate::wit::bosun::operator::commands::submit(&command.into())
    }

    pub(crate) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => types::Level::Trace,
            Level::Debug => types::Level::Debug,
            Level::Info => types::Level::Info,
            Level::Warn => types::Level::Warn,
            Level::Error => types::Level::Error,
        };
        log::log(level, message);
    }

    pub(crate) fn now_ms() -> u64 {
        clock::now_ms()
    }

    pub(crate) fn now_rfc3339() -> String {
        clock::now_rfc3339()
    }
}
