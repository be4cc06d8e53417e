//! CustomResourceDefinitions and the resources they define.

mod common;

use common::{api_only, code, eventually};
use futures::TryStreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;

fn crd(scope: &str, plural: &str, kind: &str) -> anyhow::Result<CustomResourceDefinition> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("{plural}.bosun.dev")},
        "spec": {
            "group": "bosun.dev",
            "scope": scope,
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["replicas"], "properties": {
                        "replicas": {"type": "integer", "minimum": 0},
                        "image": {"type": "string"}
                    }},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }}}
            }]
        }
    }))?)
}

fn resource(plural: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("bosun.dev", "v1", kind), plural)
}

#[tokio::test]
async fn custom_resources_crud_watch_and_validation() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created = crds
        .create(
            &PostParams::default(),
            &crd("Namespaced", "rollouts", "Rollout")?,
        )
        .await?;
    let established = created
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);

    let ar = resource("rollouts", "Rollout");
    let api: Api<DynamicObject> = Api::default_namespaced_with(client.clone(), &ar);
    let rv = api
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut watch = Box::pin(api.watch(&WatchParams::default().timeout(10), &rv).await?);

    let mut obj = DynamicObject::new("web", &ar);
    obj.data = json!({"spec": {"replicas": 2, "image": "app:v1"}});
    let made = api.create(&PostParams::default(), &obj).await?;
    assert_eq!(made.metadata.generation, Some(1));
    match watch.try_next().await? {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("web")),
        other => anyhow::bail!("expected ADDED, got {other:?}"),
    }

    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    assert_eq!(patched.metadata.generation, Some(2));
    let with_status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": 3}})),
        )
        .await?;
    assert_eq!(with_status.data["status"]["ready"], 3);
    assert_eq!(
        with_status.metadata.generation,
        Some(2),
        "status is not spec"
    );

    let mut bad = DynamicObject::new("bad", &ar);
    bad.data = json!({"spec": {"replicas": "two"}});
    assert_eq!(
        code(
            &api.create(&PostParams::default(), &bad)
                .await
                .expect_err("type")
        ),
        422
    );
    bad.data = json!({"spec": {"image": "x"}});
    assert_eq!(
        code(
            &api.create(&PostParams::default(), &bad)
                .await
                .expect_err("required")
        ),
        422
    );

    // Cluster-scoped kinds live outside namespaces.
    crds.create(&PostParams::default(), &crd("Cluster", "fleets", "Fleet")?)
        .await?;
    let far = resource("fleets", "Fleet").clone();
    let fleets: Api<DynamicObject> = Api::all_with(client.clone(), &far);
    let mut f = DynamicObject::new("blue", &far);
    f.data = json!({"spec": {"replicas": 1}});
    let made = fleets.create(&PostParams::default(), &f).await?;
    assert_eq!(made.metadata.namespace, None);
    assert_eq!(fleets.list(&ListParams::default()).await?.items.len(), 1);

    // Deleting the definition removes its objects and stops serving the resource.
    crds.delete("rollouts.bosun.dev", &DeleteParams::default())
        .await?;
    assert_eq!(code(&api.get("web").await.expect_err("not served")), 404);
    c.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn custom_resources_have_no_protobuf_form() -> anyhow::Result<()> {
    let c = api_only().await?;
    let client = c.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &crd("Namespaced", "widgets", "Widget")?,
    )
    .await?;
    let send = |accept: &'static str| {
        let client = client.clone();
        async move {
            let req = http::Request::get("/apis/bosun.dev/v1/namespaces/default/widgets")
                .header("accept", accept)
                .body(kube::client::Body::empty())?;
            let resp = client.send(req).await?;
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            anyhow::Ok((resp.status().as_u16(), ct))
        }
    };
    // Protobuf first with JSON after: JSON, as kube-apiserver answers for CRs.
    let (code, ct) = eventually(10, || async {
        send("application/vnd.kubernetes.protobuf, application/json")
            .await
            .ok()
            .filter(|(code, _)| *code == 200)
    })
    .await?;
    assert_eq!((code, ct.as_str()), (200, "application/json"));
    // Protobuf only: 406 before anything is done.
    let (code, _) = send("application/vnd.kubernetes.protobuf").await?;
    assert_eq!(code, 406);
    Ok(())
}
