//! Object storage with Kubernetes semantics: resource versions, generations, optimistic
//! concurrency, finalizers, namespaces, and a bounded event history for watches.
//!
//! Every object lives in memory; with a data directory every write is also committed to
//! redb before it is answered, so a restart keeps every acknowledged write. One mutex
//! serialises writes: the cluster-wide resource version is a single counter, as in etcd.

use crate::meta;
use crate::resource::{Registry, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Result};
use crate::validate;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

const OBJECTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventKind {
    /// The watch event `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as watches and controllers see it.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Storage key of the resource (`group/plural`).
    pub key: String,
    /// The object after the change (before it, for a deletion, with the new version);
    /// shared with the store.
    pub object: Arc<Value>,
    /// The object before a modification: lets a filtered watch turn "stopped matching"
    /// into DELETED and "started matching" into ADDED.
    pub previous: Option<Arc<Value>>,
    /// The resource version of this change.
    pub rv: u64,
}

/// How to delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Validate only; change nothing.
    pub dry_run: bool,
    /// `Orphan` removes the owner references of dependents instead of letting the garbage
    /// collector delete them; `Background` and `Foreground` both delete them in the background.
    pub propagation: Option<String>,
    /// Precondition on `metadata.uid`.
    pub uid: Option<String>,
    /// Precondition on `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// `gracePeriodSeconds`: 0 removes a pod at once (a force delete); otherwise a pod on
    /// a simulated node that is not Ready stays Terminating (see `pod_grace`).
    pub grace_period_seconds: Option<i64>,
}

/// Where a watch starts.
pub(crate) struct WatchStart {
    /// Events to send before the live ones.
    pub backlog: Vec<Arc<Event>>,
    /// Live events (all resources; the watcher filters).
    pub live: broadcast::Receiver<Arc<Event>>,
    /// The resource version the backlog brings the watcher to.
    pub rv: u64,
}

/// A page of a list.
pub(crate) struct Page {
    pub items: Vec<Value>,
    pub rv: u64,
    pub continue_token: Option<String>,
    pub remaining: usize,
}

struct History {
    events: VecDeque<Arc<Event>>,
    /// Every event of this resource newer than this is in `events`.
    compacted: u64,
}

/// Objects are shared: the internal controllers take snapshots of a whole resource on
/// every pass, which must not deep-copy thousands of objects.
type Objects = BTreeMap<(String, String), Arc<Value>>;

struct Inner {
    rv: u64,
    start_rv: u64,
    objects: HashMap<String, Objects>,
    history: HashMap<String, History>,
    db: Option<Database>,
    closed: bool,
    registry: Registry,
}

/// The object store.
pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Event>>,
    history_limit: usize,
}

fn db_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("storage: {e}"))
}

fn db_key(key: &str, ns: &str, name: &str) -> String {
    format!("{key}\u{0}{ns}\u{0}{name}")
}

