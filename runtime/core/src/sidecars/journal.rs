//! The pod-command journal: one JSON line per command queued and per command
//! finished, so that the commands a runtime had not finished are delivered by the next
//! one. A torn last line (a crash mid-write) is skipped; opening compacts the file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bosun_host::contract::{ObjectRef, PodCommand};

use super::{Error, io_err};
use crate::pipe::PodDelivery;

/// The on-disk record of pod-commands taken from the command pipe and not yet finished.
pub(super) struct Journal {
    path: PathBuf,
    file: Option<std::fs::File>,
}

#[derive(serde::Serialize, serde::Deserialize)]
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
        let mut pending: Vec<Queued> = Vec::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                // A torn last line (a crash mid-write) is skipped.
                match serde_json::from_str::<Line>(line) {
                    Ok(Line::Queued(q)) => pending.push(*q),
                    Ok(Line::Done(id)) => pending.retain(|q| q.id != id),
                    Err(_) => {}
                }
            }
        }
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
            for q in &pending {
                let line = serde_json::to_string(&Line::Queued(Box::new(Queued {
                    id: q.id,
                    plugin: q.plugin.clone(),
                    key: q.key.clone(),
                    target: q.target.clone(),
                    command: q.command.clone(),
                    at: q.at,
                })))
                .unwrap_or_default();
                writeln!(f, "{line}").map_err(io_err(&tmp))?;
            }
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "pod-commands from before the restart will be delivered"
            );
        }
        let deliveries = pending
            .into_iter()
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
        Ok((
            Journal {
                path: path.to_owned(),
                file: Some(file),
            },
            deliveries,
        ))
    }

    fn write(&mut self, line: &Line) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let text = serde_json::to_string(line).unwrap_or_default();
        if let Err(e) = writeln!(f, "{text}") {
            tracing::error!(file = %self.path.display(), error = %e, "cannot write the pod-command journal");
        }
    }

    pub(super) fn queued(&mut self, d: &PodDelivery, at: u64) {
        self.write(&Line::Queued(Box::new(Queued {
            id: d.id,
            plugin: d.plugin.to_string(),
            key: d.key.clone(),
            target: d.target.clone(),
            command: d.command.clone(),
            at,
        })));
    }

    pub(super) fn done(&mut self, id: u64) {
        self.write(&Line::Done(id));
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
}
