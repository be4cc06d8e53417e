// The cache-backed context of the controller and admission worlds (imports
// bosun:operator/cache, which a pod-agent plugin does not get).
import cache from 'bosun:operator/cache@0.1.0';
import { BaseContext, BosunError, Log, ObjectRef, message, utf8Encode } from './common.js';

const ref = (r) => ObjectRef.from(r).toWit();

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