impl Store {
    /// Opens the store: in memory when `dir` is `None`, else `dir/cluster.redb`.
    pub fn open(dir: Option<&Path>, history_limit: usize) -> crate::Result<Self> {
        let mut inner = Inner {
            rv: 0,
            start_rv: 0,
            objects: HashMap::new(),
            history: HashMap::new(),
            db: None,
            closed: false,
            registry: Registry::builtin(),
        };
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(|source| crate::Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let path = dir.join("cluster.redb");
            let db = Database::create(&path).map_err(|e| crate::Error::Storage(e.into()))?;
            load(&db, &mut inner).map_err(crate::Error::Storage)?;
            inner.db = Some(db);
        }
        inner.start_rv = inner.rv;
        let (events, _) = broadcast::channel(16 * 1024);
        Ok(Self {
            inner: Mutex::new(inner),
            events,
            history_limit: history_limit.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (writes apply after the
        // commit), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the database: later writes fail with 503, so a new store can open the file.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.db = None;
    }

    /// The served types.
    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    /// The type served at `group/version/plural`.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.lock().registry.get(group, version, plural)
    }

    /// Any served version of a storage key.
    pub fn resolve_key(&self, key: &str) -> Option<Arc<ResourceType>> {
        self.lock().registry.by_storage_key(key)
    }

    /// The current cluster-wide resource version.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Live events of every resource.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// One object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value> {
        let inner = self.lock();
        inner
            .find(rt, ns, name)
            .map(|o| with_version(o, rt))
            .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))
    }

    /// Objects of a resource, in one namespace or all (`ns` empty), filtered.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: &str,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        self.list_page(rt, ns, labels, fields, 0, None)
            .map(|p| p.items)
            .unwrap_or_default()
    }

    /// A page of a list: at most `limit` items (0 = all) after the `continue` token.
    pub(crate) fn list_page(
        &self,
        rt: &ResourceType,
        ns: &str,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: usize,
        cont: Option<&str>,
    ) -> Result<Page> {
        let after = match cont {
            Some(c) if !c.is_empty() => Some(decode_continue(c).ok_or_else(|| {
                ApiError::bad_request("invalid continue token: it was not issued by this server")
            })?),
            _ => None,
        };
        let inner = self.lock();
        let mut items = Vec::new();
        let (mut next, mut remaining) = (None, 0);
        if let Some(objs) = inner.objects.get(&rt.storage_key()) {
            for ((ons, oname), obj) in objs {
                if !ns.is_empty() && ons != ns {
                    continue;
                }
                if let Some((ans, aname)) = &after
                    && (ons, oname) <= (ans, aname)
                {
                    continue;
                }
                if !labels.matches(obj) || !fields.matches(obj) {
                    continue;
                }
                if limit > 0 && items.len() >= limit {
                    remaining += 1;
                    continue;
                }
                if limit > 0 && items.len() + 1 == limit {
                    next = Some(encode_continue(ons, oname));
                }
                items.push(with_version(obj, rt));
            }
        }
        Ok(Page {
            items,
            rv: inner.rv,
            continue_token: if remaining > 0 { next } else { None },
            remaining,
        })
    }

    /// Calls `f` with every object of a resource in one namespace (or all, `ns` empty),
    /// without copying them: for observers in the same process (benchmarks) that must not
    /// load the server with lists. `f` runs under the store's lock: keep it short.
    pub fn for_each(&self, rt: &ResourceType, ns: &str, mut f: impl FnMut(&Value)) {
        let inner = self.lock();
        for ((ons, _), obj) in inner.objects.get(&rt.storage_key()).into_iter().flatten() {
            if ns.is_empty() || ons == ns {
                f(obj);
            }
        }
    }

    /// Creates an object; `ns` is the namespace from the URL ("" for cluster-scoped).
    pub fn create(&self, rt: &ResourceType, ns: &str, obj: Value, dry_run: bool) -> Result<Value> {
        let mut inner = self.lock();
        inner.create(self, rt, ns, obj, dry_run)
    }

    /// Stores an object a dry-run [`Store::create`] prepared (and admission accepted),
    /// keeping the uid and creation time it was shown with.
    pub(crate) fn create_prepared(&self, rt: &ResourceType, ns: &str, obj: Value) -> Result<Value> {
        let mut inner = self.lock();
        inner.create_with(self, rt, ns, obj, false, true)
    }

    /// Replaces an object (or only its status when `status_only`).
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        obj: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Value> {
        let mut inner = self.lock();
        inner.update(self, rt, ns, name, obj, status_only, dry_run)
    }

    /// Reads the object, lets `f` change it, and writes the result, atomically.
    /// `f` gets `None` when the object does not exist (server-side apply creates then).
    pub fn mutate(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        status_only: bool,
        dry_run: bool,
        f: impl FnOnce(Option<&Value>) -> Result<Value>,
    ) -> Result<Value> {
        let mut inner = self.lock();
        match inner.find(rt, ns, name).cloned() {
            Some(current) => {
                let new = f(Some(&with_version(&current, rt)))?;
                inner.update(self, rt, ns, name, new, status_only, dry_run)
            }
            None => {
                let new = f(None)?;
                inner.create(self, rt, ns, new, dry_run)
            }
        }
    }

    /// Deletes an object (or marks it for deletion while finalizers remain).
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value> {
        let mut inner = self.lock();
        inner.delete(self, rt, ns, name, opts)
    }

    /// Removes a terminating namespace once it is empty; returns whether it is gone.
    pub(crate) fn finish_namespace(&self, name: &str) -> Result<bool> {
        let mut inner = self.lock();
        let ns_key = "/namespaces";
        let Some(ns_obj) = inner.get_obj(ns_key, "", name).cloned() else {
            return Ok(true);
        };
        let empty = inner
            .objects
            .iter()
            .all(|(_, objs)| !objs.keys().any(|(ons, _)| ons == name));
        if !empty {
            return Ok(false);
        }
        inner.remove(self, ns_key, "", name, ns_obj)?;
        Ok(true)
    }

    /// Names of objects in a namespace, per storage key.
    pub(crate) fn namespace_contents(&self, ns: &str) -> Vec<(String, String)> {
        let inner = self.lock();
        inner
            .objects
            .iter()
            .flat_map(|(key, objs)| {
                objs.keys()
                    .filter(|(ons, _)| ons == ns)
                    .map(move |(_, name)| (key.clone(), name.clone()))
            })
            .collect()
    }

    /// Every object of a storage key (internal controllers).
    pub(crate) fn all(&self, key: &str) -> Vec<Arc<Value>> {
        let inner = self.lock();
        inner
            .objects
            .get(key)
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Objects whose owners are all gone: `(storage key, namespace, name)`.
    pub(crate) fn orphans(&self) -> Vec<(String, String, String)> {
        let inner = self.lock();
        let uids: HashSet<&str> = inner
            .objects
            .values()
            .flat_map(|o| o.values().map(|v| meta::uid_of(v)))
            .collect();
        let mut out = Vec::new();
        for (key, objs) in &inner.objects {
            for ((ns, name), obj) in objs {
                let mut owners = meta::owner_uid_refs(obj).peekable();
                if owners.peek().is_some()
                    && owners.all(|u| !uids.contains(u))
                    && !meta::is_deleting(obj)
                {
                    out.push((key.clone(), ns.clone(), name.clone()));
                }
            }
        }
        out
    }

    /// Prepares a watch of one resource from `from` (None: the current state as ADDED).
    pub(crate) fn watch(
        &self,
        rt: &ResourceType,
        ns: &str,
        from: Option<u64>,
    ) -> Result<WatchStart> {
        let inner = self.lock();
        let live = self.events.subscribe();
        let key = rt.storage_key();
        let backlog = match from {
            None | Some(0) => inner
                .objects
                .get(&key)
                .into_iter()
                .flat_map(|o| o.iter())
                .filter(|((ons, _), _)| ns.is_empty() || ons == ns)
                .map(|(_, obj)| {
                    Arc::new(Event {
                        kind: EventKind::Added,
                        key: key.clone(),
                        object: obj.clone(),
                        previous: None,
                        rv: meta::resource_version(obj).unwrap_or(0),
                    })
                })
                .collect(),
            Some(rv) => {
                let compacted = inner
                    .history
                    .get(&key)
                    .map_or(inner.start_rv, |h| h.compacted);
                if rv < compacted {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {rv} ({compacted})"
                    )));
                }
                inner
                    .history
                    .get(&key)
                    .into_iter()
                    .flat_map(|h| h.events.iter())
                    .filter(|e| e.rv > rv)
                    .cloned()
                    .collect()
            }
        };
        Ok(WatchStart {
            backlog,
            live,
            rv: inner.rv,
        })
    }

    fn record(&self, inner: &mut Inner, event: Event) {
        let event = Arc::new(event);
        let start = inner.start_rv;
        let h = inner
            .history
            .entry(event.key.clone())
            .or_insert_with(|| History {
                events: VecDeque::new(),
                compacted: start,
            });
        h.events.push_back(event.clone());
        while h.events.len() > self.history_limit {
            if let Some(old) = h.events.pop_front() {
                h.compacted = old.rv;
            }
        }
        // No receiver is fine: nobody watches.
        let _ = self.events.send(event);
    }
}

