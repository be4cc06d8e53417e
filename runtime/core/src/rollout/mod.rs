//! Rollouts (gray management): how a new revision of a plugin replaces the stable one — directly,
//! as a **canary** that serves a share of keys (or the objects a selector picks) and is
//! judged against the stable revision, or as a **shadow** that sees every key and whose
//! commands are compared, never executed.
//!
//! - [`route`]: which revision serves a key, and the analysis that judges a canary.
//! - [`shadow`]: where a shadow's commands go, and the differences they show.
//! - [`controller`]: `Plugin` objects turned into serving revisions (and their status).
//! - [`source`]: fetching a Plugin's component (file, ConfigMap, URL) and checking it.
//! - [`folder`]: embedded mode's plugins folder published as Plugin objects.
//! - [`grants`]: what a Plugin object grants, checked before a revision serves.
//! - [`state`]: a canary's or shadow's own plugin state.
//!
//! [`Rollouts`] is the one place that starts, promotes and rolls back; the dispatcher
//! only reads [`Routes`], and learns of changes through the callback it is given. A
//! revision is attached as a canary or shadow of plugin `P` only if its metadata names
//! `P` and asks for nothing `P`'s grants do not cover; it runs on state of its own.

pub mod controller;
pub mod folder;
pub mod grants;
pub mod route;
pub mod shadow;
pub mod source;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bosun_host::load::{Source, Spec};
use bosun_host::{Registry, Revision};
use tokio::sync::watch;

pub use grants::Grants;
pub use route::{Analysis, Judgement, Rates, Route, Routes, Split, bucket};
pub use shadow::{Difference, ShadowSink};
pub use state::Scratch;

/// A canary could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The new revision does not load.
    #[error(transparent)]
    Load(#[from] bosun_host::load::Error),
    /// The new revision is another world than the stable one.
    #[error(
        "plugin {plugin}: the canary is a {canary} component but the stable revision is a {stable}"
    )]
    World {
        /// The plugin.
        plugin: String,
        /// The stable revision's world.
        stable: bosun_host::World,
        /// The canary's world.
        canary: bosun_host::World,
    },
    /// A shadow needs a stable revision to compare with.
    #[error("plugin {0} has no stable revision to shadow; install it first")]
    NoStable(String),
    /// There is no canary to promote or roll back.
    #[error("plugin {0} has no canary in progress")]
    NoCanary(String),
    /// The revision is another plugin: it would serve (and share the routes of) a plugin
    /// its Plugin object does not name.
    #[error(
        "plugin {plugin}: the component is plugin {component:?}; a revision of {plugin} must carry its name in its metadata"
    )]
    NameMismatch {
        /// The plugin it was to serve.
        plugin: String,
        /// The name in its metadata.
        component: String,
    },
    /// The revision asks for permissions its Plugin object does not grant.
    #[error(
        "plugin {plugin}: the revision asks for permissions spec.permissions does not grant: {}",
        missing.join(", ")
    )]
    NotGranted {
        /// The plugin.
        plugin: String,
        /// What is not granted (`verb on apiVersion/kind`).
        missing: Vec<String>,
    },
}

/// What the dispatcher must do after a rollout changed something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resync {
    /// The registry changed (a revision adopted, removed or rolled back): bring the
    /// workers in line with it.
    Workers,
    /// Routes changed (a canary or shadow started or ended): look at every key again.
    Keys,
}

/// A revision loaded to run beside the stable one (as a canary), on state of its own.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The revision, loaded with a spec [`Rollouts::isolate`] gave its own state.
    pub revision: Arc<Revision>,
    /// That state.
    pub state: Arc<Scratch>,
}

/// Starts, judges, promotes and rolls back new revisions of plugins.
pub struct Rollouts {
    registry: Arc<Registry>,
    routes: Arc<Routes>,
    spec: Spec,
    judgements: Mutex<HashMap<String, Judgement>>,
    /// What each plugin's Plugin object grants now (plugins not declared by a Plugin
    /// object have none: their metadata is all there is).
    grants: Mutex<HashMap<String, Grants>>,
    /// What each admission plugin's Plugin object says about its webhook.
    admission: Mutex<HashMap<String, bosun_api::plugin::Webhook>>,
    resync: Box<dyn Fn(Resync) + Send + Sync>,
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for Rollouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollouts").finish_non_exhaustive()
    }
}

