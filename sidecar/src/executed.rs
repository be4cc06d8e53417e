//! The pod-commands this sidecar executed, kept on disk (one JSON line per outcome, like
//! the runtime's pod-command journal), so that a command redelivered after the sidecar
//! restarts is answered with its first outcome instead of running twice. The last
//! [`REMEMBERED`] are kept; the file is compacted when it holds twice as many lines.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use bosun_link::Outcome;

/// Executed command ids remembered for deduplication.
pub(crate) const REMEMBERED: usize = 4096;

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    id: u64,
    plugin: String,
    revision: String,
    ok: bool,
    message: String,
}

/// The outcomes of the last [`REMEMBERED`] commands executed.
pub(crate) struct Executed {
    path: PathBuf,
    file: Option<std::fs::File>,
    order: VecDeque<u64>,
    outcomes: HashMap<u64, Outcome>,
    lines: usize,
}

impl Executed {
    /// The outcomes kept in `path` (none if it does not exist or cannot be read: the
    /// sidecar then remembers from now on, and says why).
    pub(crate) fn open(path: &Path) -> Self {
        let mut executed = Executed {
            path: path.to_owned(),
            file: None,
            order: VecDeque::new(),
            outcomes: HashMap::new(),
            lines: 0,
        };
        if let Ok(text) = std::fs::read_to_string(path) {
            // A torn last line (a crash mid-write) is skipped.
            for line in text.lines() {
                if let Ok(l) = serde_json::from_str::<Line>(line) {
                    executed.remember(Outcome {
                        id: l.id,
                        plugin: l.plugin,
                        revision: l.revision,
                        ok: l.ok,
                        message: l.message,
                    });
                }
            }
        }
        executed.compact();
        executed
    }

    /// The outcome of command `id`, if it was executed.
    pub(crate) fn get(&self, id: u64) -> Option<Outcome> {
        self.outcomes.get(&id).cloned()
    }

    /// Records the outcome of a command just executed, on disk before it is reported.
    pub(crate) fn record(&mut self, outcome: &Outcome) {
        self.remember(outcome.clone());
        if self.lines >= 2 * REMEMBERED {
            self.compact();
            return;
        }
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let written = writeln!(f, "{}", line(outcome)).and_then(|()| f.sync_data());
        match written {
            Ok(()) => self.lines += 1,
            Err(e) => {
                tracing::error!(file = %self.path.display(), error = %e, "cannot record an executed command")
            }
        }
    }

    fn remember(&mut self, outcome: Outcome) {
        if self.outcomes.insert(outcome.id, outcome.clone()).is_none() {
            self.order.push_back(outcome.id);
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
    }

    /// Rewrites the file with what is remembered, and reopens it for appending.
    fn compact(&mut self) {
        self.file = None;
        let tmp = self.path.with_extension("tmp");
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            for id in &self.order {
                if let Some(o) = self.outcomes.get(id) {
                    writeln!(f, "{}", line(o))?;
                }
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::OpenOptions::new().append(true).open(&self.path)
        })();
        match written {
            Ok(f) => {
                self.file = Some(f);
                self.lines = self.order.len();
            }
            Err(e) => {
                tracing::error!(file = %self.path.display(), error = %e, "cannot keep executed commands; a command redelivered after a restart may run again")
            }
        }
    }
}

fn line(o: &Outcome) -> String {
    serde_json::to_string(&Line {
        id: o.id,
        plugin: o.plugin.clone(),
        revision: o.revision.clone(),
        ok: o.ok,
        message: o.message.clone(),
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(id: u64) -> Outcome {
        Outcome {
            id,
            plugin: "agent".to_owned(),
            revision: "sha256:ab".to_owned(),
            ok: id.is_multiple_of(2),
            message: format!("m{id}"),
        }
    }

    #[test]
    fn outcomes_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("executed.jsonl");
        let mut e = Executed::open(&path);
        assert!(e.get(7).is_none());
        e.record(&outcome(7));
        e.record(&outcome(8));
        drop(e);
        // A torn last line (a crash mid-write) is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"id\":9,\"plu"))
            .expect("tear");
        let e = Executed::open(&path);
        assert_eq!(e.get(7), Some(outcome(7)));
        assert_eq!(e.get(8), Some(outcome(8)));
        assert!(e.get(9).is_none());
    }

    #[test]
    fn the_file_stays_bounded() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("executed.jsonl");
        let mut e = Executed::open(&path);
        // Past one compaction.
        let total = 2 * REMEMBERED as u64 + 10;
        for id in 0..total {
            e.record(&outcome(id));
        }
        let lines = std::fs::read_to_string(&path)
            .expect("file")
            .lines()
            .count();
        assert!(lines <= 2 * REMEMBERED, "{lines} lines");
        drop(e);
        let e = Executed::open(&path);
        assert!(e.get(0).is_none());
        assert_eq!(e.get(total - 1), Some(outcome(total - 1)));
        assert_eq!(e.order.len(), REMEMBERED);
    }
}
