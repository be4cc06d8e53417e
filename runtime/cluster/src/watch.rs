//! Watch streams: newline-delimited JSON `WatchEvent`s from a resource version on; with
//! `Accept: ...;as=Table` each object is sent as a one-row Table, as `kubectl get -w` wants.

use crate::meta;
use crate::resource::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Event, EventKind, WatchStart};
use axum::body::Bytes;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Interval};

/// A deadline that never comes: about 30 years (what tokio uses for "never").
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// What a watch filters on and how long it lasts.
pub(crate) struct Params {
    /// Namespace ("" = all).
    pub namespace: String,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `timeoutSeconds` (or the server's default).
    pub timeout: Duration,
    /// Interval between BOOKMARK events, when `allowWatchBookmarks=true`.
    pub bookmarks: Option<Duration>,
    /// Flips at shutdown.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Send the `k8s.io/initial-events-end` bookmark after the backlog.
    pub initial_events_end: bool,
    /// Send each object as a one-row Table (`kubectl get -w` asks with `as=Table`).
    pub table: bool,
    /// Send length-prefixed protobuf `WatchEvent`s instead of JSON lines.
    pub protobuf: bool,
}

struct State {
    rt: Arc<ResourceType>,
    key: String,
    params: Params,
    backlog: VecDeque<Arc<Event>>,
    live: tokio::sync::broadcast::Receiver<Arc<Event>>,
    deadline: Instant,
    bookmark: Option<Interval>,
    /// Highest resource version this watcher has seen: what a bookmark may promise.
    last_rv: u64,
}

/// The stream of lines a watch response sends.
pub(crate) fn stream(
    rt: Arc<ResourceType>,
    start: WatchStart,
    params: Params,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let now = Instant::now();
    let state = State {
        key: rt.storage_key(),
        rt,
        backlog: start.backlog.into(),
        live: start.live,
        // `timeoutSeconds` comes from the client: a deadline past what `Instant` holds
        // means "no deadline", i.e. far in the future.
        deadline: now
            .checked_add(params.timeout)
            .unwrap_or_else(|| now + FAR_FUTURE),
        bookmark: params
            .bookmarks
            .map(|d| tokio::time::interval_at(now + d, d)),
        last_rv: start.rv,
        params,
    };
    futures::stream::unfold(state, |mut st| async move {
        let line = next_line(&mut st).await?;
        Some((Ok(line), st))
    })
}

async fn next_line(st: &mut State) -> Option<Bytes> {
    while let Some(e) = st.backlog.pop_front() {
        if let Some(line) = render(st, &e) {
            return Some(line);
        }
    }
    if st.params.initial_events_end {
        st.params.initial_events_end = false;
        return Some(frame(st, "BOOKMARK", &bookmark(st, true)));
    }
    enum Next {
        End,
        Bookmark,
        Event(Arc<Event>),
    }
    loop {
        let bm = &mut st.bookmark;
        let tick = async move {
            match bm {
                Some(i) => {
                    i.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let next = tokio::select! {
            () = tokio::time::sleep_until(st.deadline) => Next::End,
            _ = st.params.stop.wait_for(|s| *s) => Next::End,
            () = tick => Next::Bookmark,
            r = st.live.recv() => match r {
                Ok(e) => Next::Event(e),
                // A watcher too slow to keep up is closed; the client re-watches from its
                // last version, or relists on 410.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => Next::End,
            }
        };
        match next {
            Next::End => return None,
            Next::Bookmark => return Some(frame(st, "BOOKMARK", &bookmark(st, false))),
            Next::Event(e) => {
                st.last_rv = st.last_rv.max(e.rv);
                if let Some(line) = render(st, &e) {
                    return Some(line);
                }
            }
        }
    }
}

fn render(st: &State, e: &Event) -> Option<Bytes> {
    if e.key != st.key {
        return None;
    }
    let matches = |obj: &Value| {
        (st.params.namespace.is_empty() || meta::namespace(obj) == st.params.namespace)
            && st.params.labels.matches(obj)
            && st.params.fields.matches(obj)
    };
    let now = matches(&e.object);
    let before = e.previous.as_deref().map(matches);
    // As the real watch cache: an object entering the selection is ADDED, one leaving it
    // is DELETED.
    let kind = match (e.kind, before, now) {
        (EventKind::Modified, Some(false), true) => EventKind::Added,
        (EventKind::Modified, Some(true), false) => EventKind::Deleted,
        (_, _, true) => e.kind,
        _ => return None,
    };
    if !st.rt.custom && !st.params.table {
        // The common case: the stored object as it is, serialized without a copy.
        return Some(frame(st, kind.as_str(), &e.object));
    }
    let mut object = Value::clone(&e.object);
    if st.rt.custom
        && let Some(schema) = &st.rt.schema
    {
        // Pruned and defaulted by the schema, as reads are.
        crate::schema::on_read(&mut object, schema);
    }
    if st.rt.custom
        && let Some(m) = object.as_object_mut()
    {
        m.insert("apiVersion".into(), Value::String(st.rt.api_version()));
    }
    if st.params.table {
        let rv = meta::str_at(&object, "metadata.resourceVersion").to_string();
        object = crate::table::render(&st.rt, &[object], &rv);
    }
    Some(frame(st, kind.as_str(), &object))
}

/// One watch event: a JSON line `{"type":…,"object":…}`, or a protobuf frame.
fn frame(st: &State, kind: &str, object: &Value) -> Bytes {
    if st.params.protobuf {
        return match crate::protobuf::watch_frame(kind, object) {
            Ok(f) => Bytes::from(f),
            Err(e) => {
                // Not expected for a built-in kind; the client relists on the error.
                tracing::warn!(error = %e.0, "a watch event has no protobuf form");
                let status = crate::status::ApiError::internal(e.0).to_status();
                Bytes::from(crate::protobuf::watch_frame("ERROR", &status).unwrap_or_default())
            }
        };
    }
    #[derive(serde::Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a Value,
    }
    let mut s = serde_json::to_string(&Line { kind, object }).unwrap_or_default();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(st: &State, initial_events_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": st.last_rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": st.rt.kind, "apiVersion": st.rt.api_version(), "metadata": metadata})
}
