// Types of the Bosun JavaScript guest SDK, pod-agent world (pod-agent.js).
import type { BaseContext, Metadata } from './common';

export * from './common';

export type ProbeKindName = 'readiness' | 'liveness' | 'startup';
export declare const ProbeKind: {
  readonly Readiness: 'readiness'; readonly Liveness: 'liveness'; readonly Startup: 'startup';
};

/** A probe's answer. */
export declare class ProbeResult {
  constructor(healthy: boolean, message?: string);
  readonly healthy: boolean;
  readonly message: string;
  static healthy(message?: string): ProbeResult;
  static unhealthy(message: string): ProbeResult;
}

export interface PodInfo {
  namespace: string; name: string; uid: string; nodeName: string;
  labels: Record<string, string>;
}

/** An HTTP response from the app; header names are lowercase. */
export interface HttpResponse { status: number; headers: [string, string][]; body: Uint8Array }

/** What a pod-agent plugin may touch in its own pod, plus the log and the clock. */
export declare class PodContext extends BaseContext {
  podInfo(): PodInfo;
  /** Throws `BosunError` "GET :{port}{path}: ...". */
  httpGet(port: number, path: string, timeoutMs?: number): HttpResponse;
  /** Throws `BosunError` "POST :{port}{path}: ...". */
  httpPost(port: number, path: string, contentType: string, body: Uint8Array | string, timeoutMs?: number): HttpResponse;
  /** Throws `BosunError` "reading {path}: ...". */
  readFile(path: string): Uint8Array;
  /** Throws `BosunError` "writing {path}: ...". */
  writeFile(path: string, contents: Uint8Array | string): void;
}

export interface PodAgent {
  metadata(): Metadata;
  /** Throw to stop the revision from loading. */
  init(config: string): void;
  /** The app started. Does nothing when absent. */
  onStart?(pod: PodContext): void;
  /** The pod's readiness/liveness/startup endpoint. Healthy when absent; a throw is unhealthy. */
  probe?(pod: PodContext, kind: ProbeKindName): ProbeResult;
  /** A command from a controller; the return value is the reply. Refuses all when absent. */
  onCommand?(pod: PodContext, payload: string): string | void;
  /** The pod is terminating; the last call. */
  onStop?(pod: PodContext): void;
}

/** Makes `plugin` the component's pod-agent plugin. */
export declare function exportPodAgent(plugin: PodAgent): void;
