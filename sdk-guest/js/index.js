// Bosun JavaScript guest SDK, controller world: the same shape as the Rust SDK
// (bosun-sdk), over the bosun:operator@0.1.0 imports as componentize-qjs exposes them.
//
//   import { Metadata, Verb, Command, Outcome, exportController } from '@bosun/sdk';
//   exportController({ metadata() {...}, init(config) {...}, reconcile(ctx, req) {...} });
//
// The other worlds have their own module: `@bosun/sdk/admission`, `@bosun/sdk/pod-agent`.
// `bosun plugin build` (build.mjs) adds the world's exports and componentizes.
import commands from 'bosun:operator/commands@0.1.0';
import { ObjectRef, Refused, message, metadataOf, initOf } from './common.js';
import { CacheContext } from './cache.js';

export * from './common.js';

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
  /** A merge patch of the object's status subresource (`{status}` is the only key). */
  statusPatch: (target, status) => ({ tag: 'merge-patch', val: { target: ref(target), patch: text({ status }) } }),
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

/** The plugin's view of the runtime during one call: the cache, its state, the command
 * pipe, the log and the clock. */
export class Context extends CacheContext {
  /** Submits a command; returns its id (a number). Throws `Refused`. */
  submit(command) {
    try {
      return commands.submit(command);
    } catch (e) {
      throw new Refused(message(e));
    }
  }
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

let controller = null;

/** Makes `plugin` ({ metadata(), init(config), reconcile(ctx, req) }) the controller. */
export function exportController(plugin) { controller = plugin; }

// The world's exports; build.mjs re-exports them from the component's entry module.
export const world = {
  metadata() { return metadataOf(controller); },
  init(config) { initOf(controller, config); },
  reconcile(request) {
    if (!controller) throw 'the plugin did not call exportController';
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
