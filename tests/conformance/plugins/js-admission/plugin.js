// An admission plugin in JavaScript, the twin of plugins/go-admission: denies pods without
// an `app` label, labels the others `admitted-by=bosun` with a JSON patch, and logs what
// the cache knows of the namespace.
import { Metadata, ObjectRef, Verb, deny, exportAdmission, patchResponse } from '@bosun/sdk/admission';

exportAdmission({
  metadata: () => new Metadata('js-admission', '0.1.0')
    .subscribe('v1', 'Pod')
    .permit('v1', 'Namespace', [Verb.Read]),
  init() {},
  review(ctx, review) {
    const req = review.request ?? {};
    const meta = req.object?.metadata ?? {};
    const ns = req.namespace ?? '';
    const known = ctx.get(new ObjectRef('v1', 'Namespace', ns)) !== null;
    ctx.info(`review ${meta.name} in ${ns} (namespace cached: ${known})`);
    if (!('app' in (meta.labels ?? {}))) return deny(review, 'pods need an app label');
    return patchResponse(review, [{ op: 'add', path: '/metadata/labels/admitted-by', value: 'bosun' }]);
  },
});
