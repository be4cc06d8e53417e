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
//!
//! [`Rollouts`] is the one place that starts, promotes and rolls back; the dispatcher
//! only reads [`Routes`], and learns of changes through the callback it is given.

pub mod controller;
pub mod folder;
pub mod route;
pub mod shadow;
pub mod source;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bosun_host::load::{Source, Spec};
use bosun_host::{Registry, Revision};
use tokio::sync::watch;

pub use route::{Analysis, Judgement, Rates, Route, Routes, Split, bucket};
pub use shadow::{Difference, ShadowSink};

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

/// Starts, judges, promotes and rolls back new revisions of plugins.
pub struct Rollouts {
    registry: Arc<Registry>,
    routes: Arc<Routes>,
    spec: Spec,
    judgements: Mutex<HashMap<String, Judgement>>,
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
            resync,
            changed: watch::channel(0).0,
        }
    }

    /// The spec new revisions load with (limits, services), with the default config.
    pub fn spec(&self) -> Spec {
        self.spec.clone()
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

    /// Starts a canary of a new revision of an installed plugin: it serves the keys
    /// `split` picks until the analysis promotes it or rolls it back. A plugin not
    /// installed yet is installed directly.
    pub fn canary(
        &self,
        source: &Source,
        config: &str,
        split: Split,
        analysis: Analysis,
    ) -> Result<Arc<Revision>, Error> {
        let mut spec = self.spec();
        spec.config = config.to_owned();
        let revision = Arc::new(Revision::load(self.registry.engine(), source, spec)?);
        self.start_canary(revision, split, analysis)
    }

    /// Starts a canary of a loaded revision (see [`Rollouts::canary`]).
    pub fn start_canary(
        &self,
        revision: Arc<Revision>,
        split: Split,
        analysis: Analysis,
    ) -> Result<Arc<Revision>, Error> {
        let name = revision.name().to_owned();
        let Some(stable) = self.registry.current(&name) else {
            self.adopt(revision.clone());
            return Ok(revision);
        };
        same_world(&name, &stable, &revision)?;
        if stable.digest() == revision.digest() && stable.config() == revision.config() {
            return Ok(stable);
        }
        tracing::info!(plugin = %name, canary = %bosun_host::host::log::short(revision.digest()), split = ?split, "canary started");
        self.routes.start(
            &name,
            Route::new(revision.clone(), &stable, split, analysis),
        );
        // Keys that moved to the canary are looked at by it at once.
        self.touch(Resync::Keys);
        Ok(revision)
    }

    /// Starts a shadow of a new revision: it reconciles every key the stable revision
    /// does, its commands are recorded and compared with stable's, never executed.
    pub fn shadow(&self, source: &Source, config: &str) -> Result<Arc<Revision>, Error> {
        let sink = Arc::new(ShadowSink::default());
        let mut spec = self.spec();
        spec.config = config.to_owned();
        spec.services.commands = sink.clone();
        let revision = Arc::new(Revision::load(self.registry.engine(), source, spec)?);
        let name = revision.name().to_owned();
        let stable = self
            .registry
            .current(&name)
            .ok_or_else(|| Error::NoStable(name.clone()))?;
        same_world(&name, &stable, &revision)?;
        let mut route = Route::new(
            revision.clone(),
            &stable,
            Split::Shadow,
            Analysis::default(),
        );
        route.sink = Some(sink);
        tracing::info!(plugin = %name, shadow = %bosun_host::host::log::short(revision.digest()), "shadow started");
        self.routes.start(&name, route);
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

    /// Promotes the canary (or shadow) of `name`: it becomes the stable revision.
    pub fn promote(&self, name: &str, why: &str) -> Result<Arc<Revision>, Error> {
        let route = self
            .routes
            .end(name)
            .ok_or_else(|| Error::NoCanary(name.to_owned()))?;
        tracing::info!(plugin = %name, revision = %bosun_host::host::log::short(route.canary.digest()), "canary promoted: {why}");
        let promoted = if route.sink.is_some() {
            // A shadow's commands went to its sink: load it again on the real pipe.
            let mut spec = self.spec();
            spec.config = route.canary.config().to_owned();
            let source = Source {
                origin: route.canary.info().origin.clone(),
                bytes: route.canary.bytes().clone(),
            };
            Arc::new(Revision::load(self.registry.engine(), &source, spec)?)
        } else {
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
