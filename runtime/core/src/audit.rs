//! The durable audit trail: one JSON line per command verdict.
//!
//! [`AuditLog::append`] only serialises into a buffer (cheap, callable from any thread);
//! [`AuditLog::flush`] writes the buffer and fsyncs. The file is append-only; when it
//! would pass its size cap it is rotated once (`audit.jsonl` → `audit.jsonl.1`, replacing
//! the previous `.1`). A line cut short by a crash is removed when the log is opened.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bosun_host::contract::Verdict;
use serde::{Deserialize, Serialize};

/// The default size cap of one audit file.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Buffered bytes that make [`AuditLog::append`] write through (without fsync).
const WRITE_THRESHOLD: usize = 256 * 1024;

/// What can go wrong with the audit trail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or its folder could not be created, opened or repaired.
    #[error("audit log {}: cannot open", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Records could not be written or synced; they may be lost.
    #[error("audit log {}: cannot write ({dropped} records dropped)", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Records that could not be kept.
        dropped: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file could not be read.
    #[error("audit log {}: cannot read", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A line is not an audit record.
    #[error("audit log {}: line {line} is not a record", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One command's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The plugin that submitted the command.
    pub plugin: String,
    /// The plugin's revision (digest).
    pub revision: String,
    /// The work-queue key being reconciled, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The id `submit` returned to the plugin, if it got one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<u64>,
    /// The command, in its readable JSON form (`Command::to_json`).
    pub command: serde_json::Value,
    /// `executed`, `refused`, `failed`, `dry-run` or `pending`.
    #[serde(with = "verdict")]
    pub verdict: Verdict,
    /// The guardrail that refused it (`rate-limit`), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<String>,
    /// Why: the refusal, the error, or what was done.
    pub message: String,
}

mod verdict {
    use bosun_host::contract::Verdict;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(v: &Verdict, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Verdict, D::Error> {
        let name = String::deserialize(d)?;
        [
            Verdict::Pending,
            Verdict::Executed,
            Verdict::DryRun,
            Verdict::Refused,
            Verdict::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == name)
        .ok_or_else(|| de::Error::custom(format!("unknown verdict {name:?}")))
    }
}

/// The path a full audit file is rotated to: `path` with `.1` appended.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// An open audit trail. Share it with an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    /// Bytes in the file plus bytes in `buf`.
    size: u64,
    buf: Vec<u8>,
    /// Records dropped since the last error was reported.
    dropped: u64,
    /// A write error not reported by `flush` yet.
    error: Option<io::Error>,
    /// A write failed part-way: cut the file back to its last full line before writing.
    repair: bool,
}

impl AuditLog {
    /// Opens (or creates) the audit file at `path` with the default size cap.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with_max_bytes(path, DEFAULT_MAX_BYTES)
    }

    /// Opens (or creates) the audit file at `path`, rotating it when it would grow past
    /// `max_bytes`. Creates missing folders and cuts off a partial last line.
    pub fn open_with_max_bytes(path: impl Into<PathBuf>, max_bytes: u64) -> Result<Self> {
        let path = path.into();
        let open_err = |source| Error::Open {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(open_err)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(open_err)?;
        let size = truncate_partial_line(&mut file).map_err(open_err)?;
        Ok(AuditLog {
            max_bytes,
            inner: Mutex::new(Inner {
                file,
                size,
                buf: Vec::new(),
                dropped: 0,
                error: None,
                repair: false,
            }),
            path,
        })
    }

    /// The audit file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Each update of `Inner` is complete before anything that could panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a record to the buffer. Writes (without fsync) when the buffer is large, and
    /// rotates when the file would pass its cap; a failure is reported by the next
    /// [`flush`](Self::flush).
    pub fn append(&self, record: &Record) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(e) => {
                // Cannot happen for this type (string keys, no failing serialisers).
                tracing::error!(error = %e, "audit record could not be serialised");
                return;
            }
        };
        line.push(b'\n');
        let mut inner = self.lock();
        let line_len = line.len() as u64;
        if inner.size > 0
            && inner.size + line_len > self.max_bytes
            && let Err(e) = self.rotate(&mut inner)
        {
            inner.fail(e);
        }
        inner.buf.extend_from_slice(&line);
        inner.size += line_len;
        if inner.buf.len() >= WRITE_THRESHOLD
            && let Err(e) = inner.write_buf()
        {
            inner.fail(e);
        }
    }

    /// Writes every buffered record and syncs the file to disk. Reports (once) any write
    /// error since the last flush.
    pub fn flush(&self) -> Result<()> {
        let mut inner = self.lock();
        let result = inner.write_buf().and_then(|()| inner.file.sync_data());
        if let Err(e) = result {
            inner.fail(e);
        }
        match inner.error.take() {
            Some(source) => Err(Error::Write {
                path: self.path.clone(),
                dropped: std::mem::take(&mut inner.dropped),
                source,
            }),
            None => Ok(()),
        }
    }

    /// Moves the full file to `path.1` and starts a new one.
    fn rotate(&self, inner: &mut Inner) -> io::Result<()> {
        inner.write_buf()?;
        inner.file.sync_data()?;
        fs::rename(&self.path, rotated_path(&self.path))?;
        inner.file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        inner.size = 0;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename durable; not every platform can open a folder.
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

impl Inner {
    /// Writes the buffer. On failure its records are dropped (and counted): a retry
    /// could duplicate the part that was written.
    fn write_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.write_buf_once();
        if result.is_err() {
            self.dropped += self.buf.iter().filter(|&&b| b == b'\n').count() as u64;
            self.repair = true;
            self.size = self.file.metadata().map_or(self.size, |m| m.len());
        }
        self.buf.clear();
        result
    }

    fn write_buf_once(&mut self) -> io::Result<()> {
        if self.repair {
            let kept = truncate_partial_line(&mut self.file)?;
            self.size = kept + self.buf.len() as u64;
            self.repair = false;
        }
        self.file.write_all(&self.buf)
    }

    fn fail(&mut self, e: io::Error) {
        tracing::warn!(error = %e, "audit log write failed");
        self.error.get_or_insert(e);
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "audit log: last records may be lost");
        }
    }
}

