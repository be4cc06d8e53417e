//! `bosun release status [NS/NAME]`: the release plugin's progress, read from the
//! StatefulSets that opted in (annotation `release.bosun.dev/strategy`) and the status the
//! plugin keeps on them (annotation `release.bosun.dev/status`).
//!
//! The cluster is the one `--kubeconfig` names, else `KUBECONFIG`, else the embedded
//! cluster of a `bosun up` started in this directory (`.bosun/cluster/kubeconfig`), else
//! `~/.kube/config` or the in-cluster service account.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;
use serde_json::Value;

use bosun_api::keys::{
    RELEASE_STATUS_ANNOTATION as STATUS, RELEASE_STRATEGY_ANNOTATION as STRATEGY,
};

/// Where `bosun up` (default data dir) writes the embedded cluster's kubeconfig.
pub const UP_KUBECONFIG: &str = ".bosun/cluster/kubeconfig";

/// `bosun release` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the release of every opted-in StatefulSet, or of one.
    Status(StatusArgs),
}

/// Flags of `bosun release status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// `NAMESPACE/NAME` of one StatefulSet, or `NAMESPACE` for all of one namespace
    /// (default: every namespace).
    pub target: Option<String>,
    /// Kubeconfig of the cluster (default: KUBECONFIG, then `.bosun/cluster/kubeconfig`
    /// of `bosun up`, then ~/.kube/config or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Print JSON (an array of rows) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which StatefulSets to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every namespace.
    All,
    /// Every opted-in StatefulSet of one namespace.
    Namespace(String),
    /// One StatefulSet.
    One {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

impl Target {
    /// Parses `NS/NAME` or `NS`; an empty part or a third part is an error naming the forms.
    pub fn parse(text: Option<&str>) -> anyhow::Result<Self> {
        let Some(text) = text else {
            return Ok(Target::All);
        };
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [ns] if !ns.is_empty() => Ok(Target::Namespace((*ns).to_owned())),
            [ns, name] if !ns.is_empty() && !name.is_empty() => Ok(Target::One {
                namespace: (*ns).to_owned(),
                name: (*name).to_owned(),
            }),
            _ => bail!("invalid target {text:?}: expected NAMESPACE/NAME or NAMESPACE"),
        }
    }
}

/// One StatefulSet's release, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `InPlaceIfPossible`, `InPlaceOnly` or `Recreate` (as annotated).
    pub strategy: String,
    /// The target revision; `None` until the plugin has written a status.
    pub revision: Option<String>,
    /// Pods at the target revision.
    pub updated: u64,
    /// Pods available (Ready, running what their spec asks).
    pub ready: u64,
    /// Pods the StatefulSet should have.
    pub total: u64,
    /// Pods that failed to start at the target revision.
    pub failed: u64,
    /// Why the release is paused (or cannot start), if it is.
    pub paused: Option<String>,
}

