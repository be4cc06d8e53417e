"""The official Python Kubernetes client against the embedded cluster.

Usage: client_sequence.py KUBECONFIG

Each step prints `ok STEP`, or the script exits non-zero naming the step and what
differed. The assertions state what kube-apiserver does; a step that fails on a known
gap of the embedded cluster is listed in KNOWN_GAPS and prints `gap STEP: reason`
instead (and fails once the gap is closed, so that the entry gets removed).
"""

import json
import os
import sys
import threading
import time
import traceback

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

# Steps the embedded cluster does not pass yet, with the difference from kube-apiserver.
KNOWN_GAPS = {}

NS = f"py-client-{os.getpid()}"
WAIT = 30  # seconds for anything the simulation does


def meta(name, labels=None):
    return client.V1ObjectMeta(name=name, namespace=NS, labels=labels)


def status_of(e):
    """The `Status` body of an API error, as a dict."""
    try:
        return json.loads(e.body)
    except (TypeError, ValueError):
        return {}


def expect_error(code, f, *args, **kwargs):
    """Calls f, which must fail with HTTP `code`; returns the Status body."""
    try:
        f(*args, **kwargs)
    except ApiException as e:
        assert e.status == code, f"expected HTTP {code}, got {e.status}: {e.body}"
        return status_of(e)
    raise AssertionError(f"expected HTTP {code}, the call succeeded")


def eventually(what, f, secs=WAIT):
    """Polls f until it returns a truthy value."""
    deadline = time.monotonic() + secs
    last = None
    while time.monotonic() < deadline:
        last = f()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {secs}s (last: {last!r})")


def container(name, image):
    return client.V1Container(name=name, image=image)


def pod(name, labels):
    return client.V1Pod(
        metadata=meta(name, labels),
        spec=client.V1PodSpec(containers=[container("app", "app:v1")]),
    )


def deployment(name, replicas, containers):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=meta(name, labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=containers),
            ),
        ),
    )


def is_ready(p):
    return any(
        c.type == "Ready" and c.status == "True" for c in (p.status.conditions or [])
    )


def step_namespace(api):
    core = api["core"]
    ns = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    assert ns.metadata.name == NS, f"created namespace is {ns.metadata.name!r}"
    assert ns.status.phase == "Active", f"new namespace phase is {ns.status.phase!r}"
    read = core.read_namespace(NS)
    assert read.metadata.uid == ns.metadata.uid, "read namespace has another uid"


def step_pods_by_label(api):
    core = api["core"]
    for name, tier in [("web-0", "front"), ("web-1", "front"), ("db-0", "back")]:
        core.create_namespaced_pod(NS, pod(name, {"app": "shop", "tier": tier}))
    front = core.list_namespaced_pod(NS, label_selector="app=shop,tier=front")
    names = sorted(p.metadata.name for p in front.items)
    assert names == ["web-0", "web-1"], f"tier=front lists {names}"
    not_front = core.list_namespaced_pod(NS, label_selector="app=shop,tier!=front")
    names = sorted(p.metadata.name for p in not_front.items)
    assert names == ["db-0"], f"tier!=front lists {names}"
    in_set = core.list_namespaced_pod(NS, label_selector="tier in (front,back)")
    assert len(in_set.items) == 3, f"tier in (front,back) lists {len(in_set.items)} pods"
    assert front.metadata.resource_version, "the list has no resourceVersion"


def step_watch(api):
    core = api["core"]
    listed = core.list_namespaced_pod(NS, label_selector="app=shop")
    rv = listed.metadata.resource_version

    def patch_later():
        time.sleep(0.5)
        core.patch_namespaced_pod("web-1", NS, {"metadata": {"labels": {"watched": "yes"}}})

    patcher = threading.Thread(target=patch_later)
    patcher.start()
    w = watch.Watch()
    seen = []
    try:
        for event in w.stream(
            core.list_namespaced_pod,
            NS,
            label_selector="app=shop",
            resource_version=rv,
            timeout_seconds=10,
        ):
            obj = event["object"]
            seen.append((event["type"], obj.metadata.name))
            if (
                event["type"] == "MODIFIED"
                and obj.metadata.name == "web-1"
                and (obj.metadata.labels or {}).get("watched") == "yes"
            ):
                assert isinstance(obj, client.V1Pod), f"watch object is {type(obj)}"
                break
        else:
            raise AssertionError(f"no MODIFIED event for web-1 within 10s; saw {seen}")
    finally:
        w.stop()
        patcher.join()
    # From the list's version: no synthetic ADDED for the pods already listed.
    assert all(t != "ADDED" for t, _ in seen), f"watch from the list's version saw {seen}"
    assert w.resource_version and w.resource_version != rv, "watch did not track resourceVersion"


