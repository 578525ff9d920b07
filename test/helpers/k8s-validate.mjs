// Validates every object in the YAML files given against the Kubernetes schemas of
// kubernetes-models (an ESM package, hence a separate process for the test suite).
// Prints a JSON list: { file, kind, name, error } per object; error is null when valid.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseAllDocuments } from 'yaml';
import * as core from 'kubernetes-models/v1';
import * as apps from 'kubernetes-models/apps/v1';
import * as keda from '@kubernetes-models/keda/keda.sh/v1alpha1';

const classes = {
  'v1/Secret': core.Secret,
  'v1/Service': core.Service,
  'apps/v1/Deployment': apps.Deployment,
  'keda.sh/v1alpha1/ScaledObject': keda.ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': keda.TriggerAuthentication,
};
const out = [];
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (doc.errors.length > 0) {
      out.push({ file: basename(file), kind: '?', name: '?', error: doc.errors.map((e) => e.message).join('; ') });
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    const Model = classes[`${obj.apiVersion}/${obj.kind}`];
    let error = null;
    if (Model === undefined) error = `no schema for ${obj.apiVersion} ${obj.kind}`;
    else {
      try {
        new Model(obj).validate();
      } catch (e) {
        error = e.message;
      }
    }
    out.push({ file: basename(file), kind: obj.kind, name: obj.metadata?.name ?? '?', error });
  }
}
process.stdout.write(JSON.stringify(out));