/// Sets `apiVersion` to the version asked for (all versions share one stored form); a
/// custom resource is pruned and defaulted by its current schema, as upstream decodes
/// what it reads from storage.
fn with_version(obj: &Value, rt: &ResourceType) -> Value {
    let mut o = obj.clone();
    if rt.custom
        && let Some(schema) = &rt.schema
    {
        crate::schema::on_read(&mut o, schema);
    }
    if rt.custom
        && let Some(m) = o.as_object_mut()
    {
        m.insert("apiVersion".into(), Value::String(rt.api_version()));
    }
    o
}

fn load(db: &Database, inner: &mut Inner) -> std::result::Result<(), redb::Error> {
    // Create the tables on first start so reads below find them.
    let w = db.begin_write()?;
    {
        w.open_table(OBJECTS)?;
        w.open_table(META)?;
    }
    w.commit()?;
    let r = db.begin_read()?;
    inner.rv = r
        .open_table(META)?
        .get("rv")?
        .map(|v| v.value())
        .unwrap_or(0);
    for row in r.open_table(OBJECTS)?.iter()? {
        let (k, v) = row?;
        let mut parts = k.value().splitn(3, '\u{0}');
        let (Some(key), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(obj) = serde_json::from_slice::<Value>(v.value()) else {
            tracing::warn!(key = k.value(), "skipping an unreadable stored object");
            continue;
        };
        if key == "apiextensions.k8s.io/customresourcedefinitions" {
            inner.registry.add_crd(&obj);
        }
        inner
            .objects
            .entry(key.to_string())
            .or_default()
            .insert((ns.to_string(), name.to_string()), Arc::new(obj));
    }
    Ok(())
}

fn encode_continue(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<(String, String)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let s = String::from_utf8(bytes?).ok()?;
    let (ns, name) = s.split_once('/')?;
    Some((ns.to_string(), name.to_string()))
}

/// Whether everything but metadata and status (what `generation` counts) is equal.
fn same_spec(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let counted = |(k, _): &(&String, &Value)| k.as_str() != "metadata" && k.as_str() != "status";
    a.iter().filter(counted).eq(b.iter().filter(counted))
}

impl Inner {
    fn find(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        let ns = if rt.namespaced { ns } else { "" };
        self.get_obj(&rt.storage_key(), ns, name)
    }

    /// The stored object, shared.
    fn get_arc(&self, key: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    fn get_obj(&self, key: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
            .map(|o| &**o)
    }

    /// Commits one write to disk (if persistent), then applies it in memory.
    fn persist(&mut self, key: &str, ns: &str, name: &str, obj: Option<&Arc<Value>>) -> Result<()> {
        if self.closed {
            return Err(ApiError::unavailable("the cluster is shutting down"));
        }
        if let Some(db) = &self.db {
            let mut w = db.begin_write().map_err(db_err)?;
            // Acknowledged writes must survive a crash of the process: fsync on commit.
            w.set_durability(redb::Durability::Immediate)
                .map_err(db_err)?;
            {
                let mut t = w.open_table(OBJECTS).map_err(db_err)?;
                let k = db_key(key, ns, name);
                match obj {
                    Some(o) => {
                        let bytes = serde_json::to_vec(&**o).map_err(db_err)?;
                        t.insert(k.as_str(), bytes.as_slice()).map_err(db_err)?;
                    }
                    None => {
                        t.remove(k.as_str()).map_err(db_err)?;
                    }
                }
                let mut m = w.open_table(META).map_err(db_err)?;
                m.insert("rv", self.rv + 1).map_err(db_err)?;
            }
            w.commit().map_err(db_err)?;
        }
        self.rv += 1;
        let objs = self.objects.entry(key.to_string()).or_default();
        let k = (ns.to_string(), name.to_string());
        match obj {
            Some(o) => {
                objs.insert(k, o.clone());
            }
            None => {
                objs.remove(&k);
            }
        }
        Ok(())
    }

    fn put(
        &mut self,
        store: &Store,
        key: &str,
        ns: &str,
        name: &str,
        mut obj: Value,
        kind: EventKind,
    ) -> Result<Arc<Value>> {
        meta::metadata_mut(&mut obj).insert(
            "resourceVersion".into(),
            Value::String((self.rv + 1).to_string()),
        );
        let previous = match kind {
            EventKind::Modified => self.get_arc(key, ns, name),
            _ => None,
        };
        let obj = Arc::new(obj);
        self.persist(key, ns, name, Some(&obj))?;
        store.record(
            self,
            Event {
                kind,
                key: key.to_string(),
                object: obj.clone(),
                previous,
                rv: self.rv,
            },
        );
        Ok(obj)
    }

    fn remove(
        &mut self,
        store: &Store,
        key: &str,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Arc<Value>> {
        self.persist(key, ns, name, None)?;
        meta::metadata_mut(&mut obj)
            .insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        if key == "apiextensions.k8s.io/customresourcedefinitions" {
            self.registry.remove_crd(&obj);
        }
        let obj = Arc::new(obj);
        store.record(
            self,
            Event {
                kind: EventKind::Deleted,
                key: key.to_string(),
                object: obj.clone(),
                previous: None,
                rv: self.rv,
            },
        );
        Ok(obj)
    }

    fn create(
        &mut self,
        store: &Store,
        rt: &ResourceType,
        ns: &str,
        obj: Value,
        dry_run: bool,
    ) -> Result<Value> {
        self.create_with(store, rt, ns, obj, dry_run, false)
    }

    /// `keep_identity`: an object prepared by a dry run keeps its uid and creation time.
    fn create_with(
        &mut self,
        store: &Store,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
        keep_identity: bool,
    ) -> Result<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        check_type(&mut obj, rt)?;
        let m = meta::metadata_mut(&mut obj);
        let mut name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let prefix = m.get("generateName").and_then(Value::as_str).unwrap_or("");
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &rt.kind,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            name = format!("{prefix}{}", meta::random_suffix());
        }
        let body_ns = m
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ns = if rt.namespaced {
            if !body_ns.is_empty() && !ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
                )));
            }
            let ns = if ns.is_empty() {
                body_ns
            } else {
                ns.to_string()
            };
            if ns.is_empty() {
                return Err(ApiError::bad_request("a namespace is required"));
            }
            match self.get_obj("/namespaces", "", &ns) {
                None => return Err(ApiError::not_found("namespaces", &ns)),
                Some(n) if meta::is_deleting(n) => {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        rt.qualified()
                    )));
                }
                Some(_) => {}
            }
            m.insert("namespace".into(), Value::String(ns.clone()));
            ns
        } else {
            m.remove("namespace");
            String::new()
        };
        m.insert("name".into(), Value::String(name.clone()));
        if !(keep_identity && m.get("uid").is_some_and(Value::is_string)) {
            m.insert("uid".into(), Value::String(meta::uid()));
            m.insert("creationTimestamp".into(), Value::String(meta::now()));
        }
        m.insert("generation".into(), json!(1));
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(k);
        }
        validate::name(rt, &name)?;
        validate::prepare_create(rt, &mut obj)?;
        crate::admission::config::prepare(rt, &mut obj)?;
        label_namespace_name(rt, &mut obj);
        let key = rt.storage_key();
        if self.get_obj(&key, &ns, &name).is_some() {
            return Err(ApiError::already_exists(&rt.qualified(), &name));
        }
        if dry_run {
            return Ok(obj);
        }
        let out = self.put(store, &key, &ns, &name, obj, EventKind::Added)?;
        if key == "apiextensions.k8s.io/customresourcedefinitions" {
            self.registry.add_crd(&out);
        }
        Ok(with_version(&out, rt))
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "internal; mirrors the public update"
    )]
    fn update(
        &mut self,
        store: &Store,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        new: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Value> {
        if !new.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let mut new = new;
        check_type(&mut new, rt)?;
        let ns = if rt.namespaced { ns } else { "" };
        let key = rt.storage_key();
        let old = self
            .get_arc(&key, ns, name)
            .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))?;
        let body_name = meta::name(&new);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta::namespace(&new);
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
            )));
        }
        let want_rv = meta::str_at(&new, "metadata.resourceVersion");
        let have_rv = meta::str_at(&old, "metadata.resourceVersion");
        if !want_rv.is_empty() && want_rv != have_rv {
            return Err(ApiError::conflict(
                &rt.qualified(),
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let mut obj = if status_only {
            // Only the status moves through /status; everything else stays as stored.
            let mut o = Value::clone(&old);
            if let Some(m) = o.as_object_mut() {
                match new.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            o
        } else {
            let mut o = new;
            if rt.status
                && let Some(m) = o.as_object_mut()
            {
                match old.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            o
        };
        // System-owned metadata never changes through an update.
        let old_meta = old.get("metadata").unwrap_or(&Value::Null);
        let m = meta::metadata_mut(&mut obj);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "name",
            "namespace",
            "resourceVersion",
        ] {
            match old_meta.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
        if !m.contains_key("managedFields")
            && let Some(mf) = old_meta.get("managedFields")
        {
            m.insert("managedFields".into(), mf.clone());
        }
        // Ratcheting compares with the old object as a read shows it.
        let old_read = with_version(&old, rt);
        if !status_only {
            validate::prepare_update(rt, &mut obj, Some(&old_read))?;
            crate::admission::config::prepare(rt, &mut obj)?;
            label_namespace_name(rt, &mut obj);
        } else {
            validate::prepare_status(rt, &mut obj, &old_read)?;
        }
        if !same_spec(&obj, &old) {
            let g = meta::path(&old, "metadata.generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta::metadata_mut(&mut obj).insert("generation".into(), json!(g.saturating_add(1)));
        }
        if obj == *old {
            // A no-op write does not bump the resource version (as the real server).
            return Ok(with_version(&obj, rt));
        }
        if dry_run {
            return Ok(with_version(&obj, rt));
        }
        // A pod in its grace period (deletionGracePeriodSeconds > 0) stays until a
        // kubelet or a force delete ends it, whatever is written to it meanwhile.
        if meta::is_deleting(&obj) && meta::finalizers(&obj).is_empty() && !in_grace(&old) {
            let out = self.remove(store, &key, ns, name, obj)?;
            return Ok(with_version(&out, rt));
        }
        let out = self.put(store, &key, ns, name, obj, EventKind::Modified)?;
        if key == "apiextensions.k8s.io/customresourcedefinitions" {
            self.registry.add_crd(&out);
        }
        Ok(with_version(&out, rt))
    }

    fn delete(
        &mut self,
        store: &Store,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value> {
        let ns = if rt.namespaced { ns } else { "" };
        let key = rt.storage_key();
        let mut obj = self
            .get_obj(&key, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))?;
        if let Some(uid) = &opts.uid
            && uid != meta::uid_of(&obj)
        {
            return Err(ApiError::conflict(
                &rt.qualified(),
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid_of(&obj)
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && rv != meta::str_at(&obj, "metadata.resourceVersion")
        {
            return Err(ApiError::conflict(
                &rt.qualified(),
                name,
                "Precondition failed: the resource version does not match",
            ));
        }
        if opts.dry_run {
            return Ok(with_version(&obj, rt));
        }
        if key == "/pods"
            && let Some(grace) = pod_grace(self, &obj, opts)
        {
            let out = self.terminate_pod(store, &key, ns, name, obj, grace)?;
            return Ok(with_version(&out, rt));
        }
        let is_namespace = key == "/namespaces";
        if is_namespace || !meta::finalizers(&obj).is_empty() {
            if meta::is_deleting(&obj) {
                if !(in_grace(&obj) && opts.grace_period_seconds == Some(0)) {
                    return Ok(with_version(&obj, rt));
                }
                // A force delete of a Terminating pod with finalizers: it goes once they do.
                meta::metadata_mut(&mut obj).insert("deletionGracePeriodSeconds".into(), json!(0));
                let out = self.put(store, &key, ns, name, obj, EventKind::Modified)?;
                return Ok(with_version(&out, rt));
            }
            let m = meta::metadata_mut(&mut obj);
            m.insert("deletionTimestamp".into(), Value::String(meta::now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            if is_namespace {
                // The namespace controller empties it, then removes it.
                meta::object_mut(&mut obj, "status")
                    .insert("phase".into(), Value::String("Terminating".into()));
            }
            let out = self.put(store, &key, ns, name, obj, EventKind::Modified)?;
            return Ok(with_version(&out, rt));
        }
        if opts.propagation.as_deref() == Some("Orphan") {
            self.orphan_dependents(store, meta::uid_of(&obj).to_string())?;
        }
        let out = self.remove(store, &key, ns, name, obj)?;
        if key == "apiextensions.k8s.io/customresourcedefinitions" {
            // Deleting a definition deletes its objects.
            let ckey = format!(
                "{}/{}",
                meta::str_at(&out, "spec.group"),
                meta::str_at(&out, "spec.names.plural")
            );
            let names: Vec<(String, String)> = self
                .objects
                .get(&ckey)
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            for (cns, cname) in names {
                if let Some(o) = self.get_obj(&ckey, &cns, &cname).cloned() {
                    self.remove(store, &ckey, &cns, &cname, o)?;
                }
            }
        }
        Ok(with_version(&out, rt))
    }

    /// A graceful pod delete no kubelet confirms: the pod is marked Terminating
    /// (`deletionTimestamp`, `deletionGracePeriodSeconds`) and stays. Deleting it again
    /// keeps it as it is.
    fn terminate_pod(
        &mut self,
        store: &Store,
        key: &str,
        ns: &str,
        name: &str,
        mut obj: Value,
        grace: i64,
    ) -> Result<Arc<Value>> {
        if meta::is_deleting(&obj) {
            return Ok(Arc::new(obj));
        }
        let m = meta::metadata_mut(&mut obj);
        m.insert("deletionTimestamp".into(), Value::String(meta::now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        self.put(store, key, ns, name, obj, EventKind::Modified)
    }

    fn orphan_dependents(&mut self, store: &Store, uid: String) -> Result<()> {
        let mut deps = Vec::new();
        for (key, objs) in &self.objects {
            for ((ns, name), obj) in objs {
                if meta::owner_uid_refs(obj).any(|u| u == uid) {
                    deps.push((key.clone(), ns.clone(), name.clone(), Value::clone(obj)));
                }
            }
        }
        for (key, ns, name, mut obj) in deps {
            if let Some(refs) = meta::metadata_mut(&mut obj)
                .get_mut("ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
            }
            self.put(store, &key, &ns, &name, obj, EventKind::Modified)?;
        }
        Ok(())
    }
}

/// kube-apiserver labels every namespace with its name, on create and update
/// (`kubernetes.io/metadata.name`): webhooks' namespace selectors rely on it.
fn label_namespace_name(rt: &ResourceType, obj: &mut Value) {
    if !(rt.group.is_empty() && rt.plural == "namespaces") {
        return;
    }
    let name = meta::name(obj).to_string();
    let labels = meta::metadata_mut(obj)
        .entry("labels")
        .or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    labels["kubernetes.io/metadata.name"] = Value::String(name);
}

/// Rejects a body whose `apiVersion`/`kind` name another type; fills them in when missing.
fn check_type(obj: &mut Value, rt: &ResourceType) -> Result<()> {
    check_type_names(obj, rt)?;
    if let Some(m) = obj.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| Value::String(rt.api_version()));
        m.entry("kind")
            .or_insert_with(|| Value::String(rt.kind.clone()));
    }
    Ok(())
}

fn check_type_names(obj: &Value, rt: &ResourceType) -> Result<()> {
    let kind = meta::str_at(obj, "kind");
    let api_version = meta::str_at(obj, "apiVersion");
    if (!kind.is_empty() && kind != rt.kind)
        || (!api_version.is_empty()
            && api_version != rt.api_version()
            && !(rt.custom && api_version.starts_with(&format!("{}/", rt.group))))
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) or kind ({kind}) does not match the expected {}, Kind={}",
            rt.api_version(),
            rt.kind
        )));
    }
    Ok(())
}

/// Whether a Terminating object is still in its grace period: a pod deleted gracefully
/// whose kubelet has not confirmed it (`deletionGracePeriodSeconds` > 0).
fn in_grace(obj: &Value) -> bool {
    meta::path(obj, "metadata.deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g > 0)
}

/// The grace period of a pod delete that must wait for a kubelet, or `None` when the pod
/// goes now. A bound, running pod on a simulated node that is not Ready has no kubelet to
/// confirm its end (kube-apiserver waits for the kubelet's final delete): it stays
/// Terminating until its node is Ready again or the node lifecycle step force-deletes it
/// (`node.kubernetes.io/out-of-service`). Elsewhere, the simulated kubelet confirms at
/// once, so the pod goes now, as before. `gracePeriodSeconds=0` always goes now (a force
/// delete), and so does a pod already Terminating deleted again with 0.
fn pod_grace(inner: &Inner, pod: &Value, opts: &DeleteOptions) -> Option<i64> {
    if opts.grace_period_seconds == Some(0) {
        return None;
    }
    if meta::is_deleting(pod) {
        return in_grace(pod).then_some(0);
    }
    let node = meta::str_at(pod, "spec.nodeName");
    if node.is_empty() || matches!(meta::str_at(pod, "status.phase"), "Succeeded" | "Failed") {
        return None;
    }
    let node = inner.get_obj("/nodes", "", node)?;
    let simulated = meta::path(node, "metadata.labels")
        .and_then(|l| l.get("bosun.dev/simulated"))
        .is_some();
    let ready = meta::path(node, "status.conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| meta::str_at(c, "type") == "Ready" && meta::str_at(c, "status") == "True")
        });
    if !simulated || ready {
        return None;
    }
    let grace = opts
        .grace_period_seconds
        .or_else(|| meta::path(pod, "spec.terminationGracePeriodSeconds").and_then(Value::as_i64))
        .unwrap_or(30);
    Some(grace.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let s = Store::open(None, 100).expect("opens");
        let ns = s.resolve("", "v1", "namespaces").expect("builtin");
        s.create(&ns, "", json!({"metadata": {"name": "default"}}), false)
            .expect("creates namespace");
        s
    }

    fn cm(s: &Store) -> Arc<ResourceType> {
        s.resolve("", "v1", "configmaps").expect("builtin")
    }

    #[test]
    fn versions_increase_and_stale_updates_conflict() {
        let s = store();
        let rt = cm(&s);
        let a = s
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "a"}, "data": {"k": "1"}}),
                false,
            )
            .expect("creates");
        let rv1 = meta::resource_version(&a).expect("rv");
        assert_eq!(a["kind"], "ConfigMap", "filled in when the body has none");
        assert_eq!(a["apiVersion"], "v1");
        let mut b = a.clone();
        b["data"]["k"] = json!("2");
        let b = s
            .update(&rt, "default", "a", b, false, false)
            .expect("updates");
        assert!(meta::resource_version(&b).expect("rv") > rv1);
        let mut stale = a;
        stale["data"]["k"] = json!("3");
        let err = s
            .update(&rt, "default", "a", stale, false, false)
            .expect_err("stale");
        assert_eq!(err.code, 409);
    }

    #[test]
    fn finalizers_delay_deletion() {
        let s = store();
        let rt = cm(&s);
        s.create(
            &rt,
            "default",
            json!({"metadata": {"name": "f", "finalizers": ["x/y"]}}),
            false,
        )
        .expect("creates");
        let marked = s
            .delete(&rt, "default", "f", &DeleteOptions::default())
            .expect("marks");
        assert!(meta::is_deleting(&marked));
        assert!(s.get(&rt, "default", "f").is_ok());
        let mut o = s.get(&rt, "default", "f").expect("still there");
        o["metadata"]["finalizers"] = json!([]);
        s.update(&rt, "default", "f", o, false, false)
            .expect("removes finalizer");
        assert_eq!(s.get(&rt, "default", "f").expect_err("gone").code, 404);
    }

    #[test]
    fn missing_namespace_is_not_found_and_history_is_bounded() {
        let s = Store::open(None, 2).expect("opens");
        let rt = cm(&s);
        let err = s
            .create(&rt, "nope", json!({"metadata": {"name": "a"}}), false)
            .expect_err("no namespace");
        assert_eq!(err.code, 404);
        let ns = s.resolve("", "v1", "namespaces").expect("builtin");
        s.create(&ns, "", json!({"metadata": {"name": "d"}}), false)
            .expect("ns");
        for i in 0..5 {
            s.create(
                &rt,
                "d",
                json!({"metadata": {"name": format!("c{i}")}}),
                false,
            )
            .expect("creates");
        }
        assert_eq!(s.watch(&rt, "", Some(1)).err().map(|e| e.code), Some(410));
        let w = s.watch(&rt, "", Some(s.current_rv() - 1)).expect("recent");
        assert_eq!(w.backlog.len(), 1);
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue("ns", "a-b");
        assert_eq!(decode_continue(&t), Some(("ns".into(), "a-b".into())));
        assert_eq!(decode_continue("zz"), None);
    }
}
