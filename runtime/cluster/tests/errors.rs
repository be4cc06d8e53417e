//! Bad input gets the status code kube-apiserver would answer.

mod common;

use common::{api_only, code, raw};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

#[tokio::test]
async fn bad_input_status_codes() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    let path = "/api/v1/namespaces/default/configmaps";
    let post = |p: &'static str, body: Vec<u8>| {
        let client = client.clone();
        async move { raw(&client, "POST", p, "application/json", body).await }
    };

    let malformed = post(path, b"{not json".to_vec())
        .await
        .expect_err("malformed");
    assert_eq!(code(&malformed), 400);
    match &malformed {
        kube::Error::Api(s) => {
            assert_eq!(s.reason, "BadRequest");
            assert!(s.message.contains("invalid JSON"), "{}", s.message);
        }
        other => anyhow::bail!("expected a Status, got {other:?}"),
    }

    let missing_ns = post(
        "/api/v1/namespaces/nope/configmaps",
        br#"{"metadata":{"name":"a"}}"#.to_vec(),
    )
    .await
    .expect_err("no namespace");
    assert_eq!(code(&missing_ns), 404);

    let unknown = post("/api/v1/namespaces/default/widgets", b"{}".to_vec())
        .await
        .expect_err("unknown resource");
    assert_eq!(code(&unknown), 404);

    let bad_name = post(path, br#"{"metadata":{"name":"Not_A_Name"}}"#.to_vec())
        .await
        .expect_err("invalid name");
    assert_eq!(code(&bad_name), 422);

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dup"}}))?;
    cms.create(&PostParams::default(), &cm).await?;
    let dup = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect_err("exists");
    assert_eq!(code(&dup), 409);

    let big = format!(
        r#"{{"metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#,
        "a".repeat(4 * 1024 * 1024)
    );
    let too_large = post(path, big.into_bytes()).await.expect_err("too large");
    assert_eq!(code(&too_large), 413);

    let bad_patch = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/dup",
        "application/merge-patch+json",
        b"[1,".to_vec(),
    )
    .await
    .expect_err("malformed patch");
    assert_eq!(code(&bad_patch), 400);

    let bad_selector = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20b",
        "application/json",
        Vec::new(),
    )
    .await
    .expect_err("bad selector");
    assert_eq!(code(&bad_selector), 400);
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn discovery_and_health() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    let version = client.apiserver_version().await?;
    assert_eq!(version.major, "1");
    let groups = client.list_api_groups().await?;
    assert!(groups.groups.iter().any(|g| g.name == "apps"));
    let core = client.list_core_api_resources("v1").await?;
    assert!(core.resources.iter().any(|r| r.name == "pods/eviction"));
    let apps = client.list_api_group_resources("apps/v1").await?;
    assert!(
        apps.resources
            .iter()
            .any(|r| r.name == "statefulsets/scale")
    );
    let health = raw(&client, "GET", "/readyz", "text/plain", Vec::new()).await?;
    assert_eq!(health, serde_json::Value::String("ok".into()));
    c.shutdown().await;
    Ok(())
}
