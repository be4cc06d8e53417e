// sidecarset: the controller half of OpenKruise's SidecarSet (bosun.dev/v1alpha1), in
// JavaScript. plugins/sidecarset-injector injects at pod creation; this plugin keeps each
// SidecarSet's status and upgrades its sidecars in place when only their images changed,
// as Kruise's pkg/controller/sidecarset does. See README.md.
import {
  BosunError, Command, EventType, Metadata, ObjectRef, Outcome, Verb, exportController,
  intOrPercent, parseConfig, selectorMatches, selectorString, utf8Decode,
} from '@bosun/sdk';

const API_VERSION = 'bosun.dev/v1alpha1';
const HASH = 'kruise.io/sidecarset-hash';
const HASH_WITHOUT_IMAGE = 'kruise.io/sidecarset-hash-without-image';
const INPLACE_STATE = 'kruise.io/sidecarset-inplace-update-state';
/** The pod condition set False on a pod whose sidecars changed beyond their images. */
const CONDITION = 'SidecarSetUpgradable';
/** How long an upgrade the cache does not show yet counts as in flight. */
const IN_FLIGHT_TTL_MS = 30_000;
/** Kruise never touches pods in these namespaces. */
const IGNORED_NAMESPACES = ['kube-system', 'kube-public'];
/** Container fields compared to name what changed beyond the image (the rest: "spec"). */
const FIELDS = [
  'command', 'args', 'workingDir', 'ports', 'envFrom', 'env', 'resources', 'volumeMounts',
  'volumeDevices', 'livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle',
  'terminationMessagePath', 'terminationMessagePolicy', 'imagePullPolicy', 'securityContext',
  'stdin', 'stdinOnce', 'tty', 'restartPolicy', 'resizePolicy',
];

let pollMs = 1000;