impl Row {
    /// The row of `sts`, or `None` when it has not opted in.
    pub fn of(sts: &StatefulSet) -> Option<Self> {
        let annotations = sts.metadata.annotations.as_ref()?;
        let strategy = annotations.get(STRATEGY)?.clone();
        let status: Value = annotations
            .get(STATUS)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        let n = |k: &str| status[k].as_u64().unwrap_or(0);
        Some(Row {
            namespace: sts.metadata.namespace.clone().unwrap_or_default(),
            name: sts.metadata.name.clone().unwrap_or_default(),
            strategy,
            revision: status["revision"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
            updated: n("updated"),
            ready: n("ready"),
            total: n("total"),
            failed: n("failed"),
            paused: status["paused"].as_str().map(str::to_owned),
        })
    }
}

/// The kubeconfig to use: the flag, else `KUBECONFIG`, else `bosun up`'s in `dir` when it
/// exists; `None` leaves the choice to kube's inference.
pub fn kubeconfig(flag: Option<&Path>, dir: &Path) -> Option<PathBuf> {
    if let Some(path) = flag {
        return Some(path.to_owned());
    }
    if std::env::var_os("KUBECONFIG").is_some() {
        return None;
    }
    let up = dir.join(UP_KUBECONFIG);
    up.is_file().then_some(up)
}

/// The rows for `target`, sorted by namespace and name. One named StatefulSet that does
/// not exist or has not opted in is an error.
pub async fn rows(client: kube::Client, target: &Target) -> anyhow::Result<Vec<Row>> {
    let mut rows = match target {
        Target::One { namespace, name } => {
            let api: Api<StatefulSet> = Api::namespaced(client, namespace);
            let sts = api
                .get_opt(name)
                .await
                .with_context(|| format!("cannot read StatefulSet {namespace}/{name}"))?
                .with_context(|| format!("StatefulSet {namespace}/{name} not found"))?;
            let row = Row::of(&sts).with_context(|| {
                format!(
                    "StatefulSet {namespace}/{name} is not released by Bosun: it has no \
                     {STRATEGY} annotation"
                )
            })?;
            vec![row]
        }
        Target::Namespace(ns) => list(Api::namespaced(client, ns)).await?,
        Target::All => list(Api::all(client)).await?,
    };
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(rows)
}

async fn list(api: Api<StatefulSet>) -> anyhow::Result<Vec<Row>> {
    let list = api
        .list(&ListParams::default())
        .await
        .context("cannot list StatefulSets")?;
    Ok(list.items.iter().filter_map(Row::of).collect())
}

/// The rows as a table with a header.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<32} {:<18} {:<24} {:>8} {:>6} {:>6} {:>6}  {}\n",
        "STATEFULSET", "STRATEGY", "REVISION", "UPDATED", "READY", "TOTAL", "FAILED", "PAUSED"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<32} {:<18} {:<24} {:>8} {:>6} {:>6} {:>6}  {}\n",
            format!("{}/{}", r.namespace, r.name),
            r.strategy,
            r.revision.as_deref().unwrap_or("(pending)"),
            r.updated,
            r.ready,
            r.total,
            r.failed,
            r.paused.as_deref().unwrap_or("-"),
        ));
    }
    out
}

/// `bosun release ...`.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Status(args) => status(args),
    }
}

/// `bosun release status`.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let target = Target::parse(args.target.as_deref())?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let kubeconfig = kubeconfig(args.kubeconfig.as_deref(), &cwd);
    let rows = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(tracing::Instrument::instrument(
            async {
                let client = bosun_runtime::connect::client(kubeconfig.as_deref()).await?;
                rows(client, &target).await
            },
            tracing::info_span!("bosun.cli.release_status"),
        ))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no StatefulSet has the {STRATEGY} annotation");
    } else {
        print!("{}", table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_or_name_the_valid_forms() {
        assert_eq!(Target::parse(None).ok(), Some(Target::All));
        assert_eq!(
            Target::parse(Some("demo")).ok(),
            Some(Target::Namespace("demo".into()))
        );
        assert_eq!(
            Target::parse(Some("demo/web")).ok(),
            Some(Target::One {
                namespace: "demo".into(),
                name: "web".into()
            })
        );
        for bad in ["", "/web", "demo/", "a/b/c"] {
            let err = Target::parse(Some(bad)).expect_err("invalid");
            assert!(err.to_string().contains("NAMESPACE/NAME"), "{err}");
        }
    }

    #[test]
    fn rows_read_the_strategy_and_the_status_annotation() {
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "demo", "annotations": {
                STRATEGY: "InPlaceOnly",
                STATUS: r#"{"revision":"web-abc","updated":2,"ready":1,"total":3,"failed":1,"paused":"2 pods failed"}"#,
            }},
        }))
        .expect("sts");
        let row = Row::of(&sts).expect("opted in");
        assert_eq!(row.revision.as_deref(), Some("web-abc"));
        assert_eq!(
            (row.updated, row.ready, row.total, row.failed),
            (2, 1, 3, 1)
        );
        assert_eq!(row.paused.as_deref(), Some("2 pods failed"));
        let text = table(&[row]);
        assert!(text.contains("demo/web"), "{text}");
        assert!(text.contains("2 pods failed"), "{text}");
        let plain: StatefulSet =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).expect("sts");
        assert_eq!(Row::of(&plain), None);
    }
}
