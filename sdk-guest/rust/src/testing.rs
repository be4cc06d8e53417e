//! An in-memory host for native unit tests of plugins (not in wasm builds).
//!
//! In a component the SDK calls the real host through the WIT imports. In a native build
//! (`cargo test`) it calls the [`Host`] installed for the duration of a call instead:
//! objects in its cache, plugin state, submitted commands and log lines, and a fixed clock.
//!
//! ```
//! # #[cfg(feature = "controller")] {
//! use bosun_sdk::testing::Host;
//! use bosun_sdk::{Command, Context, Controller, Error, Metadata, ObjectRef, Outcome, Request};
//! use serde_json::json;
//!
//! struct Touch;
//! impl Controller for Touch {
//!     fn metadata() -> Metadata { Metadata::new("touch", "0.1.0").subscribe("v1", "Pod") }
//!     fn init(_: &str) -> Result<Self, Error> { Ok(Touch) }
//!     fn reconcile(&self, ctx: &mut Context, req: &Request) -> Result<Outcome, Error> {
//!         if ctx.get(req.target()).is_some() {
//!             ctx.submit(Command::merge_patch(req.target(), &json!({"metadata": {"labels": {"t": "1"}}})))?;
//!         }
//!         Ok(Outcome::done())
//!     }
//! }
//!
//! let mut host = Host::new();
//! let pod = host.insert(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "ns"}}));
//! let outcome = host.reconcile(&Touch, &Request::new(pod.clone())).unwrap();
//! assert_eq!(outcome, Outcome::done());
//! assert_eq!(host.commands().len(), 1);
//! # }
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::log::Level;
use crate::{Command, ObjectRef};

thread_local! {
    static HOST: RefCell<Option<Host>> = const { RefCell::new(None) };
}

/// An in-memory stand-in for the Bosun host.
#[derive(Clone, Debug)]
pub struct Host {
    objects: BTreeMap<ObjectRef, String>,
    state: BTreeMap<String, Vec<u8>>,
    commands: Vec<Command>,
    logs: Vec<(Level, String)>,
    now_ms: u64,
    refusal: Option<String>,
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

impl Host {
    /// An empty cache, no state, the clock at 2026-01-01T00:00:00Z, every command accepted.
    pub fn new() -> Self {
        Self {
            objects: BTreeMap::new(),
            state: BTreeMap::new(),
            commands: Vec::new(),
            logs: Vec::new(),
            now_ms: 1_767_225_600_000,
            refusal: None,
        }
    }

    /// Adds `object` to the cache (see [`insert`](Self::insert)).
    #[must_use]
    pub fn with_object(mut self, object: Value) -> Self {
        self.insert(object);
        self
    }

    /// Adds (or replaces) `object` in the cache, under its apiVersion, kind, namespace and
    /// name, and returns its reference.
    ///
    /// # Panics
    /// When the object has no apiVersion, kind or metadata.name.
    pub fn insert(&mut self, object: Value) -> ObjectRef {
        let target = match ObjectRef::of(&object) {
            Ok(target) => target,
            Err(err) => panic!("testing::Host::insert: {err}"),
        };
        self.objects.insert(target.clone(), object.to_string());
        target
    }

    /// Removes an object from the cache.
    pub fn remove(&mut self, target: &ObjectRef) {
        self.objects.remove(target);
    }

    /// Sets the clock, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn at_ms(mut self, now_ms: u64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Refuses every command from now on, with `reason`.
    #[must_use]
    pub fn refusing_commands(mut self, reason: impl Into<String>) -> Self {
        self.refusal = Some(reason.into());
        self
    }

    /// Commands accepted so far, in order.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    /// Takes the commands accepted so far.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    /// Log lines so far, in order.
    pub fn logs(&self) -> &[(Level, String)] {
        &self.logs
    }

    /// Plugin state under `key`.
    pub fn state(&self, key: &str) -> Option<&[u8]> {
        self.state.get(key).map(Vec::as_slice)
    }

    /// Runs `f` with this host installed as the thread's host: the SDK's host calls in
    /// `f` (`Context`, [`log`](crate::log), [`clock`](crate::clock)) reach it.
    ///
    /// # Panics
    /// When a host is already installed on this thread (calls do not nest).
    pub fn enter<R>(&mut self, f: impl FnOnce() -> R) -> R {
        struct Installed<'a>(&'a mut Host);
        impl Drop for Installed<'_> {
            fn drop(&mut self) {
                if let Some(host) = HOST.with(|slot| slot.borrow_mut().take()) {
                    *self.0 = host;
                }
            }
        }
        HOST.with(|slot| {
            let mut slot = slot.borrow_mut();
            assert!(
                slot.is_none(),
                "testing::Host::enter: a host is already installed"
            );
            *slot = Some(std::mem::take(self));
        });
        let _installed = Installed(self);
        f()
    }

    /// Calls `plugin.reconcile` with this host behind its `Context`.
    #[cfg(feature = "controller")]
    pub fn reconcile<P: crate::Controller>(
        &mut self,
        plugin: &P,
        request: &crate::Request,
    ) -> Result<crate::Outcome, crate::Error> {
        self.enter(|| plugin.reconcile(&mut crate::Context::new(), request))
    }

    /// Calls `plugin.review` with this host behind its `Context`.
    #[cfg(feature = "admission")]
    pub fn review<P: crate::Admission>(
        &mut self,
        plugin: &P,
        review: Value,
    ) -> Result<Value, crate::Error> {
        self.enter(|| plugin.review(&mut crate::Context::new(), review))
    }
}