impl Rollouts {
    /// Rollouts of `registry`'s plugins through `routes`; revisions load with `spec`
    /// (its config replaced per plugin), and `resync` tells the dispatcher what changed.
    pub fn new(
        registry: Arc<Registry>,
        routes: Arc<Routes>,
        spec: Spec,
        resync: Box<dyn Fn(Resync) + Send + Sync>,
    ) -> Self {
        Rollouts {
            registry,
            routes,
            spec,
            judgements: Mutex::default(),
            grants: Mutex::default(),
            admission: Mutex::default(),
            resync,
            changed: watch::channel(0).0,
        }
    }

    /// The spec new revisions load with (limits, services), with the default config.
    pub fn spec(&self) -> Spec {
        self.spec.clone()
    }

    /// Gives `spec` state of its own (the plugin's state stays untouched), for a revision
    /// that is to run beside the stable one; the returned state goes into its [`Candidate`].
    pub fn isolate(&self, spec: &mut Spec) -> Arc<Scratch> {
        let state = Arc::new(Scratch::with_caps(
            spec.services.state.clone(),
            spec.limits.max_state_bytes,
            spec.limits.max_state_keys,
        ));
        spec.services.state = state.clone();
        state
    }

    /// Loads a revision of `plugin`: its metadata is checked to name it before `init`
    /// runs, so another plugin's component never starts here.
    fn load_as(&self, plugin: &str, source: &Source, spec: Spec) -> Result<Revision, Error> {
        Revision::load_named(self.registry.engine(), source, spec, plugin).map_err(|e| {
            match e.cause {
                bosun_host::load::Cause::NameMismatch { actual, .. } => Error::NameMismatch {
                    plugin: plugin.to_owned(),
                    component: actual,
                },
                _ => Error::Load(e),
            }
        })
    }

    /// Records what `plugin`'s Plugin object grants now: a canary is promoted only
    /// within it.
    pub fn grant(&self, plugin: &str, grants: Grants) {
        self.grants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(plugin.to_owned(), grants);
    }

    /// What `plugin`'s Plugin object grants, when one was recorded.
    pub fn grants(&self, plugin: &str) -> Option<Grants> {
        self.grants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(plugin)
            .cloned()
    }

