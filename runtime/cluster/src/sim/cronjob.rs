//! The CronJob controller, as kube-controller-manager's cronjob controller v2 runs it: at
//! each time the 5-field `schedule` names it creates a Job `NAME-<scheduled minute since
//! the epoch>` from `jobTemplate`, owned by the CronJob and annotated
//! `batch.kubernetes.io/cronjob-scheduled-timestamp`; Events `SuccessfulCreate`
//! (`Created job NAME`), `SawCompletedJob`, `SuccessfulDelete` (`Deleted job NAME`),
//! `MissSchedule`. Of the missed times only the most recent runs (and not when it is
//! later than `startingDeadlineSeconds`); `concurrencyPolicy` `Forbid` waits while a
//! Job is active (the time then runs when it ends, unless past the deadline, as kube
//! does), `Replace` deletes the active Jobs first; `suspend` stops scheduling. Finished
//! Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` are deleted,
//! oldest first. `status.active` lists the Jobs of the CronJob that have not finished.
//!
//! Time: the schedule follows real (wall-clock) time; [`super::Config::speed`] does not
//! scale it. One minute of the schedule lasts [`super::Config::cron_minute`] (60 s;
//! tests shorten it): minute `k` of the schedule is the real instant
//! `k * cron_minute` after the epoch, and its calendar fields (minute, hour, day, month,
//! weekday) are those of `k * 60` seconds after the epoch, in UTC (only UTC is served:
//! another `timeZone` is refused). `startingDeadlineSeconds` counts seconds of the
//! schedule (scaled as its minutes are). Times written (`lastScheduleTime`, the
//! annotation) are the real instants. `@every` is not supported.

use super::Ctx;
use super::creates::Creates;
use super::events::{self, Note};
use crate::meta;
use crate::store::DeleteOptions;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The annotation on a CronJob's Job: its scheduled time.
pub(crate) const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// A parsed schedule: which minutes, hours, days, months and weekdays match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Whether day-of-month / day-of-week were `*` (then both must match, else either).
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field's bits and whether it was a star, as robfig/cron parses it (kube's parser).
fn field(expr: &str, min: u64, max: u64, names: &[&str], base: u64) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        let (b, s) = range(part, min, max, names, base)?;
        bits |= b;
        star |= s;
    }
    Ok((bits, star))
}

fn number(s: &str, names: &[&str], base: u64) -> Result<u64, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u64 + base);
    }
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {s}")),
        Ok(n) => Ok(n.unsigned_abs()),
        Err(e) => Err(format!("failed to parse int from {s}: {e}")),
    }
}