/// Cuts the file after its last newline (a crash can leave half a line) and returns its
/// new length.
fn truncate_partial_line(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = usize::try_from(end - start).unwrap_or(chunk.len());
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep != len {
                file.set_len(keep)?;
                file.sync_data()?;
            }
            return Ok(keep);
        }
        end = start;
    }
    if len > 0 {
        file.set_len(0)?;
        file.sync_data()?;
    }
    Ok(0)
}

/// Reads every complete record of one audit file (not its rotated `.1`). A partial last
/// line is ignored; any other line that is not a record is an error.
pub fn read(path: impl AsRef<Path>) -> Result<Vec<Record>> {
    let path = path.as_ref();
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(read_err)?);
    let mut records = Vec::new();
    let mut line = String::new();
    for number in 1.. {
        line.clear();
        if reader.read_line(&mut line).map_err(read_err)? == 0 {
            break;
        }
        let Some(text) = line.strip_suffix('\n') else {
            break;
        };
        if text.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(text).map_err(|source| Error::Parse {
            path: path.to_owned(),
            line: number,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(n: u64) -> Record {
        Record {
            time_ms: 1_700_000_000_000 + n,
            plugin: "release".into(),
            revision: "sha256:abc".into(),
            key: Some("Pod/default/web-0".into()),
            command_id: Some(n),
            command: json!({ "command": "evict", "target": { "name": "web-0" } }),
            verdict: if n.is_multiple_of(2) {
                Verdict::Executed
            } else {
                Verdict::Refused
            },
            guardrail: (n % 2 == 1).then(|| "rate-limit".to_owned()),
            message: format!("record {n}"),
        }
    }

    #[test]
    fn records_round_trip_as_json_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/audit.jsonl");
        let log = AuditLog::open(&path).expect("opens");
        for n in 0..3 {
            log.append(&record(n));
        }
        log.flush().expect("flushes");
        let text = fs::read_to_string(&path).expect("readable");
        let first = text.lines().next().expect("a line");
        let value: serde_json::Value = serde_json::from_str(first).expect("json");
        assert_eq!(value["verdict"], "executed");
        assert_eq!(value["timeMs"], 1_700_000_000_000u64);
        assert!(value.get("guardrail").is_none());
        assert_eq!(
            read(&path).expect("reads"),
            (0..3).map(record).collect::<Vec<_>>()
        );
        drop(log);
        // Reopening appends.
        let log = AuditLog::open(&path).expect("reopens");
        log.append(&record(3));
        log.flush().expect("flushes");
        assert_eq!(read(&path).expect("reads").len(), 4);
    }

    #[test]
    fn a_partial_last_line_is_cut_on_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).expect("opens");
        log.append(&record(0));
        log.append(&record(1));
        drop(log);
        let mut file = OpenOptions::new().append(true).open(&path).expect("opens");
        file.write_all(br#"{"timeMs":17000,"plug"#).expect("writes");
        drop(file);
        assert_eq!(read(&path).expect("a partial line is skipped").len(), 2);

        let log = AuditLog::open(&path).expect("repairs");
        log.append(&record(2));
        log.flush().expect("flushes");
        let records = read(&path).expect("reads");
        assert_eq!(records, vec![record(0), record(1), record(2)]);
    }

    #[test]
    fn a_file_without_any_newline_is_emptied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.jsonl");
        fs::write(&path, b"{\"half").expect("writes");
        let log = AuditLog::open(&path).expect("repairs");
        log.append(&record(7));
        log.flush().expect("flushes");
        assert_eq!(read(&path).expect("reads"), vec![record(7)]);
    }

    /// Records of equal length (for `n` < 10).
    fn same_size(n: u64) -> Record {
        Record {
            command_id: Some(n),
            message: format!("record {n}"),
            ..record(0)
        }
    }

    #[test]
    fn a_full_file_is_rotated_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.jsonl");
        let line_len = serde_json::to_vec(&same_size(0)).expect("json").len() as u64 + 1;
        // Room for three records per file.
        let log = AuditLog::open_with_max_bytes(&path, line_len * 3 + 2).expect("opens");
        for n in 0..8 {
            log.append(&same_size(n));
        }
        log.flush().expect("flushes");
        let current = read(&path).expect("current");
        let previous = read(rotated_path(&path)).expect("rotated");
        assert_eq!(current, vec![same_size(6), same_size(7)]);
        assert_eq!(previous, vec![same_size(3), same_size(4), same_size(5)]);
        assert!(fs::metadata(&path).expect("exists").len() <= line_len * 3 + 2);
    }

    #[test]
    fn garbage_in_the_middle_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.jsonl");
        let good = serde_json::to_string(&record(0)).expect("json");
        fs::write(&path, format!("{good}\nnot json\n{good}\n")).expect("writes");
        let err = read(&path).expect_err("line 2 is garbage");
        assert!(err.to_string().ends_with("line 2 is not a record"), "{err}");
    }
}
