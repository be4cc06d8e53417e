//! The durable audit trail: one JSON line per command verdict.
//!
//! [`AuditLog::append`] only serialises into a buffer (cheap, callable from any thread);
//! [`AuditLog::flush`] writes the buffer and fsyncs, and
//! [`AuditLog::flush_through`] does so only if a given record is not on disk yet (the
//! pipe makes an executed command durable before reporting it). The file is
//! append-only; when it would pass its size cap it is rotated (`audit.log` →
//! `audit.log.1` → … → `audit.log.5`, the oldest dropped). A line cut short by a crash
//! is removed when the log is opened.
//!
//! One plugin cannot flood the trail away: a refused command is kept as its digest and
//! a bounded prefix ([`condense`]), and a plugin's refused commands beyond
//! [`Config::refused_per_minute`] in a minute are counted in one summary record instead.
//! Executed, failed and dry-run commands are always kept whole.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bosun_host::contract::Verdict;
use bosun_host::host::clock::{Clock, System};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The default size cap of one audit file.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The default number of rotated files kept.
pub const DEFAULT_ROTATED_FILES: usize = 5;

/// The default number of refused commands audited one by one per plugin and minute.
pub const DEFAULT_REFUSED_PER_MINUTE: u32 = 300;

/// The most bytes of a refused command's JSON its record keeps.
pub const REFUSED_PREFIX_BYTES: usize = 1024;

/// The window of [`Config::refused_per_minute`].
const VOLUME_WINDOW: Duration = Duration::from_secs(60);

/// The audit trail's settings (the runtime config's `audit` section).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The size at which the audit file is rotated (default 64 MiB).
    pub max_file_bytes: u64,
    /// Rotated files kept beside the current one, `audit.log.1` the newest (default 5;
    /// 0 keeps none).
    pub rotated_files: usize,
    /// Refused commands audited one by one per plugin and minute (default 300). The
    /// rest are counted in one summary record per plugin and minute. Executed, failed
    /// and dry-run commands are never dropped.
    pub refused_per_minute: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_file_bytes: DEFAULT_MAX_BYTES,
            rotated_files: DEFAULT_ROTATED_FILES,
            refused_per_minute: DEFAULT_REFUSED_PER_MINUTE,
        }
    }
}

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
    /// The command, in its readable JSON form (`Command::to_json`). For a refused
    /// command, only its name, digest, size and first bytes ([`condense`]); `null` in a
    /// summary of refused commands not audited one by one.
    pub command: Value,
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

/// What a refused command's record keeps of the command: its name (`command`), the
/// sha256 of its compact JSON text (`sha256`, hex), that text's length (`bytes`) and at
/// most its first [`REFUSED_PREFIX_BYTES`] (`prefix`).
pub fn condense(command: &Value) -> Value {
    let text = command.to_string();
    let mut end = text.len().min(REFUSED_PREFIX_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = json!({
        "sha256": hex::encode(Sha256::digest(text.as_bytes())),
        "bytes": text.len(),
        "prefix": &text[..end],
    });
    if let Some(name) = command.get("command").and_then(Value::as_str)
        && name.len() <= 64
    {
        out["command"] = name.into();
    }
    out
}

/// The path of the `n`th rotated audit file: `path` with `.n` appended (`.1` is the
/// newest).
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// An open audit trail. Share it with an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    config: Config,
    inner: Mutex<Inner>,
}

/// One plugin's refused commands in the current minute.
#[derive(Debug)]
struct Window {
    start: Instant,
    /// Audited one by one.
    written: u32,
    /// Only counted.
    suppressed: u64,
    /// The revision of the last one counted.
    revision: String,
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
    /// Records appended since open (a record's sequence number).
    appended: u64,
    /// Records appended before the last sync (or dropped by a failed write).
    synced: u64,
    /// Refused commands per plugin in the current minute.
    windows: HashMap<String, Window>,
}

