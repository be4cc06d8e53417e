// Types of the Bosun JavaScript guest SDK (index.js). Same shape as the Rust SDK.

export type VerbName = 'read' | 'apply' | 'patch' | 'delete' | 'evict' | 'cordon' | 'record-event' | 'pod-command';
export declare const Verb: {
  readonly Read: 'read'; readonly Apply: 'apply'; readonly Patch: 'patch'; readonly Delete: 'delete';
  readonly Evict: 'evict'; readonly Cordon: 'cordon'; readonly RecordEvent: 'record-event';
  readonly PodCommand: 'pod-command';
};
export type EventKindName = 'added' | 'modified' | 'deleted' | 'resync' | 'requeued';
export declare const EventKind: {
  readonly Added: 'added'; readonly Modified: 'modified'; readonly Deleted: 'deleted';
  readonly Resync: 'resync'; readonly Requeued: 'requeued';
};
export type TaintEffectName = 'no-schedule' | 'prefer-no-schedule' | 'no-execute';
export declare const TaintEffect: {
  readonly NoSchedule: 'no-schedule'; readonly PreferNoSchedule: 'prefer-no-schedule'; readonly NoExecute: 'no-execute';
};
export type EventTypeName = 'normal' | 'warning';
export declare const EventType: { readonly Normal: 'normal'; readonly Warning: 'warning' };
export type VerdictName = 'pending' | 'executed' | 'dry-run' | 'refused' | 'failed';

/** One Kubernetes object, named the way the API names it. */
export declare class ObjectRef {
  constructor(apiVersion: string, kind: string, name?: string, namespace?: string | null);
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace: string | null;
  readonly name: string;
  namespaced(namespace: string): ObjectRef;
  named(name: string): ObjectRef;
  static of(object: unknown): ObjectRef;
  static from(ref: { apiVersion: string; kind: string; name: string; namespace?: string | null }): ObjectRef;
  /** `v1/Pod default/web-0`, or `v1/Node node-1`. */
  toString(): string;
}

export type RefLike = ObjectRef | { apiVersion: string; kind: string; name: string; namespace?: string | null };

/** A plugin's error: its message is what the host sees. */
export declare class BosunError extends Error {}
/** The host refused a command at once (`message` is `command refused: <reason>`). */
export declare class Refused extends BosunError {
  readonly reason: string;
}

export declare class Subscription {
  constructor(apiVersion: string, kind: string);
  inNamespace(namespace: string): this;
  selector(labelSelector: string): this;
}

export declare class Metadata {
  constructor(name: string, version: string);
  description(description: string): this;
  subscribe(apiVersion: string, kind: string): this;
  subscription(subscription: Subscription): this;
  permit(apiVersion: string, kind: string, verbs: VerbName[]): this;
}

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

export declare class Context {
  get(target: RefLike): any | null;
  getRaw(target: RefLike): string | null;
  list(apiVersion: string, kind: string, namespace?: string | null, selector?: string | null): any[];
  listRaw(apiVersion: string, kind: string, namespace?: string | null, selector?: string | null): string[];
  stateGet(key: string): Uint8Array | null;
  stateSet(key: string, value: Uint8Array | string): void;
  stateDelete(key: string): void;
  /** Returns the command's id; throws `Refused`. */
  submit(command: CommandValue): number;
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  nowMs(): number;
  nowRfc3339(): string;
}

export declare const Log: {
  log(level: 'trace' | 'debug' | 'info' | 'warn' | 'error', message: string): void;
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
};

export interface Controller {
  metadata(): Metadata;
  /** Throw to stop the revision from loading. */
  init(config: string): void;
  /** Throw to fail the call (the key is requeued with backoff). */
  reconcile(ctx: Context, req: Request): Outcome;
}

/** Makes `plugin` the component's controller. */
export declare function exportController(plugin: Controller): void;
export declare function parseConfig(config: string): any;
export declare function utf8Encode(text: string): Uint8Array;
export declare function utf8Decode(bytes: Uint8Array): string;
