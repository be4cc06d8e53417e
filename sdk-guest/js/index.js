// Bosun JavaScript guest SDK: the same shape as the Rust SDK (bosun-sdk), over the
// bosun:operator@0.1.0 imports as componentize-qjs exposes them.
//
//   import { Metadata, Verb, Command, Outcome, exportController } from '@bosun/sdk';
//   exportController({ metadata() {...}, init(config) {...}, reconcile(ctx, req) {...} });
//
// `bosun plugin build` (build.mjs) adds the world's exports and componentizes.
import cache from 'bosun:operator/cache@0.1.0';
import commands from 'bosun:operator/commands@0.1.0';
import log from 'bosun:operator/log@0.1.0';
import clock from 'bosun:operator/clock@0.1.0';

/** Verbs a plugin may be granted on a kind. */
export const Verb = Object.freeze({
  Read: 'read', Apply: 'apply', Patch: 'patch', Delete: 'delete', Evict: 'evict',
  Cordon: 'cordon', RecordEvent: 'record-event', PodCommand: 'pod-command',
});

/** Event kinds of a request. */
export const EventKind = Object.freeze({
  Added: 'added', Modified: 'modified', Deleted: 'deleted', Resync: 'resync', Requeued: 'requeued',
});

/** Effects of a node taint. */
export const TaintEffect = Object.freeze({
  NoSchedule: 'no-schedule', PreferNoSchedule: 'prefer-no-schedule', NoExecute: 'no-execute',
});

/** Types of a Kubernetes Event. */
export const EventType = Object.freeze({ Normal: 'normal', Warning: 'warning' });

/** One Kubernetes object, named the way the API names it. */
export class ObjectRef {
  constructor(apiVersion, kind, name = '', namespace = null) {
    this.apiVersion = apiVersion;
    this.kind = kind;
    this.namespace = namespace || null;
    this.name = name;
  }
  /** This reference in namespace `ns`. */
  namespaced(ns) { return new ObjectRef(this.apiVersion, this.kind, this.name, ns); }
  /** This reference with name `name`. */
  named(name) { return new ObjectRef(this.apiVersion, this.kind, name, this.namespace); }
  /** The reference of an object (apiVersion, kind, metadata.namespace, metadata.name). */
  static of(object) {
    const m = object?.metadata ?? {};
    if (!object?.apiVersion || !object?.kind || !m.name) {
      throw new BosunError('an object needs apiVersion, kind and metadata.name');
    }
    return new ObjectRef(object.apiVersion, object.kind, m.name, m.namespace);
  }
  static from(r) { return r instanceof ObjectRef ? r : new ObjectRef(r.apiVersion, r.kind, r.name, r.namespace); }
  /** `v1/Pod default/web-0`, or `v1/Node node-1` when cluster-scoped. */
  toString() {
    return `${this.apiVersion}/${this.kind} ${this.namespace ? this.namespace + '/' : ''}${this.name}`;
  }
  toWit() {
    return { apiVersion: this.apiVersion, kind: this.kind, namespace: this.namespace ?? null, name: this.name };
  }
}

/** A plugin's error: its message is what the host sees. */
export class BosunError extends Error {}

/** The host refused a command at once. */
export class Refused extends BosunError {
  constructor(reason) { super(`command refused: ${reason}`); this.reason = reason; }
}

/** Which objects a plugin wants to be called for. */
export class Subscription {
  constructor(apiVersion, kind) {
    this.apiVersion = apiVersion; this.kind = kind; this.namespace = null; this.labelSelector = null;
  }
  inNamespace(ns) { this.namespace = ns; return this; }
  selector(s) { this.labelSelector = s; return this; }
}

/** What a plugin says about itself. */
export class Metadata {
  constructor(name, version) {
    this.name = name; this.version = version; this.desc = '';
    this.subscriptions = []; this.permissions = [];
  }
  description(d) { this.desc = d; return this; }
  subscribe(apiVersion, kind) { return this.subscription(new Subscription(apiVersion, kind)); }
  subscription(s) { this.subscriptions.push(s); return this; }
  permit(apiVersion, kind, verbs) { this.permissions.push({ apiVersion, kind, verbs: [...verbs] }); return this; }
  toWit() {
    return {
      name: this.name, version: this.version, description: this.desc,
      subscriptions: this.subscriptions.map((s) => ({
        apiVersion: s.apiVersion, kind: s.kind, namespace: s.namespace ?? null, labelSelector: s.labelSelector ?? null,
      })),
      permissions: this.permissions,
    };
  }
}

const text = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
const ref = (r) => ObjectRef.from(r).toWit();

/** Commands: the actions a plugin asks for. Submit with `ctx.submit`. */
export const Command = Object.freeze({
  apply: (object) => ({ tag: 'apply', val: text(object) }),
  mergePatch: (target, patch) => ({ tag: 'merge-patch', val: { target: ref(target), patch: text(patch) } }),
  jsonPatch: (target, patch) => ({ tag: 'json-patch', val: { target: ref(target), patch: text(patch) } }),
  delete: (target) => ({ tag: 'delete', val: ref(target) }),
  evict: (pod) => ({ tag: 'evict', val: ref(pod) }),
  cordon: (node) => ({ tag: 'cordon', val: node }),
  uncordon: (node) => ({ tag: 'uncordon', val: node }),
  /** `taint`: `{ key, value, effect }` (an empty value means none). */
  taint: (node, taint) => ({
    tag: 'taint',
    val: { node, taint: { key: taint.key, value: taint.value ? taint.value : null, effect: taint.effect } },
  }),
  untaint: (node, key, effect = null) => ({ tag: 'untaint', val: { node, key, effect } }),
  event: (regarding, eventType, reason, message) => ({
    tag: 'record-event', val: { regarding: ref(regarding), eventType, reason, message },
  }),
  pod: (namespace, pod, plugin, payload) => ({ tag: 'pod-command', val: { namespace, pod, plugin, payload } }),
});