def step_configmap_patches(api):
    core = api["core"]
    core.create_namespaced_config_map(
        NS,
        client.V1ConfigMap(metadata=meta("settings"), data={"a": "1", "b": "2"}),
    )
    merged = core.patch_namespaced_config_map(
        "settings",
        NS,
        {"data": {"b": None, "c": "3"}},
        _content_type="application/merge-patch+json",
    )
    assert merged.data == {"a": "1", "c": "3"}, f"merge patch gave {merged.data}"
    # A list body: the client sends application/json-patch+json.
    patched = core.patch_namespaced_config_map(
        "settings",
        NS,
        [
            {"op": "test", "path": "/data/a", "value": "1"},
            {"op": "replace", "path": "/data/a", "value": "10"},
            {"op": "add", "path": "/data/d", "value": "4"},
            {"op": "remove", "path": "/data/c"},
        ],
    )
    assert patched.data == {"a": "10", "d": "4"}, f"JSON patch gave {patched.data}"
    # A failed `test` op: kube-apiserver answers 422 and changes nothing.
    expect_error(
        422,
        core.patch_namespaced_config_map,
        "settings",
        NS,
        [{"op": "test", "path": "/data/a", "value": "1"}],
    )
    # A dict body: the client sends application/strategic-merge-patch+json.
    strategic = core.patch_namespaced_config_map("settings", NS, {"data": {"e": "5"}})
    assert strategic.data == {"a": "10", "d": "4", "e": "5"}, f"strategic patch gave {strategic.data}"


def step_strategic_merge_containers(api):
    apps = api["apps"]
    apps.create_namespaced_deployment(
        NS,
        deployment("merged", 0, [container("app", "app:v1"), container("sidecar", "proxy:v1")]),
    )
    d = apps.patch_namespaced_deployment(
        "merged",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}},
    )
    images = {c.name: c.image for c in d.spec.template.spec.containers}
    assert images == {"app": "app:v2", "sidecar": "proxy:v1"}, (
        f"containers not merged by name: {images}"
    )
    d = apps.patch_namespaced_deployment(
        "merged",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}},
    )
    names = [c.name for c in d.spec.template.spec.containers]
    assert names == ["app"], f"$patch: delete left containers {names}"
    assert d.metadata.generation == 3, f"two spec patches: generation {d.metadata.generation}"


def step_server_side_apply(api):
    core = api["core"]

    def apply(manager, data, force=None):
        return core.patch_namespaced_config_map(
            "applied",
            NS,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": data},
            field_manager=manager,
            force=force,
            _content_type="application/apply-patch+yaml",
        )

    cm = apply("py-a", {"x": "1", "y": "1"})
    assert cm.data == {"x": "1", "y": "1"}, f"apply created {cm.data}"
    managers = {(m.manager, m.operation) for m in cm.metadata.managed_fields or []}
    assert managers == {("py-a", "Apply")}, f"managedFields after the apply: {managers}"
    status = expect_error(409, apply, "py-b", {"x": "2"})
    assert status.get("reason") == "Conflict", f"conflict reason: {status}"
    want = 'Apply failed with 1 conflict: conflict with "py-a": .data.x'
    assert status.get("message") == want, f"conflict message {status.get('message')!r}, kube says {want!r}"
    cm = apply("py-b", {"x": "2"}, force=True)
    assert cm.data == {"x": "2", "y": "1"}, f"forced apply gave {cm.data}"
    owners = {m.manager: json.dumps(m.fields_v1, sort_keys=True) for m in cm.metadata.managed_fields}
    assert "f:x" in owners.get("py-b", ""), f"py-b does not own data.x: {owners}"
    assert "f:x" not in owners.get("py-a", ""), f"py-a still owns data.x: {owners}"


def apply_config_map(core, name, manager, data, force=None):
    """Server-side apply of a ConfigMap; `data` None leaves the field out."""
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    if data is not None:
        body["data"] = data
    return core.patch_namespaced_config_map(
        name,
        NS,
        body,
        field_manager=manager,
        force=force,
        _content_type="application/apply-patch+yaml",
    )