#[cfg(any(feature = "controller", feature = "admission"))]
/// Whether `labels` match a label selector (Kubernetes syntax, Bosun's one parser).
fn matches(labels: Option<&Value>, selector: &str) -> Result<bool, String> {
    let selector = bosun_api::Selector::parse(selector).map_err(|e| e.to_string())?;
    let labels = labels.and_then(Value::as_object);
    Ok(selector.matches_with(|k| labels?.get(k).and_then(Value::as_str)))
}

/// The SDK's host calls in a native build.
pub(crate) mod backend {
    #[cfg(any(feature = "controller", feature = "admission"))]
    use super::matches;
    use super::{HOST, Host};
    use crate::log::Level;
    use bosun_api::time::rfc3339;

    fn with<R>(f: impl FnOnce(&mut Host) -> R) -> R {
        HOST.with(|slot| match slot.borrow_mut().as_mut() {
            Some(host) => f(host),
            None => panic!(
                "bosun-sdk: a host call outside a wasm host; in a native test, run the plugin \
                 through bosun_sdk::testing::Host"
            ),
        })
    }

    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn get(target: &crate::ObjectRef) -> Option<String> {
        with(|host| host.objects.get(target).cloned())
    }

    /// Cut as the runtime's host cuts it (the same code, from bosun-api).
    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn get_fields(
        target: &crate::ObjectRef,
        fields: &[&str],
    ) -> Result<Option<String>, String> {
        let fields =
            bosun_api::fields::Fields::parse_list(&fields.join(",")).map_err(|e| e.to_string())?;
        with(|host| {
            host.objects
                .get(target)
                .map(|text| fields.cut(text).map_err(|e| format!("{target}: {e}")))
                .transpose()
        })
    }

    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn list(
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<String>, String> {
        with(|host| {
            let mut found = Vec::new();
            for (target, text) in &host.objects {
                if target.api_version != api_version
                    || target.kind != kind
                    || namespace.is_some_and(|ns| target.namespace.as_deref() != Some(ns))
                {
                    continue;
                }
                if let Some(selector) = selector {
                    let object: serde_json::Value =
                        serde_json::from_str(text).map_err(|err| err.to_string())?;
                    if !matches(object.pointer("/metadata/labels"), selector)? {
                        continue;
                    }
                }
                found.push(text.clone());
            }
            Ok(found)
        })
    }

    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn state_get(key: &str) -> Option<Vec<u8>> {
        with(|host| host.state.get(key).cloned())
    }

    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
        with(|host| {
            host.state.insert(key.to_owned(), value.to_vec());
        });
        Ok(())
    }

    #[cfg(any(feature = "controller", feature = "admission"))]
    pub(crate) fn state_delete(key: &str) {
        with(|host| {
            host.state.remove(key);
        });
    }

    #[cfg(feature = "controller")]
    pub(crate) fn submit(command: crate::Command) -> Result<u64, String> {
        with(|host| {
            if let Some(reason) = &host.refusal {
                return Err(reason.clone());
            }
            host.commands.push(command);
            Ok(host.commands.len() as u64)
        })
    }

    pub(crate) fn log(level: Level, message: &str) {
        with(|host| host.logs.push((level, message.to_owned())));
    }

    pub(crate) fn now_ms() -> u64 {
        with(|host| host.now_ms)
    }

    pub(crate) fn now_rfc3339() -> String {
        rfc3339(now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(feature = "controller", feature = "admission"))]
    #[test]
    fn selectors() {
        let labels = serde_json::json!({"app": "web", "tier": "front"});
        let m = |s: &str| matches(Some(&labels), s);
        assert_eq!(m("app=web"), Ok(true));
        assert_eq!(m("app==web,tier=front"), Ok(true));
        assert_eq!(m("app=db"), Ok(false));
        assert_eq!(m("app!=db"), Ok(true));
        assert_eq!(m("tier"), Ok(true));
        assert_eq!(m("!legacy"), Ok(true));
        assert_eq!(m("!app"), Ok(false));
        assert_eq!(m("tier in (a,front)"), Ok(true));
        assert_eq!(m("tier notin (front)"), Ok(false));
        assert!(m("tier in a,b").is_err());
    }

    #[cfg(any(feature = "controller", feature = "admission"))]
    #[test]
    fn context_reads_and_writes_through_the_host() {
        let mut host = Host::new().with_object(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "web"}},
        }));
        let pod = ObjectRef::new("v1", "Pod").namespaced("ns").named("a");
        host.enter(|| {
            let mut ctx = crate::Context::new();
            assert!(ctx.get(&pod).is_some());
            assert_eq!(
                ctx.list("v1", "Pod", Some("ns"), Some("app=web"))
                    .map(|l| l.len()),
                Ok(1)
            );
            assert_eq!(
                ctx.list("v1", "Pod", Some("other"), None).map(|l| l.len()),
                Ok(0)
            );
            assert!(ctx.state_set("k", b"v").is_ok());
            ctx.info("hello");
            assert_eq!(ctx.now_rfc3339(), "2026-01-01T00:00:00Z");
        });
        assert_eq!(host.state("k"), Some(&b"v"[..]));
        assert_eq!(host.logs(), &[(Level::Info, "hello".to_owned())]);
    }
}
