#!/usr/bin/env node
// The `dpl` executable. It lives outside dist/ so that npm can link it at install time, before
// the first build; it runs the compiled CLI.
'use strict';
try {
  require.resolve('../dist/main.js');
} catch {
  process.stderr.write('dpl: the CLI is not built yet; run `npm run build` in the dpl repository first\n');
  process.exit(1);
}
require('../dist/main.js');