def step_apply_managed_fields(api):
    core = api["core"]
    cm = apply_config_map(core, "tracked", "py-a", {"x": "1"})
    fields = [m.fields_v1 for m in cm.metadata.managed_fields or [] if m.manager == "py-a"]
    # kube-apiserver strips apiVersion, kind, metadata.name and metadata.namespace.
    want = [{"f:data": {"f:x": {}}}]
    assert fields == want, f"py-a's managedFields fieldsV1 {fields}, kube has {want}"


def step_apply_keeps_others_fields(api):
    core = api["core"]
    apply_config_map(core, "shared", "py-a", {"x": "1", "y": "1"})
    apply_config_map(core, "shared", "py-b", {"x": "2"}, force=True)
    # py-a applies again without data: x stays (py-b owns it), y goes (nobody else does).
    cm = apply_config_map(core, "shared", "py-a", None)
    assert cm.data == {"x": "2"}, f"py-a's apply without data left {cm.data}, kube leaves {{'x': '2'}}"


def step_apply_empty_map(api):
    core = api["core"]
    apply_config_map(core, "emptied", "py-a", {"x": "1"})
    apply_config_map(core, "emptied", "py-b", {"y": "1"})
    # `data: {}` changes no value py-b owns (py-b owns .data.y, not .data): no conflict.
    cm = apply_config_map(core, "emptied", "py-a", {})
    assert cm.data == {"y": "1"}, f"py-a's apply of data: {{}} left {cm.data}"


def step_apply_conflict_causes(api):
    core = api["core"]

    def apply(manager):
        return core.patch_namespaced_config_map(
            "contested",
            NS,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "contested"}, "data": {"k": manager}},
            field_manager=manager,
            _content_type="application/apply-patch+yaml",
        )

    apply("py-a")
    status = expect_error(409, apply, "py-b")
    causes = (status.get("details") or {}).get("causes") or []
    # Go's StatusCause writes its Type as `reason`.
    want = {"reason": "FieldManagerConflict", "message": 'conflict with "py-a"', "field": ".data.k"}
    assert want in [{k: c.get(k) for k in want} for c in causes], (
        f"conflict details.causes {causes}, kube has [{want}] (full Status: {status})"
    )


