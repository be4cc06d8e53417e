//! Hot reload from a folder: every `NAME.wasm` is plugin NAME (with `NAME.json`, if
//! present, as its config). A file is loaded once it has stopped changing for the
//! settle time, so a half-written file is never loaded; a changed file becomes a new
//! revision and is swapped in; a file that fails to load leaves the previous revision
//! serving; a removed file removes the plugin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::load::{Source, Spec};
use crate::registry::{self, Registry};

/// What a scan did.
#[derive(Debug)]
pub enum Event {
    /// A revision was loaded and is serving.
    Loaded {
        /// The plugin.
        name: String,
        /// Its new digest.
        digest: String,
        /// The file.
        path: PathBuf,
    },
    /// A file failed to load; the previous revision, if any, keeps serving.
    Failed {
        /// The plugin (the file's stem).
        name: String,
        /// The file.
        path: PathBuf,
        /// Why.
        error: registry::Error,
    },
    /// A file was removed, and its plugin with it.
    Removed {
        /// The plugin.
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    config: Option<(u64, Option<SystemTime>)>,
}

#[derive(Debug)]
struct Tracked {
    stamp: Stamp,
    changed_at: Instant,
    loaded: Option<Stamp>,
}

/// Watches one folder. Call [`Folder::scan`] periodically (or [`Folder::spawn`]).
pub struct Folder {
    dir: PathBuf,
    registry: Arc<Registry>,
    spec: Box<dyn Fn(&str) -> Spec + Send>,
    settle: Duration,
    files: BTreeMap<PathBuf, Tracked>,
    /// When the previous scan ran: a file changed since then cannot have been still for
    /// longer, whatever its mtime says (coarse or skewed clocks on network filesystems).
    last_scan: Option<Instant>,
}

impl std::fmt::Debug for Folder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Folder")
            .field("dir", &self.dir)
            .field("settle", &self.settle)
            .finish_non_exhaustive()
    }
}

fn stamp(path: &Path) -> Option<(u64, Option<SystemTime>)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()))
}

impl Folder {
    /// Watches `dir`, loading into `registry` with the spec `spec(name)` gives
    /// (its `config` is replaced by `NAME.json` when that file exists).
    pub fn new(
        dir: impl Into<PathBuf>,
        registry: Arc<Registry>,
        settle: Duration,
        spec: impl Fn(&str) -> Spec + Send + 'static,
    ) -> Self {
        Folder {
            dir: dir.into(),
            registry,
            spec: Box::new(spec),
            settle,
            files: BTreeMap::new(),
            last_scan: None,
        }
    }

    /// Looks at the folder once and loads, reloads or removes what has settled.
    pub fn scan(&mut self) -> Vec<Event> {
        let _span = tracing::debug_span!("bosun.host.watch", dir = %self.dir.display()).entered();
        let now = Instant::now();
        let mut events = Vec::new();
        let mut present = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the plugins folder");
                return events;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
                continue;
            }
            let Some((len, modified)) = stamp(&path) else {
                continue;
            };
            let stamp = Stamp {
                len,
                modified,
                config: stamp(&path.with_extension("json")),
            };
            present.push(path.clone());
            let tracked = self.files.entry(path).or_insert_with(|| {
                // A file already older than the settle time is complete: load it now.
                let age = stamp
                    .modified
                    .and_then(|m| m.elapsed().ok())
                    .unwrap_or_default();
                let changed_at = if age >= self.settle {
                    now.checked_sub(self.settle).unwrap_or(now)
                } else {
                    now
                };
                Tracked {
                    stamp: stamp.clone(),
                    changed_at,
                    loaded: None,
                }
            });
            if tracked.stamp != stamp {
                // The file has been still since its last write, not since this scan saw
                // it: count the settle time from its mtime (never from the future), so a
                // scan's interval does not add to the time before it loads.
                let still_for = stamp
                    .modified
                    .and_then(|m| m.elapsed().ok())
                    .unwrap_or_default()
                    .min(self.settle)
                    .min(self.last_scan.map_or(Duration::ZERO, |at| now - at));
                tracked.stamp = stamp;
                tracked.changed_at = now.checked_sub(still_for).unwrap_or(now);
            }
        }
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !present.contains(p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(Tracked {
                loaded: Some(_), ..
            }) = self.files.remove(&path)
            {
                let name = file_name(&path);
                self.registry.remove(&name);
                tracing::info!(plugin = %name, "plugin file removed; plugin stopped");
                events.push(Event::Removed { name });
            }
        }
        for (path, tracked) in &mut self.files {
            let settled = now.duration_since(tracked.changed_at) >= self.settle;
            if !settled || tracked.loaded.as_ref() == Some(&tracked.stamp) {
                continue;
            }
            tracked.loaded = Some(tracked.stamp.clone());
            let name = file_name(path);
            match load(&self.registry, path, &name, &self.spec) {
                Ok(digest) => events.push(Event::Loaded {
                    name,
                    digest,
                    path: path.clone(),
                }),
                Err(error) => events.push(Event::Failed {
                    name,
                    path: path.clone(),
                    error,
                }),
            }
        }
        self.last_scan = Some(now);
        events
    }

    /// How long to wait before the next scan: `interval`, or less when a file settles
    /// sooner.
    pub fn pause(&self, interval: Duration) -> Duration {
        // A floor, so that a file the last scan could not load (the folder unreadable)
        // does not make the watcher spin.
        const MIN: Duration = Duration::from_millis(5);
        self.next_due().map_or(interval, |due| {
            due.saturating_duration_since(Instant::now())
                .max(MIN)
                .min(interval)
        })
    }

    /// When the next file settles, if one is waiting to: scan then to load it without
    /// waiting for the next interval.
    pub fn next_due(&self) -> Option<Instant> {
        self.files
            .values()
            .filter(|t| t.loaded.as_ref() != Some(&t.stamp))
            .map(|t| t.changed_at + self.settle)
            .min()
    }

    /// Scans every `interval` on a thread of its own, handing events to `on_event`,
    /// until `on_event` returns false.
    pub fn spawn(
        mut self,
        interval: Duration,
        mut on_event: impl FnMut(Event) -> bool + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            loop {
                for event in self.scan() {
                    if !on_event(event) {
                        return;
                    }
                }
                std::thread::sleep(self.pause(interval));
            }
        })
    }
}

fn file_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn load(
    registry: &Registry,
    path: &Path,
    name: &str,
    spec: &dyn Fn(&str) -> Spec,
) -> Result<String, registry::Error> {
    let io = |e: std::io::Error, what: &Path| {
        registry::Error::Load(crate::load::Error {
            plugin: name.to_owned(),
            origin: what.display().to_string(),
            cause: crate::load::Cause::Read(e.to_string()),
        })
    };
    let source = Source::file(path).map_err(|e| io(e, path))?;
    let mut spec = spec(name);
    let config_path = path.with_extension("json");
    if config_path.exists() {
        spec.config = std::fs::read_to_string(&config_path).map_err(|e| io(e, &config_path))?;
    }
    let revision = registry.load(&source, spec, Some(name))?;
    Ok(revision.digest().to_owned())
}
