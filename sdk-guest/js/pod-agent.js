// Bosun JavaScript guest SDK, pod-agent world: a plugin in the Bosun sidecar of one pod.
//
//   import { Metadata, ProbeResult, exportPodAgent } from '@bosun/sdk/pod-agent';
//   exportPodAgent({
//     metadata() {...}, init(config) {...},
//     onStart(pod) {}, probe(pod, kind) { return ProbeResult.healthy(); },
//     onCommand(pod, payload) { return 'reply'; }, onStop(pod) {},
//   });
//
// Every hook but metadata and init is optional: a missing onStart/onStop does nothing, a
// missing probe is healthy, a missing onCommand refuses every command. `pod` is a
// `PodContext`: HTTP on the pod's loopback, files under the shared directory, the log,
// the clock. Throw to fail a hook.
import pod from 'bosun:operator/pod@0.1.0';
import { BaseContext, BosunError, message, metadataOf, initOf, utf8Encode } from './common.js';

export * from './common.js';

/** Which probe the kubelet is asking for. */
export const ProbeKind = Object.freeze({ Readiness: 'readiness', Liveness: 'liveness', Startup: 'startup' });

/** A probe's answer. */
export class ProbeResult {
  constructor(healthy, message = '') { this.healthy = healthy; this.message = message; }
  /** A passing probe (with an optional message). */
  static healthy(message = '') { return new ProbeResult(true, message); }
  /** A failing probe, with the reason. */
  static unhealthy(message) { return new ProbeResult(false, String(message)); }
}

const bytes = (b) => (typeof b === 'string' ? utf8Encode(b) : b ?? new Uint8Array());
const timeout = (ms) => Math.max(0, Math.min(0xffffffff, Math.floor(ms ?? 1000)));

function response(r) {
  return { status: r.status, headers: r.headers.map(([k, v]) => [k, v]), body: new Uint8Array(r.body) };
}

/** What a pod-agent plugin may touch in its own pod, plus the log and the clock. */
export class PodContext extends BaseContext {
  /** The pod: `{ namespace, name, uid, nodeName, labels }` (labels an object of strings). */
  podInfo() {
    const i = pod.info();
    let labels = {};
    try {
      const parsed = JSON.parse(i.labels);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) labels = parsed;
    } catch {
      labels = {};
    }
    return { namespace: i.namespace, name: i.name, uid: i.uid, nodeName: i.nodeName, labels };
  }
  /** GET http://127.0.0.1:{port}{path}: `{ status, headers: [[name, value]], body: Uint8Array }`.
   * Throws `BosunError` "GET :{port}{path}: ...". */
  httpGet(port, path, timeoutMs = 1000) {
    try {
      return response(pod.httpGet(port, path, timeout(timeoutMs)));
    } catch (e) {
      throw new BosunError(`GET :${port}${path}: ${message(e)}`);
    }
  }
  /** POST http://127.0.0.1:{port}{path} with `body` (a string is sent as UTF-8). */
  httpPost(port, path, contentType, body, timeoutMs = 1000) {
    try {
      return response(pod.httpPost(port, path, contentType, bytes(body), timeout(timeoutMs)));
    } catch (e) {
      throw new BosunError(`POST :${port}${path}: ${message(e)}`);
    }
  }
  /** Reads a file under the shared directory (Uint8Array). Throws "reading {path}: ...". */
  readFile(path) {
    try {
      return new Uint8Array(pod.readFile(path));
    } catch (e) {
      throw new BosunError(`reading ${path}: ${message(e)}`);
    }
  }
  /** Writes a file under the shared directory (a string is written as UTF-8). */
  writeFile(path, contents) {
    try {
      pod.writeFile(path, bytes(contents));
    } catch (e) {
      throw new BosunError(`writing ${path}: ${message(e)}`);
    }
  }
}

let agent = null;

/** Makes `a` the component's pod-agent plugin. */
export function exportPodAgent(a) { agent = a; }

function need() {
  if (!agent) throw 'the plugin did not call exportPodAgent';
  return agent;
}

function hook(name, ...args) {
  const a = need();
  if (typeof a[name] !== 'function') return undefined;
  try {
    return a[name](new PodContext(), ...args);
  } catch (e) {
    throw message(e);
  }
}

// The world's exports; build.mjs re-exports them from the component's entry module.
export const world = {
  metadata() { return metadataOf(agent); },
  init(config) { initOf(agent, config); },
  onStart() { hook('onStart'); },
  probe(kind) {
    if (!agent) return { healthy: false, message: 'the plugin did not call exportPodAgent' };
    if (typeof agent.probe !== 'function') return { healthy: true, message: '' };
    try {
      const r = agent.probe(new PodContext(), kind);
      return { healthy: Boolean(r?.healthy), message: String(r?.message ?? '') };
    } catch (e) {
      return { healthy: false, message: message(e) };
    }
  },
  onCommand(payload) {
    if (typeof need().onCommand !== 'function') throw 'this plugin takes no commands';
    const reply = hook('onCommand', payload);
    return reply == null ? '' : String(reply);
  },
  onStop() { hook('onStop'); },
};