    /// Records how `plugin`'s Plugin object wants its webhook called (`None`: the
    /// defaults); the webhook configurations follow.
    pub fn declare_webhook(&self, plugin: &str, webhook: Option<bosun_api::plugin::Webhook>) {
        let mut all = self
            .admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let changed = match webhook {
            Some(w) => all.insert(plugin.to_owned(), w.clone()).as_ref() != Some(&w),
            None => all.remove(plugin).is_some(),
        };
        drop(all);
        if changed {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// How `plugin`'s webhook is to be called, when its Plugin object says.
    pub fn webhook(&self, plugin: &str) -> Option<bosun_api::plugin::Webhook> {
        self.admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(plugin)
            .cloned()
    }

    /// The plugin registry (stable revisions).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The routes in progress.
    pub fn routes(&self) -> &Arc<Routes> {
        &self.routes
    }

    /// Bumped whenever a canary starts, ends or is judged differently: a status to
    /// write.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn touch(&self, resync: Resync) {
        (self.resync)(resync);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn judged(&self, name: &str, judgement: Judgement) {
        let old = self
            .judgements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), judgement.clone());
        if old.as_ref() != Some(&judgement) {
            self.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Makes `revision` the stable revision of its plugin at once.
    pub fn adopt(&self, revision: Arc<Revision>) {
        self.registry.adopt(revision);
        self.touch(Resync::Workers);
    }

    /// Returns `name` to its previous stable revision.
    pub fn rollback(&self, name: &str) -> Result<Arc<Revision>, bosun_host::registry::Error> {
        let revision = self.registry.rollback(name, None)?;
        self.touch(Resync::Workers);
        Ok(revision)
    }

    /// Starts a canary of a new revision of the installed plugin `plugin`, granted
    /// `grants`: it serves the keys `split` picks until the analysis promotes it or rolls
    /// it back. A plugin not installed yet is installed directly.
    pub fn canary(
        &self,
        plugin: &str,
        grants: Grants,
        source: &Source,
        config: &str,
        split: Split,
        analysis: Analysis,
    ) -> Result<Arc<Revision>, Error> {
        let mut spec = self.spec();
        spec.config = config.to_owned();
        let state = self.isolate(&mut spec);
        let revision = Arc::new(self.load_as(plugin, source, spec)?);
        self.start_canary(
            plugin,
            grants,
            Candidate { revision, state },
            split,
            analysis,
        )
    }

    /// Starts a canary of a loaded revision (see [`Rollouts::canary`]) once its name and
    /// permissions are checked against `plugin` and `grants`.
    pub fn start_canary(
        &self,
        plugin: &str,
        grants: Grants,
        candidate: Candidate,
        split: Split,
        analysis: Analysis,
    ) -> Result<Arc<Revision>, Error> {
        let Candidate { revision, state } = candidate;
        admit(plugin, &grants, &revision)?;
        self.grant(plugin, grants);
        let name = plugin;
        let Some(stable) = self.registry.current(name) else {
            // Nothing to run beside: it is the plugin, on the plugin's state.
            state.promote();
            self.adopt(revision.clone());
            return Ok(revision);
        };
        same_world(name, &stable, &revision)?;
        if stable.digest() == revision.digest() && stable.config() == revision.config() {
            return Ok(stable);
        }
        tracing::info!(plugin = %name, canary = %bosun_host::host::log::short(revision.digest()), split = ?split, "canary started");
        let mut route = Route::new(revision.clone(), &stable, split, analysis);
        route.state = Some(state);
        self.routes.start(name, route);
        // Keys that moved to the canary are looked at by it at once.
        self.touch(Resync::Keys);
        Ok(revision)
    }

    /// Starts a shadow of a new revision of `plugin`, loaded with `spec` (its config and
    /// limits; its commands and state are replaced): it reconciles every key the stable
    /// revision does, its commands are recorded and compared with stable's, never
    /// executed, and its state is its own. It must be `plugin` and ask for nothing
    /// beyond `grants`.
    pub fn shadow(
        &self,
        plugin: &str,
        grants: Grants,
        source: &Source,
        mut spec: Spec,
    ) -> Result<Arc<Revision>, Error> {
        let stable = self
            .registry
            .current(plugin)
            .ok_or_else(|| Error::NoStable(plugin.to_owned()))?;
        let sink = Arc::new(ShadowSink::default());
        spec.services.commands = sink.clone();
        let state = self.isolate(&mut spec);
        let revision = Arc::new(self.load_as(plugin, source, spec)?);
        admit(plugin, &grants, &revision)?;
        self.grant(plugin, grants);
        same_world(plugin, &stable, &revision)?;
        let name = plugin;
        let mut route = Route::new(
            revision.clone(),
            &stable,
            Split::Shadow,
            Analysis::default(),
        );
        route.sink = Some(sink);
        route.state = Some(state);
        tracing::info!(plugin = %name, shadow = %bosun_host::host::log::short(revision.digest()), "shadow started");
        self.routes.start(name, route);
        self.touch(Resync::Keys);
        Ok(revision)
    }

    /// Ends the shadow or canary of `name` without a judgement (it did not load as
    /// the Plugin asks).
    pub fn drop_route(&self, name: &str) {
        if self.routes.end(name).is_some() {
            self.touch(Resync::Keys);
        }
    }

    /// Promotes the canary (or shadow) of `name`: it becomes the stable revision. Its
    /// permissions are checked again against what the Plugin object grants now; a
    /// canary asking for more is rolled back instead.
    pub fn promote(&self, name: &str, why: &str) -> Result<Arc<Revision>, Error> {
        let canary = self
            .routes
            .route(name)
            .ok_or_else(|| Error::NoCanary(name.to_owned()))?
            .canary;
        if let Some(grants) = self.grants(name)
            && let Err(e) = admit(name, &grants, &canary)
        {
            self.abort_canary(name, &format!("not promoted: {e}"))?;
            return Err(e);
        }
        let route = self
            .routes
            .end(name)
            .ok_or_else(|| Error::NoCanary(name.to_owned()))?;
        tracing::info!(plugin = %name, revision = %bosun_host::host::log::short(route.canary.digest()), "canary promoted: {why}");
        let promoted = if route.sink.is_some() {
            // A shadow's commands went to its sink and its state reflects them: load it
            // again on the real pipe and the plugin's state, with its limits.
            let mut spec = self.spec();
            spec.config = route.canary.config().to_owned();
            spec.limits = route.canary.limits().clone();
            let source = Source {
                origin: route.canary.info().origin.clone(),
                bytes: route.canary.bytes().clone(),
            };
            Arc::new(self.load_as(name, &source, spec)?)
        } else {
            // A canary goes on as it is, on the plugin's state (with what it wrote).
            if let Some(state) = &route.state {
                state.promote();
            }
            route.canary.clone()
        };
        self.registry.adopt(promoted.clone());
        self.judged(name, Judgement::Promote(why.to_owned()));
        self.touch(Resync::Workers);
        Ok(promoted)
    }

    /// Rolls the canary of `name` back: the stable revision serves every key again.
    pub fn abort_canary(&self, name: &str, why: &str) -> Result<(), Error> {
        let route = self
            .routes
            .end(name)
            .ok_or_else(|| Error::NoCanary(name.to_owned()))?;
        tracing::warn!(plugin = %name, revision = %bosun_host::host::log::short(route.canary.digest()), "canary rolled back: {why}");
        self.registry.record_failure(
            name,
            route.canary.digest(),
            &route.canary.info().origin,
            &format!("rolled back: {why}"),
        );
        self.judged(name, Judgement::RollBack(why.to_owned()));
        self.touch(Resync::Keys);
        Ok(())
    }

    /// The canary of `name` and the analysis' latest word on it (or on the last canary).
    pub fn state(&self, name: &str) -> (Option<Route>, Option<Judgement>) {
        (
            self.routes.route(name),
            self.judgements
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(name)
                .cloned(),
        )
    }

    /// Judges every canary once, and promotes or rolls back those whose judgement says so.
    pub fn analyze(&self) {
        for name in self.registry.names() {
            let (Some(route), Some(stable)) =
                (self.routes.route(&name), self.registry.current(&name))
            else {
                continue;
            };
            let judgement = route.judge(&stable);
            let acted = match &judgement {
                Judgement::Promote(why) => self.promote(&name, why).is_ok(),
                Judgement::RollBack(why) => self.abort_canary(&name, why).is_ok(),
                _ => false,
            };
            if !acted {
                self.judged(&name, judgement);
            }
        }
    }

    /// Judges canaries every `period` until the rollouts are dropped.
    pub async fn analysis(rollouts: Weak<Self>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let Some(r) = rollouts.upgrade() else { return };
            r.analyze();
        }
    }
}

/// Whether `revision` may serve as `plugin` under `grants`: its metadata names the
/// plugin and asks for nothing beyond the grants.
fn admit(plugin: &str, grants: &Grants, revision: &Revision) -> Result<(), Error> {
    if revision.name() != plugin {
        return Err(Error::NameMismatch {
            plugin: plugin.to_owned(),
            component: revision.name().to_owned(),
        });
    }
    let missing = grants.missing(&revision.metadata().permissions);
    if !missing.is_empty() {
        return Err(Error::NotGranted {
            plugin: plugin.to_owned(),
            missing,
        });
    }
    Ok(())
}

fn same_world(name: &str, stable: &Revision, new: &Revision) -> Result<(), Error> {
    if stable.info().world != new.info().world {
        return Err(Error::World {
            plugin: name.to_owned(),
            stable: stable.info().world,
            canary: new.info().world,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_api::plugin::Permission;
    use bosun_host::{Engine, Services};

    fn rollouts() -> Rollouts {
        let engine = Engine::new(&bosun_host::engine::Config::default()).expect("engine");
        Rollouts::new(
            Arc::new(Registry::new(engine)),
            Arc::new(Routes::default()),
            Spec::new(Services::offline()),
            Box::new(|_| {}),
        )
    }

    fn source(path: &str, tag: &[u8]) -> Source {
        let mut bytes = std::fs::read(path).expect("artifact");
        // A custom section: other bytes, another digest, the same plugin.
        bytes.extend_from_slice(&[0, 2 + tag.len() as u8, 1, b't']);
        bytes.extend_from_slice(tag);
        Source {
            origin: path.to_owned(),
            bytes: bytes.into(),
        }
    }

    /// What the hostile test plugin asks for.
    fn hostile_grants() -> Grants {
        Grants::new(&[Permission {
            api_version: "v1".into(),
            kind: "Pod".into(),
            verbs: vec![
                "read".into(),
                "patch".into(),
                "delete".into(),
                "pod-command".into(),
            ],
        }])
    }

    fn install(r: &Rollouts, src: &Source) -> Arc<Revision> {
        let revision =
            Arc::new(Revision::load(r.registry().engine(), src, r.spec()).expect("load"));
        r.adopt(revision.clone());
        revision
    }

    fn candidate(r: &Rollouts, src: &Source) -> Candidate {
        let mut spec = r.spec();
        let state = r.isolate(&mut spec);
        let revision = Arc::new(Revision::load(r.registry().engine(), src, spec).expect("load"));
        Candidate { revision, state }
    }

    #[test]
    fn a_revision_of_another_plugin_attaches_to_nothing() {
        let r = rollouts();
        let hostile = install(&r, &source(bosun_test_artifacts::HOSTILE, b"v1"));
        install(&r, &source(bosun_test_artifacts::PINGER, b"v1"));
        // The Plugin `pinger` brings a component named `hostile`, as a canary ...
        let evil = source(bosun_test_artifacts::HOSTILE, b"evil");
        let e = r
            .start_canary(
                "pinger",
                hostile_grants(),
                candidate(&r, &evil),
                Split::Share(50),
                Analysis::default(),
            )
            .expect_err("another plugin");
        assert!(
            matches!(&e, Error::NameMismatch { plugin, component } if plugin == "pinger" && component == "hostile"),
            "{e}"
        );
        // ... and as a shadow.
        let e = r
            .shadow("pinger", hostile_grants(), &evil, r.spec())
            .expect_err("another plugin");
        assert!(matches!(e, Error::NameMismatch { .. }), "{e}");
        assert!(r.routes().route("hostile").is_none());
        assert!(r.routes().route("pinger").is_none());
        assert_eq!(
            r.registry()
                .current("hostile")
                .map(|c| c.digest().to_owned()),
            Some(hostile.digest().to_owned())
        );
    }

    #[test]
    fn a_revision_asking_beyond_its_grants_is_not_attached_nor_promoted() {
        let r = rollouts();
        install(&r, &source(bosun_test_artifacts::HOSTILE, b"v1"));
        let v2 = source(bosun_test_artifacts::HOSTILE, b"v2");
        let read_only = Grants::new(&[Permission {
            api_version: "v1".into(),
            kind: "Pod".into(),
            verbs: vec!["read".into()],
        }]);
        for e in [
            r.start_canary(
                "hostile",
                read_only.clone(),
                candidate(&r, &v2),
                Split::Share(50),
                Analysis::default(),
            )
            .expect_err("canary"),
            r.shadow("hostile", read_only.clone(), &v2, r.spec())
                .expect_err("shadow"),
        ] {
            assert!(
                matches!(&e, Error::NotGranted { missing, .. } if missing.iter().any(|m| m == "patch on v1/Pod")),
                "{e}"
            );
        }
        assert!(r.routes().route("hostile").is_none());
        // Granted when it starts; the grants narrow before it is promoted.
        let canary = candidate(&r, &v2);
        let state = canary.state.clone();
        r.start_canary(
            "hostile",
            hostile_grants(),
            canary,
            Split::Share(50),
            Analysis::default(),
        )
        .expect("canary");
        r.grant("hostile", read_only);
        let e = r
            .promote("hostile", "by hand")
            .expect_err("beyond its grants");
        assert!(matches!(e, Error::NotGranted { .. }), "{e}");
        assert!(r.routes().route("hostile").is_none(), "rolled back");
        assert!(!state.promoted());
        let (_, judgement) = r.state("hostile");
        assert!(
            matches!(&judgement, Some(Judgement::RollBack(why)) if why.contains("not promoted")),
            "{judgement:?}"
        );
        assert_ne!(
            r.registry()
                .current("hostile")
                .map(|c| c.digest().to_owned()),
            Some(bosun_host::load::digest(&v2.bytes))
        );
        // Within its grants, it is promoted and goes on on the plugin's state.
        let canary = candidate(&r, &v2);
        let state = canary.state.clone();
        r.start_canary(
            "hostile",
            hostile_grants(),
            canary,
            Split::Share(50),
            Analysis::default(),
        )
        .expect("canary");
        r.promote("hostile", "by hand").expect("promoted");
        assert!(state.promoted());
        assert_eq!(
            r.registry()
                .current("hostile")
                .map(|c| c.digest().to_owned()),
            Some(bosun_host::load::digest(&v2.bytes))
        );
    }
}
