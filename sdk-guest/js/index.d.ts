// Types of the Bosun JavaScript guest SDK, controller world (index.js). Same shape as the
// Rust SDK. The admission and pod-agent worlds: admission.d.ts, pod-agent.d.ts.
import type { CacheContext, EventKindName, EventTypeName, Metadata, ObjectRef, RefLike, TaintEffectName, VerdictName } from './common';

export * from './common';

/** An opaque command; build with `Command.*`, submit with `ctx.submit`. */
export interface CommandValue { readonly tag: string; readonly val: unknown }
export declare const Command: {
  apply(object: unknown): CommandValue;
  mergePatch(target: RefLike, patch: unknown): CommandValue;
  jsonPatch(target: RefLike, patch: unknown): CommandValue;
  delete(target: RefLike): CommandValue;
  evict(pod: RefLike): CommandValue;
  cordon(node: string): CommandValue;
  uncordon(node: string): CommandValue;
  taint(node: string, taint: { key: string; value?: string; effect: TaintEffectName }): CommandValue;
  untaint(node: string, key: string, effect?: TaintEffectName | null): CommandValue;
  /** A merge patch of the status subresource: `{status}` is its only key. */
  statusPatch(target: RefLike, status: unknown): CommandValue;
  event(regarding: RefLike, eventType: EventTypeName, reason: string, message: string): CommandValue;
  pod(namespace: string, pod: string, plugin: string, payload: string): CommandValue;
};

export declare class Outcome {
  readonly requeueAfterMs: number | null;
  static done(): Outcome;
  static requeueAfter(ms: number): Outcome;
}

export interface CommandOutcome { id: number; verdict: VerdictName; message: string }

export declare class Request {
  readonly target: ObjectRef;
  readonly events: EventKindName[];
  readonly outcomes: CommandOutcome[];
  readonly attempt: number;
  isDeleted(): boolean;
}

/** The cache, state, the command pipe, the log and the clock. */
export declare class Context extends CacheContext {
  /** Returns the command's id; throws `Refused`. */
  submit(command: CommandValue): number;
}

export interface Controller {
  metadata(): Metadata;
  /** Throw to stop the revision from loading. */
  init(config: string): void;
  /** Throw to fail the call (the key is requeued with backoff). */
  reconcile(ctx: Context, req: Request): Outcome;
}

/** Makes `plugin` the component's controller. */
export declare function exportController(plugin: Controller): void;
