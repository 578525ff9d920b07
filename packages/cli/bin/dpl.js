#!/usr/bin/env node
// The `dpl` executable. It lives outside dist/ so that npm can link it at install time, before
// the first build; it runs the built CLI, one file (dist/dpl.js, made by scripts/bundle.js).
'use strict';
try {
  require.resolve('../dist/dpl.js');
} catch {
  process.stderr.write('dpl: the CLI is not built yet; run `npm run build` in the dpl repository first\n');
  process.exit(1);
}
require('../dist/dpl.js');
