//! The pod-command journal: one JSON line per command queued and per command
//! finished, so that the commands a runtime had not finished are delivered by the next
//! one. A torn last line (a crash mid-write) is skipped. Opening compacts the file, and
//! so does a running runtime once most of its lines are of finished commands: the
//! journal of a runtime that runs for months stays the size of what is in flight.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bosun_host::contract::{ObjectRef, PodCommand};

use super::{Error, io_err};
use crate::pipe::PodDelivery;

/// Lines written since the last compaction before the next one is considered.
const COMPACT_AFTER: usize = 1024;

/// The on-disk record of pod-commands taken from the command pipe and not yet finished.
pub(super) struct Journal {
    path: PathBuf,
    file: Option<std::fs::File>,
    /// The unfinished commands in the order they were queued (by sequence number), what
    /// a compaction writes.
    pending: BTreeMap<u64, Queued>,
    /// The sequence number of each unfinished command id.
    seq: HashMap<u64, u64>,
    next_seq: u64,
    /// Lines in the file.
    lines: usize,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Queued {
    id: u64,
    plugin: String,
    key: Option<String>,
    target: Option<ObjectRef>,
    command: PodCommand,
    at: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    Queued(Box<Queued>),
    Done(u64),
}

impl Journal {
    /// Opens the journal, returns the unfinished commands and compacts the file.
    pub(super) fn open(path: &Path) -> Result<(Self, Vec<(PodDelivery, u64)>), Error> {
        let mut journal = Journal {
            path: path.to_owned(),
            file: None,
            pending: BTreeMap::new(),
            seq: HashMap::new(),
            next_seq: 0,
            lines: 0,
        };
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                // A torn last line (a crash mid-write) is skipped.
                match serde_json::from_str::<Line>(line) {
                    Ok(Line::Queued(q)) => journal.add(*q),
                    Ok(Line::Done(id)) => journal.remove(id),
                    Err(_) => {}
                }
            }
        }
        journal.compact()?;
        if !journal.pending.is_empty() {
            tracing::info!(
                count = journal.pending.len(),
                "pod-commands from before the restart will be delivered"
            );
        }
        let deliveries = journal
            .pending
            .values()
            .cloned()
            .map(|q| {
                (
                    PodDelivery {
                        id: q.id,
                        plugin: Arc::from(q.plugin.as_str()),
                        key: q.key,
                        target: q.target,
                        command: q.command,
                    },
                    q.at,
                )
            })
            .collect();
        Ok((journal, deliveries))
    }

    fn add(&mut self, q: Queued) {
        self.remove(q.id);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.seq.insert(q.id, seq);
        self.pending.insert(seq, q);
    }

    fn remove(&mut self, id: u64) {
        if let Some(seq) = self.seq.remove(&id) {
            self.pending.remove(&seq);
        }
    }

    /// Rewrites the file with the unfinished commands only, and reopens it for appending.
    fn compact(&mut self) -> Result<(), Error> {
        self.file = None;
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = super::create_private(&tmp).map_err(io_err(&tmp))?;
            for q in self.pending.values() {
                let line =
                    serde_json::to_string(&Line::Queued(Box::new(q.clone()))).unwrap_or_default();
                writeln!(f, "{line}").map_err(io_err(&tmp))?;
            }
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        self.file = Some(file);
        self.lines = self.pending.len();
        Ok(())
    }

    fn write(&mut self, line: &Line) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let text = serde_json::to_string(line).unwrap_or_default();
        match writeln!(f, "{text}") {
            Ok(()) => self.lines += 1,
            Err(e) => {
                tracing::error!(file = %self.path.display(), error = %e, "cannot write the pod-command journal")
            }
        }
    }

    pub(super) fn queued(&mut self, d: &PodDelivery, at: u64) {
        let q = Queued {
            id: d.id,
            plugin: d.plugin.to_string(),
            key: d.key.clone(),
            target: d.target.clone(),
            command: d.command.clone(),
            at,
        };
        self.write(&Line::Queued(Box::new(q.clone())));
        self.add(q);
    }

    pub(super) fn done(&mut self, id: u64) {
        self.write(&Line::Done(id));
        self.remove(id);
        // Most lines are of finished commands: rewrite the file with the rest.
        if self.lines >= COMPACT_AFTER
            && self.lines >= 4 * self.pending.len()
            && let Err(e) = self.compact()
        {
            tracing::error!(error = %e, "cannot compact the pod-command journal");
        }
    }

    /// Lines in the file (tests).
    #[cfg(test)]
    fn lines(&self) -> usize {
        self.lines
    }

    pub(super) fn sync(&mut self) {
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.sync_data()
        {
            tracing::error!(file = %self.path.display(), error = %e, "cannot sync the pod-command journal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_keeps_what_is_unfinished_across_opens() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j.jsonl");
        let (mut j, pending) = Journal::open(&path).expect("open");
        assert!(pending.is_empty());
        let d = |id| PodDelivery {
            id,
            plugin: Arc::from("p"),
            key: Some("Pod/ns/a".into()),
            target: Some(ObjectRef::namespaced("v1", "Pod", "ns", "a")),
            command: PodCommand {
                namespace: "ns".into(),
                pod: "a".into(),
                plugin: "agent".into(),
                payload: format!("{id}"),
            },
        };
        for id in 1..=3 {
            j.queued(&d(id), 5);
        }
        j.done(2);
        j.sync();
        drop(j);
        // A torn last line (a crash mid-write) is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"queued\":{\"id\":9"))
            .expect("tear");
        let (_, pending) = Journal::open(&path).expect("reopen");
        let ids: Vec<u64> = pending.iter().map(|(d, _)| d.id).collect();
        assert_eq!(ids, [1, 3]);
        assert_eq!(pending[1].0.command.payload, "3");
        assert_eq!(pending[1].0.target, d(3).target);
    }

    fn delivery(id: u64) -> PodDelivery {
        PodDelivery {
            id,
            plugin: Arc::from("p"),
            key: None,
            target: None,
            command: PodCommand {
                namespace: "ns".into(),
                pod: "a".into(),
                plugin: "agent".into(),
                payload: format!("{id}"),
            },
        }
    }

    #[test]
    fn the_journal_is_compacted_while_it_runs() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::open(&path).expect("open");
        // One command stays unfinished throughout; thousands come and go.
        j.queued(&delivery(0), 1);
        for id in 1..=5_000 {
            j.queued(&delivery(id), 1);
            j.done(id);
        }
        j.queued(&delivery(9_999), 1);
        j.sync();
        let on_disk = std::fs::read_to_string(&path)
            .expect("file")
            .lines()
            .count();
        assert_eq!(on_disk, j.lines());
        assert!(
            on_disk < 2 * COMPACT_AFTER,
            "{on_disk} lines for 2 unfinished"
        );
        drop(j);
        let (_, pending) = Journal::open(&path).expect("reopen");
        let ids: Vec<u64> = pending.iter().map(|(d, _)| d.id).collect();
        assert_eq!(ids, [0, 9_999], "what is unfinished survives, in order");
    }

    #[cfg(unix)]
    #[test]
    fn the_journal_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j.jsonl");
        drop(Journal::open(&path).expect("open"));
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
