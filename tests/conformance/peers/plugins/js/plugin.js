// zone-labeler-js: plugins/zone-labeler written with the JS SDK. For each pod bound to a
// node, it copies the node's zone label (`topology.kubernetes.io/zone` unless configured
// otherwise) onto the pod with one merge patch when the pod's value differs. See
// README.md.
import { BosunError, Command, Metadata, Outcome, Verb, exportController, parseConfig } from '@bosun/sdk';

const DEFAULT_LABEL = 'topology.kubernetes.io/zone';
const NODE_MISSING_RETRY_MS = 30_000;

let label = DEFAULT_LABEL;

// The value of label `key` of an object when it is a string, else undefined.
const labelOf = (object, key) => {
  const v = object.metadata?.labels?.[key];
  return typeof v === 'string' ? v : undefined;
};

exportController({
  metadata: () => new Metadata('zone-labeler-js', '0.1.0')
    .description("copies the node's zone label onto the pods bound to it")
    .subscribe('v1', 'Pod')
    .permit('v1', 'Pod', [Verb.Read, Verb.Patch, Verb.RecordEvent])
    .permit('v1', 'Node', [Verb.Read]),

  init(text) {
    const c = parseConfig(text);
    if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new BosunError('invalid config: not a JSON object');
    for (const k of Object.keys(c)) {
      if (k !== 'label') throw new BosunError(`invalid config: unknown field ${JSON.stringify(k)} (expected label)`);
    }
    const l = c.label ?? DEFAULT_LABEL;
    if (typeof l !== 'string') throw new BosunError('invalid config: `label` must be a string');
    if (l === '') throw new BosunError('invalid config: `label` is empty');
    label = l;
  },

  reconcile(ctx, req) {
    if (req.isDeleted()) return Outcome.done();
    // The slim views: the host cuts the pod and node down to the fields they name, so
    // JSON.parse sees a few hundred bytes instead of the whole object.
    const pod = ctx.getPod(req.target);
    if (pod === null) return Outcome.done();
    // Unbound pods are reconciled again when the scheduler binds them.
    const nodeName = pod.spec?.nodeName;
    if (typeof nodeName !== 'string') return Outcome.done();
    const node = ctx.getNode(nodeName);
    if (node === null) {
      ctx.warn(`${req.target}: node ${nodeName} is not in the cache yet, retrying in ${NODE_MISSING_RETRY_MS / 1000}s`);
      return Outcome.requeueAfter(NODE_MISSING_RETRY_MS);
    }
    const zone = labelOf(node, label);
    if (zone === undefined || labelOf(pod, label) === zone) return Outcome.done();
    const id = ctx.submit(Command.mergePatch(req.target, { metadata: { labels: { [label]: zone } } }));
    ctx.info(`${req.target}: labelled ${label}=${zone} from node ${nodeName} (command #${id})`);
    return Outcome.done();
  },
});
