// The cache-backed context of the controller and admission worlds (imports
// bosun:operator/cache, which a pod-agent plugin does not get).
import cache from 'bosun:operator/cache@0.1.0';
import { BaseContext, BosunError, Log, ObjectRef, message, utf8Encode } from './common.js';

const ref = (r) => ObjectRef.from(r).toWit();

// The slim views: the same fields as the Rust SDK's `objects` module and the Go SDK's
// PodObject/NodeObject/ObjectMeta, cut by the host (`cache.get-fields`).
const META_FIELDS = Object.freeze(['name', 'namespace', 'uid', 'generation', 'resourceVersion',
  'labels', 'annotations', 'creationTimestamp', 'deletionTimestamp', 'ownerReferences']
  .map((f) => `metadata.${f}`));
const POD_FIELDS = Object.freeze([...META_FIELDS, 'spec.nodeName', 'spec.containers.name',
  'spec.containers.image', 'status.phase', 'status.conditions', 'status.containerStatuses']);
const NODE_FIELDS = Object.freeze([...META_FIELDS, 'spec.unschedulable', 'spec.taints',
  'status.conditions', 'status.nodeInfo.bootID']);

/** The cache, plugin-local state, the log and the clock: the context of the controller
 * and admission worlds. */
export class CacheContext extends BaseContext {
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
  /** The object reduced to the named fields, parsed, or null when it is not in the cache.
   * A field is a dotted path from the root ('metadata.labels', 'spec.nodeName'); one through
   * an array applies to each element ('spec.containers.image'). Values stay at their place;
   * paths the object lacks are left out. The host skips the rest of the object, so on a
   * large object this is several times cheaper than get(). Throws on an empty list, more
   * than 64 fields or an empty path segment. */
  getFields(target, fields) {
    let t;
    try {
      t = cache.getFields(ref(target), fields.join(','));
    } catch (e) {
      throw new BosunError(`reading fields of ${ObjectRef.from(target)}: ${message(e)}`);
    }
    return t == null ? null : JSON.parse(t);
  }
  /** The pod's slim view: metadata, spec.nodeName, containers' names and images, phase,
   * conditions and container statuses; null when it is not in the cache. */
  getPod(target) { return this.getFields(target, POD_FIELDS); }
  /** The node's slim view: metadata, spec.unschedulable, taints, conditions and
   * status.nodeInfo.bootID; null when it is not in the cache. */
  getNode(name) { return this.getFields(new ObjectRef('v1', 'Node', name), NODE_FIELDS); }
  /** Any object's metadata and nothing else of it; null when it is not in the cache. */
  getMeta(target) {
    const o = this.getFields(target, META_FIELDS);
    return o === null ? null : (o.metadata ?? {});
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
}