const ann = (o, k) => o?.metadata?.annotations?.[k];
const podRef = (pod) => new ObjectRef('v1', 'Pod', pod.metadata.name, pod.metadata.namespace);
const setRef = (name) => new ObjectRef(API_VERSION, 'SidecarSet', name);
const escape = (k) => k.replace(/~/g, '~0').replace(/\//g, '~1');
const json = (text, fallback) => { try { return JSON.parse(text); } catch { return fallback; } };

// ---- what Kruise reads off a pod (pkg/control/sidecarcontrol/util.go) ----

/** The pod's entry for `name` in a hash annotation: `{hash, ...}`, also from the older
 * `name → hash` form. */
function podHash(pod, key, name) {
  const v = json(ann(pod, key) ?? '', null)?.[name];
  if (typeof v === 'string') return v;
  return v?.hash ?? '';
}

/** `IsActivePod`: neither being deleted nor finished. */
const isActive = (pod) => !pod.metadata?.deletionTimestamp &&
  !['Succeeded', 'Failed'].includes(pod.status?.phase);

/** `IsPodInjectedSidecarSet`: the pod's hash annotation has an entry for the SidecarSet. */
const isInjected = (pod, name) => Object.prototype.hasOwnProperty.call(json(ann(pod, HASH) ?? '', {}) ?? {}, name);

/** `IsPodConsistentWithSidecarSet`: the pod has every container of the SidecarSet. */
function hasSidecars(pod, set) {
  const names = new Set((pod.spec?.containers ?? []).map((c) => c.name));
  return (set.spec?.containers ?? []).every((c) => names.has(c.name));
}

/** `IsPodSidecarUpdated`: the pod's hash for this SidecarSet is the SidecarSet's. */
const isUpdated = (set, pod) => {
  const h = podHash(pod, HASH, set.metadata.name);
  return h !== '' && h === (ann(set, HASH) ?? '');
};

/** `IsRunningAndReady`. */
const isReady = (pod) => pod.status?.phase === 'Running' &&
  (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

/** `IsPodStateConsistent` for tag images (no digests): the pod reports a status for every
 * container, and each sidecar updated in place runs its new image — its imageID is no
 * longer the one recorded before the patch (`IsSidecarContainerUpdateCompleted`). */
function isConsistent(set, pod) {
  const statuses = pod.status?.containerStatuses ?? [];
  const containers = pod.spec?.containers ?? [];
  if (containers.length !== statuses.length) return false;
  const state = json(ann(pod, INPLACE_STATE) ?? '', null);
  if (state === null) return ann(pod, INPLACE_STATE) === undefined;
  const before = state?.[set.metadata.name]?.lastContainerStatuses ?? {};
  const images = Object.fromEntries(containers.map((c) => [c.name, c.image]));
  const sidecars = new Set((set.spec?.containers ?? []).map((c) => c.name));
  return statuses.every((s) => !sidecars.has(s.name) || !(s.name in before) ||
    !(before[s.name].imageID === s.imageID && images[s.name] !== s.image));
}

/** `IsSidecarSetUpgradable`: the pod's sidecars differ from the SidecarSet's only in images. */
const isUpgradable = (set, pod) =>
  podHash(pod, HASH_WITHOUT_IMAGE, set.metadata.name) === (ann(set, HASH_WITHOUT_IMAGE) ?? '');

// ---- the pass over one SidecarSet (pkg/controller/sidecarset/sidecarset_processor.go) ----

/** `getMatchingPods`: active pods the selector (and namespace, namespaceSelector) picks
 * that were injected with this SidecarSet and still have all its containers. */
function matchingPods(ctx, set) {
  const spec = set.spec ?? {};
  const selector = selectorString(spec.selector);
  if (selector === '') return []; // an empty selector matches nothing
  let pods = ctx.list('v1', 'Pod', spec.namespace || null, selector);
  if (spec.namespaceSelector) {
    const namespaces = new Map();
    pods = pods.filter((p) => {
      const ns = p.metadata.namespace;
      if (!namespaces.has(ns)) {
        const o = ctx.get(new ObjectRef('v1', 'Namespace', ns));
        namespaces.set(ns, o !== null && selectorMatches(spec.namespaceSelector, o.metadata?.labels));
      }
      return namespaces.get(ns);
    });
  }
  return pods
    .filter((p) => !IGNORED_NAMESPACES.includes(p.metadata.namespace))
    .filter((p) => isActive(p) && isInjected(p, set.metadata.name) && hasSidecars(p, set))
    .sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
}

/** `calculateStatus`, from the cache alone. `latestRevision` names the SidecarSet's
 * current hash (Kruise names a ControllerRevision it keeps; Bosun keeps none: README.md). */
function statusOf(set, pods) {
  let updated = 0, ready = 0, updatedReady = 0;
  for (const pod of pods) {
    const u = isUpdated(set, pod);
    if (u) updated++;
    if (isConsistent(set, pod) && isReady(pod)) {
      ready++;
      if (u) updatedReady++;
    }
  }
  const status = {
    observedGeneration: set.metadata.generation ?? 0,
    matchedPods: pods.length, updatedPods: updated, readyPods: ready, updatedReadyPods: updatedReady,
  };
  const hash = ann(set, HASH);
  if (hash) status.latestRevision = `${set.metadata.name}-${hash}`;
  return status;
}

const podKey = (pod) => `${pod.metadata.namespace}/${pod.metadata.name}`;
const STATUS_KEYS = ['observedGeneration', 'matchedPods', 'updatedPods', 'readyPods', 'updatedReadyPods', 'latestRevision'];

/** Writes the status through the status subresource when it differs from the object's. */
function publish(ctx, set, status) {
  const have = set.status ?? {};
  if (STATUS_KEYS.every((k) => (have[k] ?? 0) === (status[k] ?? 0))) return;
  ctx.submit(Command.statusPatch(setRef(set.metadata.name), status));
}

/** Upgrades sent whose effect the cache may not show yet (Kruise's UpdateExpectations),
 * kept in plugin state per SidecarSet: pod key → {hash, at}. */
function loadInFlight(ctx, set, pods, now, outcomes) {
  const raw = ctx.stateGet(`in-flight/${set.metadata.name}`);
  const kept = raw === null ? {} : json(utf8Decode(raw), {});
  // A patch the pipe failed (its test saw another hash, the pod is gone) is not in flight.
  const failed = new Set(outcomes.filter((o) => o.verdict === 'failed' || o.verdict === 'refused').map((o) => o.id));
  const byKey = new Map(pods.map((p) => [podKey(p), p]));
  const live = new Map();
  for (const [key, sent] of Object.entries(kept ?? {})) {
    const pod = byKey.get(key);
    if (pod && now - sent.at < IN_FLIGHT_TTL_MS && sent.hash === ann(set, HASH) && !isUpdated(set, pod) &&
      !failed.has(sent.id)) {
      live.set(key, sent);
    }
  }
  return live;
}

function keepInFlight(ctx, set, live) {
  const key = `in-flight/${set.metadata.name}`;
  if (live.size === 0) ctx.stateDelete(key);
  else ctx.stateSet(key, JSON.stringify(Object.fromEntries(live)));
}

/** Kruise's `GetPodsSortFunc`, in short: unscheduled, not running, not ready first, then
 * more restarts, then newer; name breaks ties. */
function sortForUpgrade(pods) {
  const rank = (p) => [
    p.spec?.nodeName ? 1 : 0,
    { Pending: 0, Unknown: 1, Running: 2 }[p.status?.phase] ?? 0,
    isReady(p) ? 1 : 0,
    -Math.max(0, ...(p.status?.containerStatuses ?? []).map((c) => c.restartCount ?? 0)),
    -Date.parse(p.metadata.creationTimestamp ?? '') || 0,
  ];
  return pods.slice().sort((a, b) => {
    const ra = rank(a), rb = rank(b);
    for (let i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return ra[i] - rb[i];
    return podKey(a).localeCompare(podKey(b));
  });
}

/** `GetNextUpgradePods` and `calculateUpgradeCount`: the pods to upgrade now. */
function nextUpgrades(set, pods, upgrading) {
  const strategy = set.spec?.updateStrategy ?? {};
  const selected = (p) => strategy.selector == null || selectorMatches(strategy.selector, p.metadata.labels);
  let waiting = sortForUpgrade(pods.filter((p) =>
    !isUpdated(set, p) && !upgrading.has(podKey(p)) && selected(p) && isUpgradable(set, p)));
  const total = pods.length;
  const partition = intOrPercent(strategy.partition, total);
  if (waiting.length - partition <= 0) return { pods: [], waiting: 0 };
  waiting = waiting.slice(0, waiting.length - partition);
  const maxUnavailable = intOrPercent(strategy.maxUnavailable, total, { fallback: 1 });
  let busy = pods.filter((p) => upgrading.has(podKey(p)) ||
    (isUpdated(set, p) && (!isConsistent(set, p) || !isReady(p)))).length;
  const next = [];
  for (const p of waiting) {
    if (!isReady(p)) { next.push(p); continue; } // not ready: not counted, as Kruise
    if (busy >= maxUnavailable) break;
    busy++;
    next.push(p);
  }
  return { pods: next, waiting: waiting.length };
}

/** Kruise's `updatePodSidecarAndHash` as one JSON patch: a `test` of the hash annotation
 * the cache shows (a stale cache cannot upgrade a pod twice), the sidecars' new images,
 * the pod's hash entry for this SidecarSet, and the imageIDs before the restart
 * (`kruise.io/sidecarset-inplace-update-state`), by which completion is judged. */
function upgradePatch(ctx, set, pod) {
  const name = set.metadata.name;
  const want = Object.fromEntries((set.spec?.containers ?? []).map((c) => [c.name, c.image]));
  const ops = [{ op: 'test', path: `/metadata/annotations/${escape(HASH)}`, value: ann(pod, HASH) }];
  const changed = [];
  (pod.spec?.containers ?? []).forEach((c, i) => {
    if (c.name in want) {
      changed.push(c.name);
      if (want[c.name] !== c.image) ops.push({ op: 'replace', path: `/spec/containers/${i}/image`, value: want[c.name] });
    }
  });
  const now = ctx.nowRfc3339();
  // Go marshals the map with sorted keys and SidecarSetUpgradeSpec's fields in order.
  const hashes = json(ann(pod, HASH), {}) ?? {};
  const entry = { updateTimestamp: now, hash: ann(set, HASH), sidecarSetName: name, sidecarList: Object.keys(want).sort() };
  if (set.status?.latestRevision) entry.controllerRevision = set.status.latestRevision;
  hashes[name] = entry;
  ops.push({ op: 'replace', path: `/metadata/annotations/${escape(HASH)}`, value: JSON.stringify(sorted(hashes)) });
  const states = json(ann(pod, INPLACE_STATE) ?? '{}', {}) ?? {};
  const imageIDs = Object.fromEntries((pod.status?.containerStatuses ?? []).map((s) => [s.name, s.imageID ?? '']));
  const last = {};
  for (const c of changed) last[c] = { imageID: imageIDs[c] ?? '' };
  states[name] = { revision: ann(set, HASH), updateTimestamp: now, lastContainerStatuses: last };
  ops.push({ op: 'add', path: `/metadata/annotations/${escape(INPLACE_STATE)}`, value: JSON.stringify(sorted(states)) });
  return ops;
}

const sorted = (o) => Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));

// ---- pods whose sidecars changed beyond their images (not in Kruise) ----

/** What differs, beyond images, between the SidecarSet's containers and the pod's: the
 * names of the changed fields per sidecar, e.g. `["log-agent: env, command"]`. The pod's
 * env and mounts may hold more than the SidecarSet's (IS_INJECTED, transferEnv, shared
 * volumes): only the SidecarSet's entries are compared. */
function whatChanged(set, pod) {
  const podContainers = new Map((pod.spec?.containers ?? []).map((c) => [c.name, c]));
  const out = [];
  const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
  for (const c of set.spec?.containers ?? []) {
    const p = podContainers.get(c.name);
    if (!p) { out.push(`${c.name}: added`); continue; }
    const fields = [];
    for (const f of FIELDS) {
      if (!(f in c) && !(f in p)) continue;
      if (f === 'env') {
        const have = new Map((p.env ?? []).map((e) => [e.name, e]));
        if ((c.env ?? []).some((e) => !same(have.get(e.name), e))) fields.push(f);
      } else if (f === 'volumeMounts') {
        const have = new Map((p.volumeMounts ?? []).map((m) => [m.mountPath, m]));
        if ((c.volumeMounts ?? []).some((m) => !same(have.get(m.mountPath), m))) fields.push(f);
      } else if (f in c && !same(c[f], p[f])) {
        fields.push(f);
      }
    }
    if (fields.length > 0) out.push(`${c.name}: ${fields.join(', ')}`);
  }
  return out;
}

/** Marks `pod` not upgradable: condition `SidecarSetUpgradable` False on its status and a
 * Warning Event, both naming what changed; once per SidecarSet hash. */
function markNotUpgradable(ctx, set, pod) {
  const changes = whatChanged(set, pod);
  const first = changes.length === 1 ? changes[0].split(': ')[1].split(', ') : [];
  const reason = first.length === 1 && FIELDS.includes(first[0])
    ? `${first[0][0].toUpperCase()}${first[0].slice(1)}Changed`
    : 'SidecarChanged';
  const what = changes.length > 0 ? changes.join('; ') : 'the SidecarSet spec beyond container fields (volumes, init containers...)';
  const message = `SidecarSet ${set.metadata.name} (revision ${ann(set, HASH)}) changed more than images (${what}): ` +
    'only image changes are upgraded in place; the pod gets the new sidecars when it is recreated';
  const conditions = pod.status?.conditions ?? [];
  const at = conditions.findIndex((c) => c.type === CONDITION);
  if (at >= 0 && conditions[at].status === 'False' && conditions[at].message === message) return;
  const condition = { type: CONDITION, status: 'False', reason, message, lastTransitionTime: ctx.nowRfc3339() };
  const ops = at >= 0
    ? [{ op: 'test', path: `/status/conditions/${at}/type`, value: CONDITION },
      { op: 'replace', path: `/status/conditions/${at}`, value: condition }]
    : pod.status?.conditions
      ? [{ op: 'test', path: '/status/conditions', value: conditions }, { op: 'add', path: '/status/conditions/-', value: condition }]
      : [{ op: 'add', path: '/status/conditions', value: [condition] }];
  ctx.submit(Command.jsonPatch(podRef(pod), ops));
  ctx.submit(Command.event(podRef(pod), EventType.Warning, 'SidecarNotUpgradable', message));
  ctx.info(`pod ${podKey(pod)}: not upgradable to SidecarSet ${set.metadata.name}: ${what}`);
}

/** Sets `SidecarSetUpgradable` back to True on a pod this SidecarSet had marked, once it
 * is upgradable (or updated) again: the SidecarSet was changed back to images only. */
function clearNotUpgradable(ctx, set, pod) {
  const conditions = pod.status?.conditions ?? [];
  const at = conditions.findIndex((c) => c.type === CONDITION);
  if (at < 0 || conditions[at].status !== 'False' ||
    !(conditions[at].message ?? '').startsWith(`SidecarSet ${set.metadata.name} `)) return;
  const condition = {
    type: CONDITION, status: 'True', reason: 'ImagesOnly', lastTransitionTime: ctx.nowRfc3339(),
    message: `SidecarSet ${set.metadata.name} (revision ${ann(set, HASH)}) differs from the pod's sidecars in images only`,
  };
  ctx.submit(Command.jsonPatch(podRef(pod), [
    { op: 'test', path: `/status/conditions/${at}/type`, value: CONDITION },
    { op: 'replace', path: `/status/conditions/${at}`, value: condition },
  ]));
}

/** One pass over a SidecarSet: status, then (unless `statusOnly`) the next upgrades. */
function reconcileSet(ctx, set, statusOnly, outcomes = []) {
  if (ann(set, HASH) === undefined) return Outcome.done(); // the injector stamps it
  const pods = matchingPods(ctx, set);
  const now = ctx.nowMs();
  ctx.stateSet(recountKey(set), String(now));
  const upgrading = statusOnly ? new Map() : loadInFlight(ctx, set, pods, now, outcomes);
  publish(ctx, set, statusOf(set, pods));
  if (statusOnly) return Outcome.done();
  const strategy = set.spec?.updateStrategy ?? {};
  if (strategy.type === 'NotUpdate' || strategy.paused === true) {
    keepInFlight(ctx, set, upgrading);
    return Outcome.done();
  }
  for (const pod of pods) {
    try {
      if (isUpdated(set, pod) || isUpgradable(set, pod)) clearNotUpgradable(ctx, set, pod);
      else markNotUpgradable(ctx, set, pod);
    } catch (e) {
      ctx.warn(`pod ${podKey(pod)}: condition ${CONDITION}: ${e.message}; retrying later`);
    }
  }
  const next = nextUpgrades(set, pods, upgrading);
  for (const pod of next.pods) {
    let id;
    try {
      id = Number(ctx.submit(Command.jsonPatch(podRef(pod), upgradePatch(ctx, set, pod))));
    } catch (e) {
      ctx.warn(`pod ${podKey(pod)}: sidecar upgrade to ${ann(set, HASH)}: ${e.message}; retrying later`);
      break; // the runtime's budget (or a guardrail) says no: later
    }
    upgrading.set(podKey(pod), { hash: ann(set, HASH), at: now, id });
    ctx.info(`pod ${podKey(pod)}: sidecars of ${set.metadata.name} upgraded in place to ${ann(set, HASH)}`);
  }
  keepInFlight(ctx, set, upgrading);
  const busy = upgrading.size > 0 ||
    pods.some((p) => isUpdated(set, p) && (!isConsistent(set, p) || !isReady(p)));
  return busy || next.waiting > 0 ? Outcome.requeueAfter(pollMs) : Outcome.done();
}

function reconcile(ctx, req) {
  if (req.target.kind === 'SidecarSet') {
    const set = ctx.get(req.target);
    if (set === null) {
      ctx.stateDelete(`in-flight/${req.target.name}`);
      ctx.stateDelete(`recount/${req.target.name}`);
      return Outcome.done();
    }
    return reconcileSet(ctx, set, false, req.outcomes);
  }
  // A pod changed: recount the SidecarSets it carries (all of them when it is gone), each
  // at most once per pollMs: a recount looks at every pod, so during an upgrade of
  // thousands of pods one per pod event would make the plugin quadratic. A pod event
  // that comes within pollMs of the set's last recount is looked at again once pollMs
  // has passed, unless a recount happened meanwhile (it saw this pod's change).
  const pod = ctx.get(req.target);
  const names = pod === null ? null : Object.keys(json(ann(pod, HASH) ?? '', {}) ?? {});
  if (names !== null && names.length === 0) return Outcome.done();
  const sets = names === null
    ? ctx.list(API_VERSION, 'SidecarSet')
    : names.map((n) => ctx.get(setRef(n))).filter((s) => s !== null);
  const deferred = req.events.length > 0 && req.events.every((e) => e === 'requeued');
  const now = ctx.nowMs();
  let wait = 0;
  for (const set of sets) {
    const since = now - lastRecount(ctx, set);
    if (since < pollMs) {
      if (!deferred) wait = Math.max(wait, pollMs - since);
      continue;
    }
    reconcileSet(ctx, set, true);
  }
  return wait > 0 ? Outcome.requeueAfter(wait) : Outcome.done();
}

const recountKey = (set) => `recount/${set.metadata.name}`;

/** When the SidecarSet's pods were last counted (ms; 0 when never). */
function lastRecount(ctx, set) {
  const raw = ctx.stateGet(recountKey(set));
  return raw === null ? 0 : Number(utf8Decode(raw)) || 0;
}

exportController({
  metadata() {
    return new Metadata('sidecarset', '0.1.0')
      .description('keeps SidecarSets\' status and upgrades their sidecars in place (OpenKruise-compatible)')
      .subscribe(API_VERSION, 'SidecarSet')
      .subscribe('v1', 'Pod')
      .permit(API_VERSION, 'SidecarSet', [Verb.Read, Verb.Patch])
      .permit('v1', 'Pod', [Verb.Read, Verb.Patch, Verb.RecordEvent])
      .permit('v1', 'Namespace', [Verb.Read]);
  },
  init(text) {
    const c = parseConfig(text);
    if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new BosunError('invalid config: not a JSON object');
    for (const k of Object.keys(c)) {
      if (k !== 'pollMs') throw new BosunError(`invalid config: unknown field ${JSON.stringify(k)} (expected pollMs)`);
    }
    if (c.pollMs !== undefined) {
      if (!Number.isInteger(c.pollMs) || c.pollMs < 10) throw new BosunError('invalid config: pollMs must be an integer of at least 10');
      pollMs = c.pollMs;
    }
  },
  reconcile,
});
