// Bosun JavaScript guest SDK: what every world shares (metadata, object references,
// errors, the log, the clock, UTF-8, config). The world modules re-export all of it:
// `@bosun/sdk` (controller), `@bosun/sdk/admission`, `@bosun/sdk/pod-agent`.
// Imports only the interfaces every world has: log and clock.
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

/** UTF-8 bytes of a string (QuickJS has no TextEncoder); a lone surrogate becomes U+FFFD. */
export function utf8Encode(str) {
  const out = new Uint8Array(str.length * 3);
  let n = 0;
  for (let i = 0; i < str.length; i++) {
    let c = str.charCodeAt(i);
    if (c < 0x80) {
      out[n++] = c;
      continue;
    }
    if (c >= 0xd800 && c < 0xe000) {
      const d = i + 1 < str.length ? str.charCodeAt(i + 1) : 0;
      if (c < 0xdc00 && d >= 0xdc00 && d < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      } else {
        c = 0xfffd;
      }
    }
    if (c < 0x800) {
      out[n++] = 0xc0 | (c >> 6); out[n++] = 0x80 | (c & 63);
    } else if (c < 0x10000) {
      out[n++] = 0xe0 | (c >> 12); out[n++] = 0x80 | ((c >> 6) & 63); out[n++] = 0x80 | (c & 63);
    } else {
      out[n++] = 0xf0 | (c >> 18); out[n++] = 0x80 | ((c >> 12) & 63);
      out[n++] = 0x80 | ((c >> 6) & 63); out[n++] = 0x80 | (c & 63);
    }
  }
  return out.slice(0, n);
}

/** The string of UTF-8 bytes (invalid sequences become U+FFFD). */
export function utf8Decode(bytes) {
  if (!(bytes instanceof Uint8Array)) bytes = Uint8Array.from(bytes);
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) { ascii = false; break; }
  }
  if (ascii) {
    // Chunks keep apply's argument count bounded.
    let s = '';
    for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
    return s;
  }
  const parts = [];
  let units = [];
  const push = (u) => {
    units.push(u);
    if (units.length >= 4096) {
      parts.push(String.fromCharCode.apply(null, units));
      units = [];
    }
  };
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    const n = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
    if (n === 0 || i + n > bytes.length) { push(0xfffd); i += 1; continue; }
    let c = n === 1 ? b : b & (0xff >> (n + 1));
    for (let k = 1; k < n; k++) c = (c << 6) | (bytes[i + k] & 63);
    if (c >= 0x10000) {
      c -= 0x10000;
      push(0xd800 + (c >> 10));
      push(0xdc00 + (c & 0x3ff));
    } else {
      push(c);
    }
    i += n;
  }
  parts.push(String.fromCharCode.apply(null, units));
  return parts.join('');
}

/** The message of a thrown value (an Error, a WIT error payload, anything). */
export const message = (e) => (e instanceof Error ? e.message : String(e?.payload ?? e));

/** Logging into the host's log. */
export const Log = Object.freeze({
  log: (level, msg) => log.log(level, String(msg)),
  trace: (m) => log.log('trace', String(m)),
  debug: (m) => log.log('debug', String(m)),
  info: (m) => log.log('info', String(m)),
  warn: (m) => log.log('warn', String(m)),
  error: (m) => log.log('error', String(m)),
});

/** The host's clock. */
export const Clock = Object.freeze({
  /** Wall-clock milliseconds since the Unix epoch. */
  nowMs: () => Number(clock.nowMs()),
  /** RFC 3339 with seconds precision. */
  nowRfc3339: () => clock.nowRfc3339(),
});