def step_status_subresource(api):
    apps = api["apps"]
    apps.create_namespaced_deployment(NS, deployment("statusy", 0, [container("app", "app:v1")]))
    condition = {
        "type": "PyClient",
        "status": "True",
        "reason": "Patched",
        "message": "by the status subresource",
        "lastUpdateTime": "2026-01-01T00:00:00Z",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    d = apps.patch_namespaced_deployment_status(
        "statusy",
        NS,
        {"spec": {"replicas": 5}, "status": {"conditions": [condition]}},
        _content_type="application/merge-patch+json",
    )
    assert d.spec.replicas == 0, f"a status patch changed spec.replicas to {d.spec.replicas}"
    assert d.metadata.generation == 1, f"a status patch bumped generation to {d.metadata.generation}"
    types = [c.type for c in d.status.conditions or []]
    assert "PyClient" in types, f"status patch not applied: conditions {types}"
    assert apps.read_namespaced_deployment("statusy", NS).spec.replicas == 0, "spec.replicas changed"
    # And the main resource ignores status.
    d = apps.patch_namespaced_deployment(
        "statusy",
        NS,
        {"metadata": {"labels": {"touched": "yes"}}, "status": {"observedGeneration": 42}},
        _content_type="application/merge-patch+json",
    )
    assert d.metadata.labels.get("touched") == "yes", "label patch lost"
    assert d.status.observed_generation != 42, "a main-resource patch changed status"


def step_scale(api):
    apps, core = api["apps"], api["core"]
    apps.create_namespaced_deployment(NS, deployment("scaled", 1, [container("app", "app:v1")]))
    scale = apps.patch_namespaced_deployment_scale("scaled", NS, {"spec": {"replicas": 3}})
    assert isinstance(scale, client.V1Scale), f"scale patch returned {type(scale)}"
    assert scale.spec.replicas == 3, f"scale patch returned spec.replicas {scale.spec.replicas}"
    scale = apps.read_namespaced_deployment_scale("scaled", NS)
    assert scale.spec.replicas == 3, f"scale read returned spec.replicas {scale.spec.replicas}"
    assert scale.status.selector == "app=scaled", f"scale selector {scale.status.selector!r}"
    assert apps.read_namespaced_deployment("scaled", NS).spec.replicas == 3, "deployment not scaled"

    def ready_pods():
        pods = core.list_namespaced_pod(NS, label_selector="app=scaled").items
        ready = [p for p in pods if is_ready(p) and not p.metadata.deletion_timestamp]
        return len(ready) == 3 and len(pods) == 3

    eventually("3 ready pods of the scaled deployment", ready_pods)
    eventually(
        "scale status.replicas 3",
        lambda: apps.read_namespaced_deployment_scale("scaled", NS).status.replicas == 3,
    )


def step_eviction(api):
    core, policy = api["core"], api["policy"]
    for name in ["guarded-0", "guarded-1"]:
        core.create_namespaced_pod(NS, pod(name, {"app": "guarded"}))
    eventually(
        "2 ready guarded pods",
        lambda: sum(is_ready(p) for p in core.list_namespaced_pod(NS, label_selector="app=guarded").items) == 2,
    )

    def budget(name, min_available):
        pdb = policy.create_namespaced_pod_disruption_budget(
            NS,
            client.V1PodDisruptionBudget(
                metadata=meta(name),
                spec=client.V1PodDisruptionBudgetSpec(
                    min_available=min_available,
                    selector=client.V1LabelSelector(match_labels={"app": "guarded"}),
                ),
            ),
        )

        def processed():
            s = policy.read_namespaced_pod_disruption_budget(name, NS).status
            return s and s.observed_generation == pdb.metadata.generation and s
        return eventually(f"budget {name} processed", processed)

    s = budget("none-left", 2)
    assert s.disruptions_allowed == 0, f"minAvailable 2 of 2: disruptionsAllowed {s.disruptions_allowed}"
    eviction = client.V1Eviction(metadata=meta("guarded-0"))
    status = expect_error(429, core.create_namespaced_pod_eviction, "guarded-0", NS, eviction)
    assert status.get("reason") == "TooManyRequests", f"eviction refusal reason: {status}"
    core.read_namespaced_pod("guarded-0", NS)  # still there
    EVICTION_REFUSAL.update(status)

    policy.delete_namespaced_pod_disruption_budget("none-left", NS)
    s = budget("one-left", 1)
    assert s.disruptions_allowed == 1, f"minAvailable 1 of 2: disruptionsAllowed {s.disruptions_allowed}"
    # This client version answers (data, status code, headers).
    _, code, _ = core.create_namespaced_pod_eviction_with_http_info("guarded-0", NS, eviction)
    assert code == 201, f"allowed eviction answered {code}"

    def evicted():
        pods = {p.metadata.name: p for p in core.list_namespaced_pod(NS).items}
        return "guarded-0" not in pods or pods["guarded-0"].metadata.deletion_timestamp

    eventually("the evicted pod deleted", evicted)


# The Status of the refused eviction, for the next step.
EVICTION_REFUSAL = {}


def step_eviction_refusal_status(api):
    status = EVICTION_REFUSAL
    assert status, "no refused eviction to look at (the eviction step failed)"
    want = "Cannot evict pod as it would violate the pod's disruption budget."
    causes = (status.get("details") or {}).get("causes") or []
    cause = {
        "reason": "DisruptionBudget",
        "message": "The disruption budget none-left needs 2 healthy pods and has 2 currently",
    }
    assert status.get("message") == want and cause in [
        {k: c.get(k) for k in cause} for c in causes
    ], (
        f"eviction refusal: message {status.get('message')!r} and details.causes {causes};"
        f" kube: message {want!r} and the cause {cause}"
    )


def step_crd_validation(api):
    ext, custom = api["ext"], api["custom"]
    group, plural = "pyclient.bosun.dev", "widgets"
    schema = client.V1JSONSchemaProps(
        type="object",
        properties={
            "spec": client.V1JSONSchemaProps(
                type="object",
                required=["size"],
                properties={
                    "size": client.V1JSONSchemaProps(type="integer", minimum=1, maximum=10),
                    "color": client.V1JSONSchemaProps(type="string", enum=["red", "blue"]),
                },
            )
        },
    )
    ext.create_custom_resource_definition(
        client.V1CustomResourceDefinition(
            metadata=client.V1ObjectMeta(name=f"{plural}.{group}"),
            spec=client.V1CustomResourceDefinitionSpec(
                group=group,
                scope="Namespaced",
                names=client.V1CustomResourceDefinitionNames(
                    plural=plural, singular="widget", kind="Widget", list_kind="WidgetList"
                ),
                versions=[
                    client.V1CustomResourceDefinitionVersion(
                        name="v1",
                        served=True,
                        storage=True,
                        schema=client.V1CustomResourceValidation(open_apiv3_schema=schema),
                    )
                ],
            ),
        )
    )

    def established():
        crd = ext.read_custom_resource_definition(f"{plural}.{group}")
        return any(
            c.type == "Established" and c.status == "True"
            for c in (crd.status.conditions if crd.status else None) or []
        )

    eventually("the CRD Established", established)

    def widget(name, spec):
        return {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}

    made = custom.create_namespaced_custom_object(group, "v1", NS, plural, widget("good", {"size": 3, "color": "red"}))
    assert made["spec"] == {"size": 3, "color": "red"}, f"valid widget stored as {made['spec']}"
    got = custom.get_namespaced_custom_object(group, "v1", NS, plural, "good")
    assert got["metadata"]["uid"] == made["metadata"]["uid"], "read widget has another uid"

    status = expect_error(
        422,
        custom.create_namespaced_custom_object,
        group, "v1", NS, plural, widget("too-big", {"size": 99}),
    )
    assert status.get("reason") == "Invalid", f"invalid widget reason: {status}"
    message = status.get("message", "")
    want = (
        'Widget.pyclient.bosun.dev "too-big" is invalid: spec.size: Invalid value: 99:'
        " spec.size in body should be less than or equal to 10"
    )
    assert message == want, f"invalid widget message {message!r}, kube says {want!r}"
    fields = [c.get("field") for c in (status.get("details") or {}).get("causes") or []]
    assert "spec.size" in fields, f"invalid widget causes name {fields}, not spec.size"

    status = expect_error(
        422,
        custom.create_namespaced_custom_object,
        group, "v1", NS, plural, widget("wrong-color", {"size": 1, "color": "green"}),
    )
    message = status.get("message", "")
    assert 'spec.color: Unsupported value: "green": supported values: "red", "blue"' in message, (
        f"enum violation message {message!r}"
    )
    expect_error(404, custom.get_namespaced_custom_object, group, "v1", NS, plural, "too-big")


STEPS = [
    ("namespace", step_namespace),
    ("pods-by-label", step_pods_by_label),
    ("watch", step_watch),
    ("configmap-patches", step_configmap_patches),
    ("strategic-merge-containers", step_strategic_merge_containers),
    ("server-side-apply", step_server_side_apply),
    ("apply-conflict-causes", step_apply_conflict_causes),
    ("apply-managed-fields", step_apply_managed_fields),
    ("apply-keeps-others-fields", step_apply_keeps_others_fields),
    ("apply-empty-map", step_apply_empty_map),
    ("status-subresource", step_status_subresource),
    ("scale", step_scale),
    ("eviction", step_eviction),
    ("eviction-refusal-status", step_eviction_refusal_status),
    ("crd-validation", step_crd_validation),
]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: client_sequence.py KUBECONFIG")
    config.load_kube_config(config_file=sys.argv[1])
    api = {
        "core": client.CoreV1Api(),
        "apps": client.AppsV1Api(),
        "policy": client.PolicyV1Api(),
        "ext": client.ApiextensionsV1Api(),
        "custom": client.CustomObjectsApi(),
    }
    for name, step in STEPS:
        try:
            step(api)
        except Exception as e:
            if name in KNOWN_GAPS and isinstance(e, (AssertionError, ApiException)):
                why = f"HTTP {e.status}: {e.body}" if isinstance(e, ApiException) else e
                print(f"gap {name}: {KNOWN_GAPS[name]}")
                print(f"    failed with: {why}".replace("\n", " "))
                continue
            traceback.print_exc()
            sys.exit(f"FAILED {name}: {e}")
        if name in KNOWN_GAPS:
            sys.exit(f"FAILED {name}: passes now; remove it from KNOWN_GAPS")
        print(f"ok {name}")


if __name__ == "__main__":
    main()
