//! Core controllers that run with or without simulation: the garbage collector (owner
//! references) and the namespace controller (empties, then removes, a deleted namespace).

use crate::meta;
use crate::store::{DeleteOptions, Event, EventKind, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Runs until `stop` flips.
pub(crate) async fn run(store: Arc<Store>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut rx = store.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    // Only deletions can orphan objects and only namespace changes can start a namespace
    // deletion: other events do not need a pass (a pass scans every object).
    let relevant = |e: &Event| e.kind == EventKind::Deleted || e.key == "/namespaces";
    loop {
        reconcile(&store);
        let mut wake = false;
        while !wake {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => wake = true,
                r = rx.recv() => match r {
                    Ok(e) => wake = relevant(&e),
                    Err(RecvError::Lagged(_)) => wake = true,
                    Err(RecvError::Closed) => return,
                },
            }
        }
        // Let a burst of changes land, then reconcile once for all of them.
        tokio::time::sleep(Duration::from_millis(5)).await;
        loop {
            match rx.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
    }
}

/// One pass of both controllers.
pub(crate) fn reconcile(store: &Store) {
    let _span = tracing::trace_span!("bosun.cluster.gc").entered();
    let background = DeleteOptions {
        propagation: Some("Background".into()),
        ..DeleteOptions::default()
    };
    for (key, ns, name) in store.orphans() {
        if let Some(rt) = store.resolve_key(&key) {
            // Already gone is fine: someone else deleted it.
            let _ = store.delete(&rt, &ns, &name, &background);
        }
    }
    let Some(ns_rt) = store.resolve("", "v1", "namespaces") else {
        return;
    };
    for ns in store.all(&ns_rt.storage_key()) {
        if !meta::is_deleting(&ns) {
            continue;
        }
        let name = meta::name(&ns).to_string();
        for (key, obj_name) in store.namespace_contents(&name) {
            if let Some(rt) = store.resolve_key(&key) {
                let _ = store.delete(&rt, &name, &obj_name, &background);
            }
        }
        if let Err(e) = store.finish_namespace(&name) {
            tracing::warn!(namespace = %name, error = %e, "could not remove namespace");
        }
    }
}
