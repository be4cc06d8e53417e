//! The plugin state of a canary or shadow revision: its own, so that it neither reads
//! nor overwrites what the stable revision keeps (the host keys state by plugin name,
//! which both revisions share).
//!
//! A shadow's state is dropped with it: it reflects commands that never ran, and a
//! promoted shadow is loaded again on the plugin's state. A canary's state is carried
//! into the plugin's when it is promoted (what it wrote, and what it deleted, for the
//! keys it served) and it goes on there as the stable revision.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use bosun_host::host::cache::{State, Usage};

/// Entries written (`Some`) or deleted (`None`) by one revision, by (plugin, key).
type Own = BTreeMap<(String, String), Option<Vec<u8>>>;

/// A canary's or shadow's own state until it is promoted, then the plugin's.
pub struct Scratch {
    plugin: Arc<dyn State>,
    /// `None` once promoted: reads and writes go to the plugin's state.
    own: Mutex<Option<Own>>,
    /// Caps of its own state (bytes, keys), deletions included, as the plugin's.
    caps: (usize, usize),
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("promoted", &self.promoted())
            .finish_non_exhaustive()
    }
}

impl Scratch {
    /// Empty state of its own, beside the plugin's state `plugin`.
    pub fn new(plugin: Arc<dyn State>) -> Self {
        let limits = bosun_host::limits::Limits::default();
        Self::with_caps(plugin, limits.max_state_bytes, limits.max_state_keys)
    }

    /// Empty state of its own, capped at `max_bytes` in `max_keys` keys (deletions
    /// count as keys until promoted), beside the plugin's state `plugin`.
    pub fn with_caps(plugin: Arc<dyn State>, max_bytes: usize, max_keys: usize) -> Self {
        Scratch {
            plugin,
            own: Mutex::new(Some(Own::new())),
            caps: (max_bytes, max_keys),
        }
    }

    /// Whether it is the plugin's state now.
    pub fn promoted(&self) -> bool {
        self.lock().is_none()
    }

    /// Carries what this revision wrote and deleted into the plugin's state; from now on
    /// it reads and writes the plugin's state.
    pub fn promote(&self) {
        // Held while carrying over: a write racing the promotion lands after it.
        let mut own = self.lock();
        for ((plugin, key), value) in own.take().unwrap_or_default() {
            match value {
                Some(value) => {
                    if let Err(e) = self.plugin.set(&plugin, &key, value) {
                        tracing::warn!(plugin = %plugin, key = %key, error = %e, "cannot carry the canary's state over");
                    }
                }
                None => self.plugin.delete(&plugin, &key),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Own>> {
        self.own.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State for Scratch {
    fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        let own = self.lock();
        match own.as_ref() {
            Some(own) => own
                .get(&(plugin.to_owned(), key.to_owned()))
                .cloned()
                .flatten(),
            None => self.plugin.get(plugin, key),
        }
    }

    fn set(&self, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), String> {
        let mut own = self.lock();
        match own.as_mut() {
            Some(own) => {
                let k = (plugin.to_owned(), key.to_owned());
                let (max_bytes, max_keys) = self.caps;
                let old = own
                    .get(&k)
                    .map(|v| key.len() + v.as_ref().map_or(0, Vec::len));
                if old.is_none() && own.len() >= max_keys {
                    return Err(format!(
                        "plugin state holds {} keys, the cap of {max_keys} keys per plugin",
                        own.len()
                    ));
                }
                let held: usize = own
                    .iter()
                    .map(|((_, k), v)| k.len() + v.as_ref().map_or(0, Vec::len))
                    .sum();
                let bytes = held - old.unwrap_or(0) + key.len() + value.len();
                if bytes > max_bytes {
                    return Err(format!(
                        "plugin state would hold {bytes} bytes, over the cap of {max_bytes} bytes per plugin"
                    ));
                }
                own.insert(k, Some(value));
                Ok(())
            }
            None => self.plugin.set(plugin, key, value),
        }
    }

    fn delete(&self, plugin: &str, key: &str) {
        let mut own = self.lock();
        match own.as_mut() {
            Some(own) => {
                own.insert((plugin.to_owned(), key.to_owned()), None);
            }
            None => self.plugin.delete(plugin, key),
        }
    }

    fn usage(&self, plugin: &str) -> Usage {
        let own = self.lock();
        match own.as_ref() {
            Some(own) => own
                .iter()
                .filter(|((p, _), v)| p == plugin && v.is_some())
                .fold(Usage::default(), |u, ((_, k), v)| Usage {
                    bytes: u.bytes + k.len() + v.as_ref().map_or(0, Vec::len),
                    keys: u.keys + 1,
                }),
            None => self.plugin.usage(plugin),
        }
    }

    fn clear(&self, plugin: &str) {
        if let Some(own) = self.lock().as_mut() {
            own.retain(|(p, _), _| p != plugin);
        }
        self.plugin.clear(plugin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_host::host::cache::MemoryState;

    #[test]
    fn a_scratch_neither_reads_nor_writes_the_plugins_state() {
        let plugin = Arc::new(MemoryState::default());
        plugin.set("p", "count", b"5".to_vec()).expect("set");
        plugin.set("p", "kept", b"stable".to_vec()).expect("set");
        let scratch = Scratch::new(plugin.clone());
        assert_eq!(scratch.get("p", "count"), None, "read the stable's state");
        scratch.set("p", "count", b"1".to_vec()).expect("set");
        scratch.delete("p", "kept");
        assert_eq!(scratch.get("p", "count"), Some(b"1".to_vec()));
        assert_eq!(plugin.get("p", "count"), Some(b"5".to_vec()), "wrote it");
        assert_eq!(
            plugin.get("p", "kept"),
            Some(b"stable".to_vec()),
            "deleted it"
        );
    }

    #[test]
    fn a_scratch_is_capped_like_the_plugins_state() {
        let scratch = Scratch::with_caps(Arc::new(MemoryState::default()), 100, 2);
        scratch.set("p", "a", vec![0; 60]).expect("fits");
        let err = scratch
            .set("p", "b", vec![0; 60])
            .expect_err("over the bytes");
        assert!(err.contains("cap of 100 bytes"), "{err}");
        scratch
            .set("p", "a", vec![0; 90])
            .expect("a replacement counts once");
        scratch.delete("p", "b");
        let err = scratch.set("p", "c", vec![]).expect_err("over the keys");
        assert!(err.contains("cap of 2 keys"), "{err}");
        assert_eq!(scratch.usage("p").keys, 1);
    }

    #[test]
    fn a_promoted_canary_carries_its_state_over_and_goes_on_there() {
        let plugin = Arc::new(MemoryState::default());
        plugin.set("p", "a", b"stable".to_vec()).expect("set");
        plugin.set("p", "b", b"stable".to_vec()).expect("set");
        plugin.set("p", "c", b"stable".to_vec()).expect("set");
        let scratch = Scratch::new(plugin.clone());
        scratch.set("p", "a", b"canary".to_vec()).expect("set");
        scratch.delete("p", "b");
        assert!(!scratch.promoted());
        scratch.promote();
        assert!(scratch.promoted());
        assert_eq!(plugin.get("p", "a"), Some(b"canary".to_vec()));
        assert_eq!(plugin.get("p", "b"), None);
        assert_eq!(plugin.get("p", "c"), Some(b"stable".to_vec()));
        // It is the plugin's state now, both ways.
        assert_eq!(scratch.get("p", "c"), Some(b"stable".to_vec()));
        scratch.set("p", "d", b"new".to_vec()).expect("set");
        assert_eq!(plugin.get("p", "d"), Some(b"new".to_vec()));
    }
}