impl AuditLog {
    /// Opens (or creates) the audit file at `path` with the default settings.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(path, Config::default())
    }

    /// Opens (or creates) the audit file at `path`, rotating it when it would grow past
    /// `max_bytes`.
    pub fn open_with_max_bytes(path: impl Into<PathBuf>, max_bytes: u64) -> Result<Self> {
        let config = Config {
            max_file_bytes: max_bytes,
            ..Config::default()
        };
        Self::open_with(path, config)
    }

    /// Opens (or creates) the audit file at `path` with `config`. Creates missing
    /// folders and cuts off a partial last line.
    pub fn open_with(path: impl Into<PathBuf>, config: Config) -> Result<Self> {
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
            config,
            inner: Mutex::new(Inner {
                file,
                size,
                buf: Vec::new(),
                dropped: 0,
                error: None,
                repair: false,
                appended: 0,
                synced: 0,
                windows: HashMap::new(),
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

    /// Adds a record to the buffer and returns its sequence number (for
    /// [`flush_through`](Self::flush_through)). Writes (without fsync) when the buffer is
    /// large, and rotates when the file would pass its cap; a failure is reported by the
    /// next [`flush`](Self::flush). A refused command is kept [condensed](condense), and
    /// only counted once its plugin is past [`Config::refused_per_minute`].
    pub fn append(&self, record: &Record) -> u64 {
        self.append_at(record, Instant::now())
    }

    fn append_at(&self, record: &Record, now: Instant) -> u64 {
        let refused = record.verdict == Verdict::Refused;
        if refused {
            let mut inner = self.lock();
            self.close_windows(&mut inner, now, false);
            let limit = self.config.refused_per_minute;
            let window = inner
                .windows
                .entry(record.plugin.clone())
                .or_insert_with(|| Window {
                    start: now,
                    written: 0,
                    suppressed: 0,
                    revision: String::new(),
                });
            if window.written >= limit {
                window.suppressed += 1;
                window.revision.clone_from(&record.revision);
                return inner.appended;
            }
            window.written += 1;
        }
        let line = if refused {
            serialise(&Record {
                time_ms: record.time_ms,
                plugin: record.plugin.clone(),
                revision: record.revision.clone(),
                key: record.key.clone(),
                command_id: record.command_id,
                command: condense(&record.command),
                verdict: record.verdict,
                guardrail: record.guardrail.clone(),
                message: record.message.clone(),
            })
        } else {
            serialise(record)
        };
        let mut inner = self.lock();
        if !refused {
            self.close_windows(&mut inner, now, false);
        }
        match line {
            Some(line) => self.push_line(&mut inner, &line),
            None => inner.appended,
        }
    }

    /// Adds a serialised record (with its newline) to the buffer: its sequence number.
    fn push_line(&self, inner: &mut Inner, line: &[u8]) -> u64 {
        let line_len = line.len() as u64;
        if inner.size > 0
            && inner.size + line_len > self.config.max_file_bytes
            && let Err(e) = self.rotate(inner)
        {
            inner.fail(e);
        }
        inner.buf.extend_from_slice(line);
        inner.size += line_len;
        inner.appended += 1;
        if inner.buf.len() >= WRITE_THRESHOLD
            && let Err(e) = inner.write_buf()
        {
            inner.fail(e);
        }
        inner.appended
    }

    /// Writes the summary of every plugin's minute of refused commands that ended
    /// (every minute when `all`), and forgets those minutes.
    fn close_windows(&self, inner: &mut Inner, now: Instant, all: bool) {
        if inner.windows.is_empty() {
            return;
        }
        let ended: Vec<String> = inner
            .windows
            .iter()
            .filter(|(_, w)| all || now.duration_since(w.start) >= VOLUME_WINDOW)
            .map(|(plugin, _)| plugin.clone())
            .collect();
        for plugin in ended {
            let Some(w) = inner.windows.remove(&plugin) else {
                continue;
            };
            if w.suppressed == 0 {
                continue;
            }
            let summary = Record {
                time_ms: System.now_ms(),
                message: format!(
                    "{} refused commands of plugin {plugin} not audited individually in the last minute",
                    w.suppressed
                ),
                plugin,
                revision: w.revision,
                key: None,
                command_id: None,
                command: Value::Null,
                verdict: Verdict::Refused,
                guardrail: None,
            };
            if let Some(line) = serialise(&summary) {
                self.push_line(inner, &line);
            }
        }
    }

    /// Writes every buffered record and syncs the file to disk. Reports (once) any write
    /// error since the last flush.
    pub fn flush(&self) -> Result<()> {
        let mut inner = self.lock();
        self.close_windows(&mut inner, Instant::now(), false);
        self.sync(&mut inner)
    }

    /// Makes the record `seq` ([`append`](Self::append)'s answer) durable: flushes
    /// unless a flush since it was appended already did (concurrent callers share one
    /// fsync).
    pub fn flush_through(&self, seq: u64) -> Result<()> {
        let mut inner = self.lock();
        if inner.synced >= seq && inner.error.is_none() {
            return Ok(());
        }
        self.sync(&mut inner)
    }

    fn sync(&self, inner: &mut Inner) -> Result<()> {
        let result = inner.write_buf().and_then(|()| inner.file.sync_data());
        // Failed or not, the records appended so far are done with: a retry could not
        // bring back a dropped buffer.
        inner.synced = inner.appended;
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

    /// Moves the full file to `path.1` (`.1` to `.2`, …, dropping the oldest kept) and
    /// starts a new one.
    fn rotate(&self, inner: &mut Inner) -> io::Result<()> {
        inner.write_buf()?;
        inner.file.sync_data()?;
        inner.synced = inner.appended;
        let keep = self.config.rotated_files;
        if keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            for n in (1..keep).rev() {
                let from = rotated_path(&self.path, n);
                if from.exists() {
                    fs::rename(from, rotated_path(&self.path, n + 1))?;
                }
            }
            fs::rename(&self.path, rotated_path(&self.path, 1))?;
        }
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

/// A record as one JSON line.
fn serialise(record: &Record) -> Option<Vec<u8>> {
    match serde_json::to_vec(record) {
        Ok(mut line) => {
            line.push(b'\n');
            Some(line)
        }
        Err(e) => {
            // Cannot happen for this type (string keys, no failing serialisers).
            tracing::error!(error = %e, "audit record could not be serialised");
            None
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Refused commands only counted so far get their summary now.
        {
            let mut inner = self.lock();
            self.close_windows(&mut inner, Instant::now(), true);
        }
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

/// Reads every complete record of one audit file (not its rotated files). A partial
/// last line is ignored; any other line that is not a record is an error.
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
                Verdict::DryRun
            },
            guardrail: None,
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

    /// Records of equal length (for `n` < 900).
    fn numbered(n: u64) -> Record {
        Record {
            command_id: Some(100 + n),
            message: format!("record {n:03}"),
            ..record(0)
        }
    }

    fn line_len() -> u64 {
        serde_json::to_vec(&numbered(0)).expect("json").len() as u64 + 1
    }

    #[test]
    fn a_full_file_is_rotated_and_five_files_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        // Room for two records per file.
        let log = AuditLog::open_with_max_bytes(&path, line_len() * 2 + 2).expect("opens");
        for n in 0..14 {
            log.append(&numbered(n));
        }
        log.flush().expect("flushes");
        assert_eq!(
            read(&path).expect("current"),
            vec![numbered(12), numbered(13)]
        );
        for (i, first) in [(1, 10), (2, 8), (3, 6), (4, 4), (5, 2)] {
            let kept = read(rotated_path(&path, i)).expect("rotated file");
            assert_eq!(kept, vec![numbered(first), numbered(first + 1)], ".{i}");
        }
        assert!(
            !rotated_path(&path, 6).exists(),
            "the oldest file is dropped"
        );
        assert!(fs::metadata(&path).expect("exists").len() <= line_len() * 2 + 2);
    }

    #[test]
    fn rotation_keeps_as_many_files_as_configured() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        let config = |rotated_files| Config {
            max_file_bytes: line_len() + 1,
            rotated_files,
            ..Config::default()
        };
        let log = AuditLog::open_with(&path, config(0)).expect("opens");
        for n in 0..3 {
            log.append(&numbered(n));
        }
        log.flush().expect("flushes");
        assert_eq!(read(&path).expect("current"), vec![numbered(2)]);
        assert!(!rotated_path(&path, 1).exists());
        drop(log);
        let log = AuditLog::open_with(&path, config(2)).expect("reopens");
        for n in 3..8 {
            log.append(&numbered(n));
        }
        log.flush().expect("flushes");
        assert_eq!(read(rotated_path(&path, 2)).expect(".2"), vec![numbered(5)]);
        assert!(!rotated_path(&path, 3).exists());
    }

    fn refused(plugin: &str, n: u64) -> Record {
        Record {
            plugin: plugin.to_owned(),
            command_id: None,
            verdict: Verdict::Refused,
            guardrail: Some("rate-limit".to_owned()),
            ..record(n)
        }
    }

    fn executed(plugin: &str, n: u64) -> Record {
        Record {
            plugin: plugin.to_owned(),
            verdict: Verdict::Executed,
            guardrail: None,
            ..record(n)
        }
    }

    #[test]
    fn a_flood_of_refused_commands_from_one_plugin_is_bounded_and_summarised() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        let config = Config {
            refused_per_minute: 10,
            ..Config::default()
        };
        let log = AuditLog::open_with(&path, config).expect("opens");
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for n in 0..1000 {
            log.append_at(&refused("flood", n), at(n));
            if n % 200 == 0 {
                // Executed commands are never dropped, whatever the volume.
                log.append_at(&executed("flood", n), at(n));
            }
        }
        for n in 0..3 {
            log.append_at(&refused("calm", n), at(1000 + n));
        }
        log.flush().expect("flushes");
        let records = read(&path).expect("reads");
        let count = |plugin: &str, verdict: Verdict| {
            records
                .iter()
                .filter(|r| r.plugin == plugin && r.verdict == verdict)
                .count()
        };
        assert_eq!(count("flood", Verdict::Refused), 10, "bounded");
        assert_eq!(count("flood", Verdict::Executed), 5, "all kept");
        assert_eq!(
            count("calm", Verdict::Refused),
            3,
            "another plugin's own budget"
        );

        // The next record after the minute closes the window with a summary.
        log.append_at(&executed("calm", 5000), at(60_001));
        log.append_at(&refused("flood", 5001), at(60_002));
        log.flush().expect("flushes");
        let records = read(&path).expect("reads");
        let summary = records
            .iter()
            .find(|r| r.command.is_null())
            .expect("a summary");
        assert_eq!(summary.plugin, "flood");
        assert_eq!(summary.verdict, Verdict::Refused);
        assert_eq!(
            summary.message,
            "990 refused commands of plugin flood not audited individually in the last minute"
        );
        assert_eq!(records.iter().filter(|r| r.command.is_null()).count(), 1);
        // A new minute: audited one by one again.
        assert_eq!(
            records.last().map(|r| r.command["prefix"].is_string()),
            Some(true),
            "{:?}",
            records.last()
        );

        // Counted commands of a minute still open are summarised when the log closes.
        for n in 0..20 {
            log.append_at(&refused("flood", n), at(60_003 + n));
        }
        drop(log);
        let last = read(&path).expect("reads").pop().expect("a record");
        assert_eq!(
            last.message,
            "11 refused commands of plugin flood not audited individually in the last minute"
        );
    }

    #[test]
    fn a_refused_command_is_kept_as_a_digest_and_a_bounded_prefix() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).expect("opens");
        let command = json!({
            "command": "merge-patch",
            "target": { "name": "web-0" },
            "patch": "é".repeat(8 * 1024),
        });
        let text = command.to_string();
        for verdict in [Verdict::Refused, Verdict::Executed] {
            log.append(&Record {
                command: command.clone(),
                verdict,
                guardrail: (verdict == Verdict::Refused).then(|| "rate-limit".to_owned()),
                ..record(0)
            });
        }
        log.flush().expect("flushes");
        let lines = fs::read_to_string(&path).expect("reads");
        let lines: Vec<&str> = lines.lines().collect();
        assert!(
            lines[0].len() < 2 * REFUSED_PREFIX_BYTES,
            "{}",
            lines[0].len()
        );
        assert!(
            lines[1].len() > text.len(),
            "executed commands are kept whole"
        );

        let records = read(&path).expect("reads");
        assert_eq!(records[0].guardrail.as_deref(), Some("rate-limit"));
        let kept = &records[0].command;
        assert_eq!(kept["command"], "merge-patch");
        assert_eq!(kept["bytes"], text.len());
        assert_eq!(
            kept["sha256"].as_str(),
            Some(hex::encode(Sha256::digest(text.as_bytes())).as_str())
        );
        let prefix = kept["prefix"].as_str().expect("prefix");
        assert!(prefix.len() <= REFUSED_PREFIX_BYTES && prefix.len() > REFUSED_PREFIX_BYTES - 4);
        assert!(text.starts_with(prefix));
        assert_eq!(records[1].command, command);
    }

    #[test]
    fn the_runtime_config_has_an_audit_section() {
        let config = crate::Config::parse("audit:\n  rotatedFiles: 3\n  refusedPerMinute: 50\n")
            .expect("valid");
        assert_eq!(
            config.audit,
            Config {
                rotated_files: 3,
                refused_per_minute: 50,
                ..Config::default()
            }
        );
        assert_eq!(crate::Config::default().audit.rotated_files, 5);
        let err = crate::Config::parse("audit:\n  rotated: 3\n").expect_err("typo");
        assert!(err.contains("rotated"), "{err}");
    }

    #[test]
    fn flush_through_syncs_only_records_not_on_disk_yet() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).expect("opens");
        let first = log.append(&record(0));
        let second = log.append(&record(2));
        assert_eq!(second, first + 1);
        assert_eq!(fs::metadata(&path).expect("exists").len(), 0, "buffered");
        log.flush_through(first).expect("flushes");
        assert_eq!(read(&path).expect("reads"), vec![record(0), record(2)]);
        // Already on disk: nothing to do, and a later record stays buffered.
        let third = log.append(&record(4));
        log.flush_through(second).expect("no-op");
        assert_eq!(read(&path).expect("reads").len(), 2);
        log.flush_through(third).expect("flushes");
        assert_eq!(read(&path).expect("reads").len(), 3);
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
