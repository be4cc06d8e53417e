// The conformance plugin in JavaScript: an interpreter of the step scripts described in
// tests/conformance/README.md, identical in behaviour to the Rust and Go ones.
import {
  Command, EventType, Metadata, ObjectRef, Outcome, Subscription, TaintEffect, Verb,
  BosunError, exportController, utf8Decode,
} from '@bosun/sdk';

const s = (v, key) => (typeof v?.[key] === 'string' ? v[key] : '');
const objRef = (v) => new ObjectRef(s(v, 'apiVersion'), s(v, 'kind'), s(v, 'name'), v?.namespace ?? null);
const effect = (name) =>
  ({ NoExecute: TaintEffect.NoExecute, PreferNoSchedule: TaintEffect.PreferNoSchedule }[name] ?? TaintEffect.NoSchedule);

function command(name, a) {
  switch (name) {
    case 'apply': return Command.apply(a);
    case 'merge-patch': return Command.mergePatch(objRef(a.target), a.patch);
    case 'json-patch': return Command.jsonPatch(objRef(a.target), a.patch);
    case 'delete': return Command.delete(objRef(a));
    case 'evict': return Command.evict(objRef(a));
    case 'cordon': return Command.cordon(typeof a === 'string' ? a : '');
    case 'uncordon': return Command.uncordon(typeof a === 'string' ? a : '');
    case 'taint':
      return Command.taint(s(a, 'node'), { key: s(a, 'key'), value: s(a, 'value'), effect: effect(s(a, 'effect')) });
    case 'untaint':
      return Command.untaint(s(a, 'node'), s(a, 'key'), typeof a.effect === 'string' ? effect(a.effect) : null);
    case 'event':
      return Command.event(objRef(a.regarding), s(a, 'type') === 'Warning' ? EventType.Warning : EventType.Normal,
        s(a, 'reason'), s(a, 'message'));
    default: return Command.pod(s(a, 'namespace'), s(a, 'pod'), s(a, 'plugin'), s(a, 'payload'));
  }
}

let script = [];

exportController({
  metadata() {
    return new Metadata('conformance', '0.1.0')
      .description('the conformance plugin')
      .subscribe('v1', 'Pod')
      .subscription(new Subscription('v1', 'ConfigMap').inNamespace('conf').selector('app=conf'))
      .permit('v1', 'Pod', [Verb.Read, Verb.Patch, Verb.Delete, Verb.Evict, Verb.RecordEvent, Verb.PodCommand])
      .permit('v1', 'Node', [Verb.Read, Verb.Cordon])
      .permit('v1', 'ConfigMap', [Verb.Read, Verb.Apply]);
  },
  init(config) {
    let c;
    try {
      c = JSON.parse(config);
    } catch {
      throw new BosunError('invalid config: not JSON');
    }
    if (typeof c.failInit === 'string') throw new BosunError(c.failInit);
    script = Array.isArray(c.script) ? c.script : [];
  },
  reconcile(ctx, req) {
    let outcome = Outcome.done();
    for (const step of script) {
      const op = Object.keys(step ?? {})[0];
      if (op === undefined) continue;
      const arg = step[op];
      switch (op) {
        case 'get': {
          const r = objRef(arg);
          const o = ctx.get(r);
          if (o === null) ctx.info(`get ${r}: absent`);
          else ctx.info(`get ${r}: present rv=${o.metadata?.resourceVersion ?? '-'}`);
          break;
        }
        case 'list': {
          const av = s(arg, 'apiVersion');
          const kind = s(arg, 'kind');
          try {
            const items = ctx.list(av, kind, arg.namespace ?? null, arg.selector ?? null);
            const names = items.map((o) => o.metadata?.name ?? '').sort();
            ctx.info(`list ${av}/${kind}: ${names.length} [${names.join(',')}]`);
          } catch (e) {
            ctx.warn(`list ${av}/${kind}: error: ${e.message}`);
          }
          break;
        }
        case 'submit': {
          const name = Object.keys(arg)[0];
          try {
            const id = ctx.submit(command(name, arg[name]));
            ctx.info(`submit ${name}: accepted #${id}`);
          } catch (e) {
            ctx.warn(`submit ${name}: ${e.message}`);
          }
          break;
        }
        case 'state-set': {
          const key = s(arg, 'key');
          try {
            ctx.stateSet(key, s(arg, 'value'));
            ctx.info(`state-set ${key}`);
          } catch (e) {
            ctx.warn(`state-set ${key}: ${e.message}`);
          }
          break;
        }
        case 'state-get': {
          const v = ctx.stateGet(arg);
          ctx.info(`state-get ${arg}: ${v === null ? 'absent' : utf8Decode(v)}`);
          break;
        }
        case 'state-delete':
          ctx.stateDelete(arg);
          ctx.info(`state-delete ${arg}`);
          break;
        case 'log': {
          const level = ['trace', 'debug', 'warn', 'error'].includes(arg.level) ? arg.level : 'info';
          ctx[level](s(arg, 'message'));
          break;
        }
        case 'clock':
          ctx.info(`clock ${ctx.nowMs()} ${ctx.nowRfc3339()}`);
          break;
        case 'request': {
          const outcomes = req.outcomes.map((o) => `${o.id}:${o.verdict}:${o.message}`);
          ctx.info(`request ${req.target} events=${req.events.join(',')} attempt=${req.attempt} outcomes=${outcomes.join(';')}`);
          break;
        }
        case 'requeue':
          outcome = Outcome.requeueAfter(arg);
          break;
        case 'fail':
          throw new BosunError(arg);
        default:
          ctx.error(`unknown step ${op}`);
      }
    }
    return outcome;
  },
});