fn range(expr: &str, min: u64, max: u64, names: &[&str], base: u64) -> Result<(u64, bool), String> {
    let steps: Vec<&str> = expr.split('/').collect();
    let bounds: Vec<&str> = steps[0].split('-').collect();
    let single = bounds.len() == 1;
    let mut star = false;
    let (start, mut end) = if bounds[0] == "*" || bounds[0] == "?" {
        star = true;
        (min, max)
    } else {
        let start = number(bounds[0], names, base)?;
        match bounds.len() {
            1 => (start, start),
            2 => (start, number(bounds[1], names, base)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match steps.len() {
        1 => 1,
        2 => {
            let step = number(steps[1], &[], 0)?;
            if single {
                end = max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let bits = (start..=end)
        .step_by(usize::try_from(step).unwrap_or(usize::MAX))
        .fold(0u64, |b, i| b | (1 << i));
    Ok((bits, star))
}

impl Schedule {
    /// Parses a standard cron spec as kube's `cron.ParseStandard` does (errors worded as
    /// it words them); `@every` is not supported.
    pub(crate) fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        let spec = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ));
        }
        let (minute, _) = field(fields[0], 0, 59, &[], 0)?;
        let (hour, _) = field(fields[1], 0, 23, &[], 0)?;
        let (dom, dom_star) = field(fields[2], 1, 31, &[], 0)?;
        let (month, _) = field(fields[3], 1, 12, &MONTHS, 1)?;
        let (dow, dow_star) = field(fields[4], 0, 6, &DAYS, 0)?;
        Ok(Self {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    /// Whether minute `k` since the epoch (UTC) matches.
    pub(crate) fn matches(&self, k: i64) -> bool {
        let bit = |set: u64, i: i64| set & (1u64 << i) != 0;
        let days = k.div_euclid(1440);
        let in_day = k.rem_euclid(1440);
        if !bit(self.minute, in_day % 60) || !bit(self.hour, in_day / 60) {
            return false;
        }
        let (month, day) = civil(days);
        if !bit(self.month, month) {
            return false;
        }
        let dom = bit(self.dom, day);
        let dow = bit(self.dow, (days + 4).rem_euclid(7));
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

/// (month 1-12, day 1-31) of a day since the epoch (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (month, day)
}

/// How far back or ahead a pass looks for a scheduled minute: a bit over four years
/// (a 29 February schedule).
const HORIZON: i64 = 1440 * (366 * 4 + 2);

/// Real milliseconds since the epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn rfc3339_ms(ms: i64) -> String {
    meta::rfc3339(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// One pass over every CronJob.
pub(crate) fn reconcile(ctx: &Ctx, _: &super::Wake, _: &mut Creates) -> Option<Instant> {
    let cronjobs = ctx.store.all(&ctx.kinds.cronjobs.storage_key());
    if cronjobs.is_empty() {
        return None;
    }
    let jobs = ctx.store.all(&ctx.kinds.jobs.storage_key());
    let jobs_of = super::by_owner(&jobs);
    let none = Vec::new();
    let minute = i64::try_from(ctx.control.config.cron_minute.as_millis())
        .unwrap_or(i64::MAX)
        .max(1000);
    cronjobs
        .iter()
        .filter(|c| !meta::is_deleting(c))
        .filter_map(|cj| {
            let jobs = jobs_of.get(meta::uid_of(cj)).unwrap_or(&none);
            sync(ctx, cj, jobs, minute)
        })
        .min()
}

fn finished(job: &Value) -> Option<&'static str> {
    let conds = meta::path(job, "status.conditions").and_then(Value::as_array)?;
    ["Complete", "Failed"].into_iter().find(|t| {
        conds
            .iter()
            .any(|c| meta::str_at(c, "type") == *t && meta::str_at(c, "status") == "True")
    })
}

fn job_ref(job: &Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": meta::name(job),
        "namespace": meta::namespace(job), "uid": meta::uid_of(job),
        "resourceVersion": meta::str_at(job, "metadata.resourceVersion")})
}

fn delete_job(ctx: &Ctx, cj: &Value, job: &Value) {
    let opts = DeleteOptions {
        propagation: Some("Background".into()),
        ..DeleteOptions::default()
    };
    let (ns, name) = (meta::namespace(job), meta::name(job));
    if ctx.store.delete(&ctx.kinds.jobs, ns, name, &opts).is_ok() {
        let message = format!("Deleted job {name}");
        let note = Note::normal("cronjob-controller", "SuccessfulDelete", &message);
        events::record(ctx, cj, &note);
    }
}

/// Syncs one CronJob; when it next wants a pass.
fn sync(ctx: &Ctx, cj: &Value, jobs: &[&Value], minute: i64) -> Option<Instant> {
    let schedule = Schedule::parse(meta::str_at(cj, "spec.schedule")).ok()?;
    let mut status = cj.get("status").cloned().filter(Value::is_object);
    let mut status = status.take().unwrap_or_else(|| json!({}));
    let was_active: Vec<String> = status
        .get("active")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| meta::str_at(r, "name").to_string())
        .collect();
    // Jobs that finished since the last pass.
    let mut last_success = status
        .get("lastSuccessfulTime")
        .and_then(Value::as_str)
        .map(str::to_string);
    for job in jobs
        .iter()
        .filter(|j| was_active.iter().any(|n| n == meta::name(j)))
    {
        if let Some(how) = finished(job) {
            let message = format!("Saw completed job: {}, status: {how}", meta::name(job));
            let note = Note::normal("cronjob-controller", "SawCompletedJob", &message);
            events::record(ctx, cj, &note);
            let done = meta::str_at(job, "status.completionTime");
            if how == "Complete" && !done.is_empty() && last_success.as_deref() < Some(done) {
                last_success = Some(done.to_string());
            }
        }
    }
    let mut active: Vec<&Value> = jobs
        .iter()
        .copied()
        .filter(|j| finished(j).is_none() && !meta::is_deleting(j))
        .collect();
    let now = now_ms();
    let n = now.div_euclid(minute);
    // When the next scheduled minute is (real time).
    let next = (n + 1..n + HORIZON).find(|k| schedule.matches(*k));
    let wake = next.and_then(|k| {
        let wait = u64::try_from(k.saturating_mul(minute) - now).unwrap_or(0);
        Instant::now().checked_add(Duration::from_millis(wait))
    });
    let suspended = meta::path(cj, "spec.suspend").and_then(Value::as_bool) == Some(true);
    let deadline = meta::path(cj, "spec.startingDeadlineSeconds")
        .and_then(Value::as_i64)
        .map(|s| s.saturating_mul(minute) / 60);
    // The earliest minute not yet considered: after the last scheduled one, or after the
    // creation.
    let secs_ms = |s: i64| s.saturating_mul(1000);
    let mut earliest = match status
        .get("lastScheduleTime")
        .and_then(Value::as_str)
        .and_then(meta::parse_rfc3339)
    {
        Some(t) => (secs_ms(t) + minute - 1).div_euclid(minute),
        None => meta::parse_rfc3339(meta::str_at(cj, "metadata.creationTimestamp"))
            .map_or(n, |t| secs_ms(t).div_euclid(minute)),
    };
    if let Some(d) = deadline {
        earliest = earliest.max((now - d).div_euclid(minute) - 1);
    }
    let due = if suspended {
        None
    } else {
        (earliest.max(n - HORIZON) + 1..=n)
            .rev()
            .find(|k| schedule.matches(*k))
    };
    let policy = meta::str_at(cj, "spec.concurrencyPolicy");
    if let Some(k) = due {
        let at = k.saturating_mul(minute);
        if deadline.is_some_and(|d| at + d < now) {
            let message = format!("Missed scheduled time to start a job: {}", rfc3339_ms(at));
            let note = Note {
                type_: "Warning",
                ..Note::normal("cronjob-controller", "MissSchedule", &message)
            };
            events::record(ctx, cj, &note);
        } else if policy == "Forbid" && !active.is_empty() {
            // Not started while a Job runs; lastScheduleTime stays, so the time runs when
            // the Job ends (as kube's controller does).
        } else {
            if policy == "Replace" {
                active.iter().for_each(|j| delete_job(ctx, cj, j));
                active.clear();
            }
            match create_job(ctx, cj, k, at) {
                Ok(job) => {
                    status["lastScheduleTime"] = json!(rfc3339_ms(at));
                    let name = meta::name(&job).to_string();
                    let message = format!("Created job {name}");
                    let note = Note::normal("cronjob-controller", "SuccessfulCreate", &message);
                    events::record(ctx, cj, &note);
                    let mut refs: Vec<Value> = active.iter().map(|j| job_ref(j)).collect();
                    refs.push(job_ref(&job));
                    return finish(ctx, cj, jobs, status, refs, last_success, wake);
                }
                Err(e) if e.code == 409 => status["lastScheduleTime"] = json!(rfc3339_ms(at)),
                Err(e) => {
                    let message = format!("Error creating job: {}", e.message);
                    let note = Note {
                        type_: "Warning",
                        ..Note::normal("cronjob-controller", "FailedCreate", &message)
                    };
                    events::record(ctx, cj, &note);
                }
            }
        }
    }
    let refs = active.iter().map(|j| job_ref(j)).collect();
    finish(ctx, cj, jobs, status, refs, last_success, wake)
}

/// Prunes the history and writes the status.
fn finish(
    ctx: &Ctx,
    cj: &Value,
    jobs: &[&Value],
    mut status: Value,
    refs: Vec<Value>,
    last_success: Option<String>,
    wake: Option<Instant>,
) -> Option<Instant> {
    for (how, field, default) in [
        ("Complete", "spec.successfulJobsHistoryLimit", 3),
        ("Failed", "spec.failedJobsHistoryLimit", 1),
    ] {
        let limit = meta::path(cj, field)
            .and_then(Value::as_u64)
            .unwrap_or(default);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut done: Vec<&Value> = jobs
            .iter()
            .copied()
            .filter(|j| finished(j) == Some(how) && !meta::is_deleting(j))
            .collect();
        if done.len() <= limit {
            continue;
        }
        // Oldest start first (no start time last), the name breaking ties.
        done.sort_by_key(|j| {
            let start = meta::str_at(j, "status.startTime");
            (
                start.is_empty(),
                start.to_string(),
                meta::name(j).to_string(),
            )
        });
        let extra = done.len() - limit;
        done.iter().take(extra).for_each(|j| delete_job(ctx, cj, j));
    }
    if refs.is_empty() {
        if let Some(m) = status.as_object_mut() {
            m.remove("active");
        }
    } else {
        status["active"] = Value::Array(refs);
    }
    if let Some(t) = last_success {
        status["lastSuccessfulTime"] = json!(t);
    }
    super::write_status(ctx, &ctx.kinds.cronjobs, cj, status);
    wake
}

fn create_job(ctx: &Ctx, cj: &Value, k: i64, at: i64) -> crate::status::Result<Value> {
    let template = meta::path(cj, "spec.jobTemplate")
        .cloned()
        .unwrap_or_default();
    let mut labels = meta::path(&template, "metadata.labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let mut annotations = meta::path(&template, "metadata.annotations")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    annotations[SCHEDULED_ANNOTATION] = json!(rfc3339_ms(at));
    if labels.is_null() {
        labels = json!({});
    }
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": format!("{}-{k}", meta::name(cj)),
            "namespace": meta::namespace(cj),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [super::owner_ref(cj)],
        },
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    });
    ctx.store
        .create(&ctx.kinds.jobs, meta::namespace(cj), job, false)
}

#[cfg(test)]
mod tests {
    use super::Schedule;

    /// Minute `k` of 2024-01-01T00:00Z (a Monday) plus `m` minutes.
    fn at(m: i64) -> i64 {
        28_401_120 + m
    }

    #[test]
    fn schedules_parse_and_match_as_cron_does() {
        let every5 = Schedule::parse("*/5 * * * *").expect("parses");
        assert!(every5.matches(at(0)) && every5.matches(at(5)) && !every5.matches(at(3)));
        let weekly = Schedule::parse("@weekly").expect("parses");
        assert!(!weekly.matches(at(0)) && weekly.matches(at(6 * 1440)));
        let monthly = Schedule::parse("@monthly").expect("parses");
        assert!(monthly.matches(at(0)) && !monthly.matches(at(1440)));
        assert!(monthly.matches(at(31 * 1440)));
        let list = Schedule::parse("0,30 9-17 * jan-mar mon-fri").expect("parses");
        assert!(list.matches(at(9 * 60 + 30)) && !list.matches(at(8 * 60)));
        // Day of month and day of week both given: either.
        let either = Schedule::parse("0 0 15 * sun").expect("parses");
        assert!(either.matches(at(6 * 1440)) && either.matches(at(14 * 1440)));
        assert!(!either.matches(at(1440)));
        for (bad, why) in [
            ("x", "expected exactly 5 fields, found 1: [x]"),
            ("61 * * * *", "end of range (61) above maximum (59): 61"),
            ("@every 5m", "unrecognized descriptor: @every 5m"),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
        ] {
            assert_eq!(Schedule::parse(bad), Err(why.to_string()));
        }
    }
}