/** What reconcile asks of the host for this key. */
export class Outcome {
  constructor(requeueAfterMs = null) { this.requeueAfterMs = requeueAfterMs; }
  static done() { return new Outcome(); }
  static requeueAfter(ms) { return new Outcome(ms); }
}

/** UTF-8 bytes of a string (QuickJS has no TextEncoder). */
export function utf8Encode(str) {
  const out = [];
  for (const ch of str) {
    let c = ch.codePointAt(0);
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

/** The string of UTF-8 bytes (invalid sequences become U+FFFD). */
export function utf8Decode(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    const n = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
    if (n === 0 || i + n > bytes.length) { s += '\ufffd'; i += 1; continue; }
    let c = n === 1 ? b : b & (0xff >> (n + 1));
    for (let k = 1; k < n; k++) c = (c << 6) | (bytes[i + k] & 63);
    s += String.fromCodePoint(c);
    i += n;
  }
  return s;
}

const message = (e) => (e instanceof Error ? e.message : String(e?.payload ?? e));

/** Logging into the host's log. */
export const Log = Object.freeze({
  log: (level, msg) => log.log(level, String(msg)),
  trace: (m) => log.log('trace', String(m)),
  debug: (m) => log.log('debug', String(m)),
  info: (m) => log.log('info', String(m)),
  warn: (m) => log.log('warn', String(m)),
  error: (m) => log.log('error', String(m)),
});

/** The plugin's view of the runtime during one call. */
export class Context {
  /** The object as parsed JSON, or null when it is not in the cache (or not readable). */
  get(target) {
    const t = this.getRaw(target);
    if (t === null) return null;
    try {
      return JSON.parse(t);
    } catch (e) {
      Log.error(`cache entry for ${ObjectRef.from(target)} is not JSON: ${message(e)}`);
      return null;
    }
  }
  /** The object's JSON text, or null. */
  getRaw(target) { return cache.get(ref(target)) ?? null; }
  /** Objects of one kind, parsed. Throws on an invalid selector. */
  list(apiVersion, kind, namespace = null, selector = null) {
    return this.listRaw(apiVersion, kind, namespace, selector).map((t) => JSON.parse(t));
  }
  /** Objects of one kind as JSON text. */
  listRaw(apiVersion, kind, namespace = null, selector = null) {
    try {
      return cache.listObjects(apiVersion, kind, namespace ?? null, selector ?? null);
    } catch (e) {
      throw new BosunError(`listing ${apiVersion}/${kind}: ${message(e)}`);
    }
  }
  /** Plugin-local state (Uint8Array) or null. */
  stateGet(key) { const v = cache.stateGet(key); return v == null ? null : new Uint8Array(v); }
  /** Sets plugin-local state (a string is stored as UTF-8). */
  stateSet(key, value) {
    const bytes = typeof value === 'string' ? utf8Encode(value) : value;
    try {
      cache.stateSet(key, bytes);
    } catch (e) {
      throw new BosunError(`setting state ${JSON.stringify(key)}: ${message(e)}`);
    }
  }
  stateDelete(key) { cache.stateDelete(key); }
  /** Submits a command; returns its id (a number). Throws `Refused`. */
  submit(command) {
    try {
      return commands.submit(command);
    } catch (e) {
      throw new Refused(message(e));
    }
  }
  trace(m) { Log.trace(m); }
  debug(m) { Log.debug(m); }
  info(m) { Log.info(m); }
  warn(m) { Log.warn(m); }
  error(m) { Log.error(m); }
  /** Wall-clock milliseconds since the Unix epoch (the host's clock). */
  nowMs() { return Number(clock.nowMs()); }
  /** RFC 3339 with seconds precision. */
  nowRfc3339() { return clock.nowRfc3339(); }
}

/** One reconcile call. */
export class Request {
  constructor(wit) {
    this.target = ObjectRef.from(wit.target);
    this.events = wit.events;
    this.outcomes = wit.outcomes.map((o) => ({ id: Number(o.id), verdict: o.verdict, message: o.message }));
    this.attempt = wit.attempt;
  }
  isDeleted() { return this.events.length > 0 && this.events[this.events.length - 1] === 'deleted'; }
}

/** Parses the JSON config ('' or '{}' → {}); errors read "invalid config: ...". */
export function parseConfig(config) {
  if (!config) return {};
  try {
    return JSON.parse(config);
  } catch (e) {
    throw new BosunError(`invalid config: ${message(e)}`);
  }
}

let controller = null;

/** Makes `plugin` ({ metadata(), init(config), reconcile(ctx, req) }) the controller. */
export function exportController(plugin) { controller = plugin; }

// The world's exports; build.mjs re-exports them from the component's entry module.
export const world = {
  metadata() { return controller.metadata().toWit(); },
  init(config) {
    try {
      controller.init(config);
    } catch (e) {
      throw message(e);
    }
  },
  reconcile(request) {
    let outcome;
    try {
      outcome = controller.reconcile(new Context(), new Request(request));
    } catch (e) {
      throw message(e);
    }
    const ms = outcome?.requeueAfterMs;
    return { requeueAfterMs: ms == null ? null : ms };
  },
};
