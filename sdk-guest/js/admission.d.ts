// Types of the Bosun JavaScript guest SDK, admission world (admission.js).
import type { CacheContext, Metadata } from './common';

export * from './common';

/** The cache, state, the log and the clock (no command pipe in this world). */
export declare class Context extends CacheContext {}

/** An AdmissionReview (`admission.k8s.io/v1`), parsed. */
export type AdmissionReview = { apiVersion?: string; kind?: string; request?: any; response?: any; [k: string]: any };

/** The answer that admits the object unchanged. */
export declare function allow(review: AdmissionReview): AdmissionReview;
/** The answer that rejects the object with `message` (HTTP 403). */
export declare function deny(review: AdmissionReview, message: string): AdmissionReview;
/** The answer that admits the object with a JSON patch (RFC 6902). */
export declare function patchResponse(review: AdmissionReview, jsonPatch: unknown[]): AdmissionReview;
/** Standard base64 (QuickJS has no btoa). */
export declare function base64Encode(bytes: Uint8Array): string;

export interface Admission {
  metadata(): Metadata;
  /** Throw to stop the revision from loading. */
  init(config: string): void;
  /** Returns the AdmissionReview to answer with; throw to fail the call. */
  review(ctx: Context, review: AdmissionReview): AdmissionReview;
}

/** Makes `plugin` the component's admission plugin. */
export declare function exportAdmission(plugin: Admission): void;
