// owner-labels: a controller plugin in JavaScript. Copies chosen labels of a workload
// (Deployment, StatefulSet, DaemonSet, Job, or a bare ReplicaSet) onto the pods it owns,
// without touching the pod template, so no rollout restarts them. See README.md.
import { BosunError, Command, Metadata, ObjectRef, Outcome, Verb, exportController, parseConfig } from '@bosun/sdk';

const WORKLOADS = [
  ['apps/v1', 'Deployment'], ['apps/v1', 'StatefulSet'], ['apps/v1', 'DaemonSet'], ['batch/v1', 'Job'],
];
const RETRY_MS = 30_000;

let labels = [];
let prefixes = [];

// Whether the workload label `key` is one to copy.
const wanted = (key) => labels.includes(key) || prefixes.some((p) => key.startsWith(p));

// A label key, as Kubernetes accepts it: an optional DNS-subdomain prefix and a name.
const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
function checkKey(key) {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : null;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  return LABEL_NAME.test(name) && (prefix === null || (prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix)));
}

// The controller owner reference of an object, if any.
const controllerOf = (object) => (object?.metadata?.ownerReferences ?? []).find((o) => o.controller === true) ?? null;

// The workload at the top of a pod's owner chain (a ReplicaSet's Deployment), as
// { ref, object } with object null when it is not in the cache; null for a bare pod.
function workloadOf(ctx, pod) {
  const ns = pod.metadata.namespace;
  const owner = controllerOf(pod);
  if (!owner) return null;
  const ref = new ObjectRef(owner.apiVersion, owner.kind, owner.name, ns);
  if (owner.kind !== 'ReplicaSet') return { ref, object: ctx.get(ref) };
  const rs = ctx.get(ref);
  if (rs === null) return { ref, object: null };
  const top = controllerOf(rs);
  if (!top) return { ref, object: rs };
  const topRef = new ObjectRef(top.apiVersion, top.kind, top.name, ns);
  return { ref: topRef, object: ctx.get(topRef) };
}

// The labels the pod lacks (or has with another value), or null when it has them all.
function missing(workload, pod) {
  const have = pod.metadata.labels ?? {};
  const patch = {};
  for (const [k, v] of Object.entries(workload.metadata.labels ?? {})) {
    if (wanted(k) && have[k] !== v) patch[k] = v;
  }
  return Object.keys(patch).length === 0 ? null : patch;
}

function labelPod(ctx, podRef, workloadRef, patch) {
  ctx.submit(Command.mergePatch(podRef, { metadata: { labels: patch } }));
  const keys = Object.keys(patch).sort().join(', ');
  ctx.info(`${podRef}: labels ${keys} from ${workloadRef.kind} ${workloadRef.name}`);
}

function reconcilePod(ctx, req) {
  const pod = ctx.get(req.target);
  if (pod === null || pod.metadata?.deletionTimestamp) return Outcome.done();
  const w = workloadOf(ctx, pod);
  if (w === null) return Outcome.done();
  if (w.object === null) {
    ctx.warn(`${req.target}: owner ${w.ref.kind} ${w.ref.name} is not in the cache yet; retrying`);
    return Outcome.requeueAfter(RETRY_MS);
  }
  const patch = missing(w.object, pod);
  if (patch !== null) labelPod(ctx, req.target, w.ref, patch);
  return Outcome.done();
}

// A workload changed: label each of its pods (found by the workload's matchLabels, then
// checked against the owner chain, so a pod another workload owns is left alone).
function reconcileWorkload(ctx, req) {
  const workload = ctx.get(req.target);
  if (workload === null) return Outcome.done();
  const match = workload.spec?.selector?.matchLabels ?? {};
  const selector = Object.entries(match).map(([k, v]) => `${k}=${v}`).join(',');
  if (selector === '') return Outcome.done();
  for (const pod of ctx.list('v1', 'Pod', req.target.namespace, selector)) {
    if (pod.metadata?.deletionTimestamp) continue;
    const w = workloadOf(ctx, pod);
    if (w === null || w.object === null || w.ref.kind !== req.target.kind || w.ref.name !== req.target.name) continue;
    const patch = missing(workload, pod);
    if (patch !== null) labelPod(ctx, ObjectRef.of(pod), w.ref, patch);
  }
  return Outcome.done();
}

function metadata() {
  const m = new Metadata('owner-labels', '0.1.0')
    .description('copies chosen labels of a workload onto its pods, without a rollout')
    .subscribe('v1', 'Pod')
    .permit('v1', 'Pod', [Verb.Read, Verb.Patch])
    .permit('apps/v1', 'ReplicaSet', [Verb.Read]);
  for (const [av, kind] of WORKLOADS) m.subscribe(av, kind);
  return m;
}

function init(text) {
  const c = parseConfig(text);
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new BosunError('invalid config: not a JSON object');
  for (const k of Object.keys(c)) {
    if (k !== 'labels' && k !== 'prefixes') {
      throw new BosunError(`invalid config: unknown field ${JSON.stringify(k)} (expected labels, prefixes)`);
    }
  }
  const list = (name) => {
    const v = c[name] ?? [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '')) {
      throw new BosunError(`invalid config: ${name} must be a list of non-empty strings`);
    }
    return v;
  };
  const ls = list('labels');
  const ps = list('prefixes');
  for (const k of ls) {
    if (!checkKey(k)) throw new BosunError(`invalid config: ${JSON.stringify(k)} is not a valid label key`);
  }
  for (const p of ps) {
    if (!p.endsWith('/') || !checkKey(p + 'x')) {
      throw new BosunError(`invalid config: prefix ${JSON.stringify(p)} must be a DNS subdomain ending in /, like "billing.example.com/"`);
    }
  }
  if (ls.length === 0 && ps.length === 0) {
    throw new BosunError('invalid config: name the labels to copy: {"labels": ["team"], "prefixes": ["billing.example.com/"]}');
  }
  labels = ls;
  prefixes = ps;
}

exportController({
  metadata,
  init,
  reconcile(ctx, req) {
    return req.target.kind === 'Pod' ? reconcilePod(ctx, req) : reconcileWorkload(ctx, req);
  },
});
