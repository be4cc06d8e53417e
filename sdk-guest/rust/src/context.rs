//! What a plugin can reach during a call: the cache, its state, the command pipe (in a
//! controller), the log and the clock.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::objects::{MetaObject, NodeObject, ObjectMeta, PodObject};
use crate::{Error, ObjectRef, backend, clock, log};

/// The plugin's view of the runtime during one call.
///
/// Reads go to the shared informer cache and are filtered to what the plugin declared: a
/// kind it neither subscribes to nor holds `read` on reads as absent.
#[derive(Debug)]
pub struct Context {
    _private: (),
}

impl Context {
    pub(crate) fn new() -> Self {
        Self { _private: () }
    }

    /// The object as JSON, or `None` when it is not in the cache (or not readable).
    /// During a call for a deleted object this is its last known state.
    ///
    /// A cache entry that is not valid JSON (a host bug) is logged and reads as `None`;
    /// use [`get_raw`](Self::get_raw) to see the text.
    pub fn get(&self, target: &ObjectRef) -> Option<Value> {
        let text = self.get_raw(target)?;
        match serde_json::from_str(&text) {
            Ok(value) => Some(value),
            Err(err) => {
                log::error(format!("cache entry for {target} is not JSON: {err}"));
                None
            }
        }
    }

    /// The object's JSON text as the cache keeps it.
    pub fn get_raw(&self, target: &ObjectRef) -> Option<String> {
        backend::get(target)
    }

    /// The object deserialized into `T` (your own serde struct, or a k8s-openapi type).
    /// `Ok(None)` when it is not in the cache; `Err` when it does not fit `T`.
    pub fn get_as<T: DeserializeOwned>(&self, target: &ObjectRef) -> Result<Option<T>, Error> {
        self.get_raw(target)
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|err| Error::from(err).context(format!("reading {target}")))
    }

    /// The object reduced to the named fields, as JSON: dotted paths from the root
    /// (`"metadata.labels"`, `"spec.nodeName"`); a path through an array applies to each
    /// element (`"spec.containers.image"`). Each value stays at its place; paths the object
    /// lacks are left out. The host skips the rest of the object natively, so this is the
    /// cheapest read of a few fields of a large object. `Ok(None)` when it is not in the
    /// cache; `Err` for an empty list, more than 64 fields, one over 256 bytes or an empty
    /// path segment. Names cannot hold commas (the host takes the list comma-separated).
    ///
    /// ```ignore
    /// let pod = ctx.get_fields(req.target(), &["metadata.labels", "spec.nodeName"])?;
    /// ```
    pub fn get_fields(&self, target: &ObjectRef, fields: &[&str]) -> Result<Option<Value>, Error> {
        self.get_fields_as(target, fields)
    }

    /// [`get_fields`](Self::get_fields) deserialized into `T`.
    pub fn get_fields_as<T: DeserializeOwned>(
        &self,
        target: &ObjectRef,
        fields: &[&str],
    ) -> Result<Option<T>, Error> {
        backend::get_fields(target, fields)
            .map_err(|err| Error::msg(format!("reading fields of {target}: {err}")))?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|err| Error::from(err).context(format!("reading {target}")))
    }

    /// The pod as the SDK's slim view ([`PodObject`]): metadata, node name, containers'
    /// images, phase, conditions and container statuses. Much cheaper than [`get`](Self::get)
    /// on a large pod, which builds a [`Value`] of every field. `Ok(None)` when it is not
    /// in the cache.
    pub fn get_pod(&self, target: &ObjectRef) -> Result<Option<PodObject>, Error> {
        self.get_fields_as(target, PodObject::FIELDS)
    }

    /// The node as the SDK's slim view ([`NodeObject`]): metadata, cordon, taints,
    /// conditions, boot id.
    pub fn get_node(&self, name: &str) -> Result<Option<NodeObject>, Error> {
        self.get_fields_as(
            &ObjectRef::new("v1", "Node").named(name),
            NodeObject::FIELDS,
        )
    }

    /// Any object's metadata ([`ObjectMeta`]) and nothing else of it.
    pub fn get_meta(&self, target: &ObjectRef) -> Result<Option<ObjectMeta>, Error> {
        Ok(self
            .get_fields_as::<MetaObject>(target, MetaObject::FIELDS)?
            .map(|o| o.metadata))
    }

    /// Objects of one kind. `namespace` `None` lists all namespaces; `selector` is a
    /// Kubernetes label selector (`app=web,tier in (a,b)`). An invalid selector is an error.
    pub fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<Value>, Error> {
        self.list_as(api_version, kind, namespace, selector)
    }

    /// Objects of one kind deserialized into `T` (your own serde struct naming only the
    /// fields you read is much cheaper than a full [`Value`] per object). `Err` when the
    /// selector is invalid or an object does not fit `T`.
    pub fn list_as<T: DeserializeOwned>(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<T>, Error> {
        backend::list(api_version, kind, namespace, selector)
            .map_err(|err| Error::msg(format!("listing {api_version}/{kind}: {err}")))?
            .iter()
            .map(|text| {
                serde_json::from_str(text).map_err(|err| {
                    Error::from(err).context(format!("reading a {api_version}/{kind}"))
                })
            })
            .collect()
    }

    /// Plugin-local state under `key`, kept by the host per plugin (not per revision).
    pub fn state_get(&self, key: &str) -> Option<Vec<u8>> {
        backend::state_get(key)
    }

    /// Sets plugin-local state. Fails when the key or value exceeds the host's caps.
    pub fn state_set(&mut self, key: &str, value: &[u8]) -> Result<(), Error> {
        backend::state_set(key, value)
            .map_err(|err| Error::msg(format!("setting state {key:?}: {err}")))
    }

    /// Deletes plugin-local state under `key`.
    pub fn state_delete(&mut self, key: &str) {
        backend::state_delete(key);
    }

    /// Logs at trace level.
    pub fn trace(&self, message: impl AsRef<str>) {
        log::trace(message);
    }

    /// Logs at debug level.
    pub fn debug(&self, message: impl AsRef<str>) {
        log::debug(message);
    }

    /// Logs at info level.
    pub fn info(&self, message: impl AsRef<str>) {
        log::info(message);
    }

    /// Logs at warn level.
    pub fn warn(&self, message: impl AsRef<str>) {
        log::warn(message);
    }

    /// Logs at error level.
    pub fn error(&self, message: impl AsRef<str>) {
        log::error(message);
    }

    /// Wall-clock time in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        clock::now_ms()
    }

    /// The current time as RFC 3339 with seconds precision (`2026-11-29T03:00:00Z`).
    pub fn now_rfc3339(&self) -> String {
        clock::now_rfc3339()
    }
}

#[cfg(feature = "controller")]
impl Context {
    /// Submits a command to the command pipe. `Ok(id)`: accepted for the guardrails; its
    /// outcome comes back in a later [`Request::outcomes`](crate::Request::outcomes).
    /// `Err`: refused at once (not permitted, invalid, over the per-call cap, rate
    /// limited, breaker open).
    pub fn submit(&mut self, command: crate::Command) -> Result<crate::CommandId, crate::Refused> {
        backend::submit(command)
            .map(crate::CommandId)
            .map_err(|reason| crate::Refused { reason })
    }
}
