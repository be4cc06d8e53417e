// Types of what every world of the Bosun JavaScript guest SDK shares (common.js).

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

export declare const Log: {
  log(level: 'trace' | 'debug' | 'info' | 'warn' | 'error', message: string): void;
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
};

/** The host's clock. */
export declare const Clock: {
  /** Wall-clock milliseconds since the Unix epoch. */
  nowMs(): number;
  /** RFC 3339 with seconds precision. */
  nowRfc3339(): string;
};

/** Logging and the clock, as every world's context has them. */
export declare class BaseContext {
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  nowMs(): number;
  nowRfc3339(): string;
}

/** The cache, plugin-local state, the log and the clock (controller and admission worlds). */
export declare class CacheContext extends BaseContext {
  get(target: RefLike): any | null;
  getRaw(target: RefLike): string | null;
  /** The object reduced to the named fields (dotted paths; through arrays, each element). */
  getFields(target: RefLike, fields: string[]): any | null;
  /** A pod's slim view: metadata, spec.nodeName, containers' names and images, phase,
   * conditions, container statuses. */
  getPod(target: RefLike): any | null;
  /** A node's slim view: metadata, unschedulable, taints, conditions, bootID. */
  getNode(name: string): any | null;
  /** Any object's metadata. */
  getMeta(target: RefLike): any | null;
  list(apiVersion: string, kind: string, namespace?: string | null, selector?: string | null): any[];
  listRaw(apiVersion: string, kind: string, namespace?: string | null, selector?: string | null): string[];
  stateGet(key: string): Uint8Array | null;
  stateSet(key: string, value: Uint8Array | string): void;
  stateDelete(key: string): void;
}

/** The message of a thrown value. */
export declare function message(e: unknown): string;
export declare function parseConfig(config: string): any;
/** A metav1.LabelSelector. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}
/** An IntOrString count or percentage (`3`, `"3"`, `"25%"`) resolved against `total`
 * (apimachinery's `GetValueFromIntOrPercent`; rounded down unless `roundUp`); null gives
 * `fallback` (default 0). Throws `BosunError` on anything else. */
export declare function intOrPercent(
  value: number | string | null | undefined, total: number, options?: { roundUp?: boolean; fallback?: number },
): number;
/** A LabelSelector as the selector string `CacheContext.list` takes; null or {} is ''. */
export declare function selectorString(selector: LabelSelector | null | undefined): string;
/** Whether labels match a LabelSelector (null matches nothing, {} everything). */
export declare function selectorMatches(selector: LabelSelector | null | undefined, labels: Record<string, string> | null | undefined): boolean;
export declare function utf8Encode(text: string): Uint8Array;
export declare function utf8Decode(bytes: Uint8Array): string;
