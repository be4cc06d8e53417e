// The pod-agent conformance plugin in JavaScript: an interpreter of the pod step scripts
// described in tests/conformance/README.md, identical in behaviour to the Rust and Go ones.
import { BosunError, Log, Metadata, ProbeResult, exportPodAgent, utf8Decode } from '@bosun/sdk/pod-agent';

const s = (v, key) => (typeof v?.[key] === 'string' ? v[key] : '');
const port = (v) => (Number.isInteger(v?.port) && v.port >= 0 && v.port <= 65535 ? v.port : 0);
const timeout = (v) => (typeof v?.timeoutMs === 'number' && v.timeoutMs >= 0 ? v.timeoutMs : 1000);

function run(pod, script) {
  if (!Array.isArray(script)) throw new BosunError('a script is a JSON list of steps');
  let reply = '';
  let lastStatus = null;
  for (const step of script) {
    const keys = step && typeof step === 'object' && !Array.isArray(step) ? Object.keys(step) : [];
    if (keys.length === 0) throw new BosunError('a step is a one-key object');
    const name = keys[0];
    const a = step[name];
    switch (name) {
      case 'info': {
        const i = pod.podInfo();
        const labels = Object.keys(i.labels).sort().map((k) => `${k}=${i.labels[k]}`);
        pod.info(`info ${i.namespace}/${i.name} uid=${i.uid} node=${i.nodeName} labels=${labels.join(',')}`);
        break;
      }
      case 'get':
      case 'post': {
        const p = port(a);
        const path = s(a, 'path');
        try {
          const r = name === 'get'
            ? pod.httpGet(p, path, timeout(a))
            : pod.httpPost(p, path, s(a, 'contentType'), s(a, 'body'), timeout(a));
          const headers = r.headers.map(([k, v]) => `${k}=${v}`).join(';');
          pod.info(`${name === 'get' ? 'GET' : 'POST'} :${p}${path} -> ${r.status} [${headers}] ${utf8Decode(r.body)}`);
          lastStatus = r.status;
        } catch (e) {
          pod.warn(e.message);
          lastStatus = null;
        }
        break;
      }
      case 'read': {
        const path = typeof a === 'string' ? a : '';
        try {
          pod.info(`read ${path}: ${utf8Decode(pod.readFile(path))}`);
        } catch (e) {
          pod.warn(e.message);
        }
        break;
      }
      case 'write': {
        const path = s(a, 'path');
        const contents = s(a, 'contents');
        try {
          pod.writeFile(path, contents);
          pod.info(`wrote ${path} (${utf8Encoded(contents)} bytes)`);
        } catch (e) {
          pod.warn(e.message);
        }
        break;
      }
      case 'log': {
        const level = ['trace', 'debug', 'warn', 'error'].includes(a?.level) ? a.level : 'info';
        Log.log(level, s(a, 'message'));
        break;
      }
      case 'clock':
        pod.info(`clock ${pod.nowMs()} ${pod.nowRfc3339()}`);
        break;
      case 'expectStatus': {
        const want = typeof a === 'number' ? a : 0;
        if (lastStatus !== want) throw new BosunError(`status ${lastStatus ?? 'none'}, expected ${want}`);
        break;
      }
      case 'reply':
        reply = typeof a === 'string' ? a : '';
        break;
      case 'fail':
        throw new BosunError(typeof a === 'string' ? a : '');
      default:
        throw new BosunError(`unknown step ${name}`);
    }
  }
  return reply;
}

// The length in UTF-8 bytes, as Rust and Go count a string.
function utf8Encoded(text) {
  let n = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
}

let config = {};

exportPodAgent({
  metadata: () => new Metadata('pod-conformance', '0.1.0').description('the pod-agent conformance plugin'),
  init(text) {
    try {
      config = JSON.parse(text);
    } catch {
      throw new BosunError('config is not JSON');
    }
    if (typeof config.failInit === 'string') throw new BosunError(config.failInit);
  },
  onStart(pod) {
    if ('onStart' in config) run(pod, config.onStart);
  },
  probe(pod, kind) {
    const script = config.probes?.[kind];
    if (script === undefined) return ProbeResult.healthy(`no ${kind} probe`);
    try {
      return ProbeResult.healthy(run(pod, script));
    } catch (e) {
      return ProbeResult.unhealthy(e.message);
    }
  },
  onCommand(pod, payload) {
    let script;
    try {
      script = JSON.parse(payload);
    } catch {
      throw new BosunError('payload is not a JSON list of steps');
    }
    return run(pod, script);
  },
  onStop(pod) {
    if ('onStop' in config) run(pod, config.onStop);
  },
});
