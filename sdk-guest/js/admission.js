// Bosun JavaScript guest SDK, admission world: a plugin behind the runtime's
// mutating/validating webhook.
//
//   import { Metadata, allow, deny, patchResponse, exportAdmission } from '@bosun/sdk/admission';
//   exportAdmission({ metadata() {...}, init(config) {...}, review(ctx, review) { return allow(review); } });
//
// `review(ctx, review)` gets the AdmissionReview (with `request`) parsed, and a `Context`
// with the cache, state, the log and the clock (no command pipe in this world); it
// returns the AdmissionReview to answer with (see `allow`, `deny`, `patchResponse`).
import { BosunError, message, metadataOf, initOf, utf8Encode } from './common.js';
import { CacheContext } from './cache.js';

export * from './common.js';

/** The admission plugin's view of the runtime: the cache, state, the log and the clock. */
export class Context extends CacheContext {}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Standard base64 of bytes (QuickJS has no btoa). */
export function base64Encode(bytes) {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
    out += i + 1 < bytes.length ? B64[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.length ? B64[n & 63] : '=';
  }
  return out;
}

function answer(review, response) {
  const uid = typeof review?.request?.uid === 'string' ? review.request.uid : '';
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { ...response, uid } };
}

/** The answer that admits the object unchanged. */
export function allow(review) { return answer(review, { allowed: true }); }

/** The answer that rejects the object with `message` (HTTP 403 in the status). */
export function deny(review, reason) {
  return answer(review, { allowed: false, status: { code: 403, message: String(reason) } });
}

/** The answer that admits the object with a JSON patch (RFC 6902, a list of operations). */
export function patchResponse(review, jsonPatch) {
  return answer(review, {
    allowed: true, patchType: 'JSONPatch', patch: base64Encode(utf8Encode(JSON.stringify(jsonPatch))),
  });
}

let plugin = null;

/** Makes `p` ({ metadata(), init(config), review(ctx, review) }) the admission plugin. */
export function exportAdmission(p) { plugin = p; }

// The world's exports; build.mjs re-exports them from the component's entry module.
export const world = {
  metadata() { return metadataOf(plugin); },
  init(config) { initOf(plugin, config); },
  review(request) {
    if (!plugin) throw 'the plugin did not call exportAdmission';
    let review;
    try {
      review = JSON.parse(request);
    } catch (e) {
      throw `invalid AdmissionReview JSON: ${message(e)}`;
    }
    try {
      const out = plugin.review(new Context(), review);
      if (out === null || typeof out !== 'object') throw new BosunError('review returned no AdmissionReview');
      return JSON.stringify(out);
    } catch (e) {
      throw message(e);
    }
  },
};