/** Logging and the clock, as every world's context has them. */
export class BaseContext {
  trace(m) { Log.trace(m); }
  debug(m) { Log.debug(m); }
  info(m) { Log.info(m); }
  warn(m) { Log.warn(m); }
  error(m) { Log.error(m); }
  /** Wall-clock milliseconds since the Unix epoch (the host's clock). */
  nowMs() { return Clock.nowMs(); }
  /** RFC 3339 with seconds precision. */
  nowRfc3339() { return Clock.nowRfc3339(); }
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

/** A Kubernetes IntOrString that is a count or a percentage (`3`, `"3"`, `"25%"`) resolved
 * against `total`, as apimachinery's `GetValueFromIntOrPercent` does: a percentage is
 * rounded down, or up with `roundUp`. `null`/`undefined` gives `fallback`; anything else
 * throws a `BosunError` naming the value. */
export function intOrPercent(value, total, { roundUp = false, fallback = 0 } = {}) {
  if (value === null || value === undefined) return fallback;
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string') {
    const pct = /^(\d+)%$/.exec(value);
    if (pct) {
      const v = (Number(pct[1]) * total) / 100;
      return roundUp ? Math.ceil(v) : Math.floor(v);
    }
    if (/^\d+$/.test(value)) return Number(value);
  }
  throw new BosunError(`invalid int or percentage ${JSON.stringify(value)}: expected a number or "N%"`);
}

const selectorValue = (v) => (typeof v === 'string' ? v : String(v ?? ''));

/** A metav1.LabelSelector (`{matchLabels, matchExpressions}`) as the selector string the
 * cache's `list` takes (`a=b,c in (d,e),!f`); `null` or `{}` is '' (everything). Throws a
 * `BosunError` for an unknown operator or a missing value list. */
export function selectorString(selector) {
  if (selector === null || selector === undefined) return '';
  const parts = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${selectorValue(v)}`);
  for (const e of selector.matchExpressions ?? []) {
    const values = (e.values ?? []).map(selectorValue);
    switch (e.operator) {
      case 'In':
      case 'NotIn':
        if (values.length === 0) throw new BosunError(`selector: ${e.key} ${e.operator} needs values`);
        parts.push(`${e.key} ${e.operator === 'In' ? 'in' : 'notin'} (${values.join(',')})`);
        break;
      case 'Exists': parts.push(e.key); break;
      case 'DoesNotExist': parts.push(`!${e.key}`); break;
      default: throw new BosunError(`selector: unknown operator ${JSON.stringify(e.operator)} for ${e.key}`);
    }
  }
  return parts.join(',');
}

/** Whether `labels` (an object) match a metav1.LabelSelector, as apimachinery's
 * `LabelSelectorAsSelector(...).Matches` decides: `null` matches nothing, `{}` everything.
 * Throws a `BosunError` for an unknown operator. */
export function selectorMatches(selector, labels) {
  if (selector === null || selector === undefined) return false;
  const have = labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (have[k] !== selectorValue(v)) return false;
  }
  for (const e of selector.matchExpressions ?? []) {
    const values = (e.values ?? []).map(selectorValue);
    const present = Object.prototype.hasOwnProperty.call(have, e.key);
    switch (e.operator) {
      case 'In': if (!present || !values.includes(have[e.key])) return false; break;
      case 'NotIn': if (present && values.includes(have[e.key])) return false; break;
      case 'Exists': if (!present) return false; break;
      case 'DoesNotExist': if (present) return false; break;
      default: throw new BosunError(`selector: unknown operator ${JSON.stringify(e.operator)} for ${e.key}`);
    }
  }
  return true;
}

/** The metadata export: `plugin.metadata()` as the WIT record. */
export function metadataOf(plugin) {
  if (!plugin) throw 'the plugin did not call its world\'s export function (e.g. exportController)';
  return plugin.metadata().toWit();
}

/** The init export: runs `plugin.init(config)`, turning a throw into the WIT error. */
export function initOf(plugin, config) {
  if (!plugin) throw 'the plugin did not call its world\'s export function (e.g. exportController)';
  try {
    plugin.init?.(config);
  } catch (e) {
    throw message(e);
  }
}
