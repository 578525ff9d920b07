/**
 * The `dpl` executable.
 */
import './internal/compile-cache'; // first: the modules below load from it
import { startEarlyExecutors, takeEarlyExecutors } from './internal/early-executors';
import type * as Cli from './cli';

// Before the rest of the CLI loads: `dpl run`'s executors boot meanwhile.
startEarlyExecutors(process.argv.slice(2));

// `dpl run … | head` closes stdout early: stop quietly, as other command-line tools do.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

// With TLS to a head or worker addressed by IP, grpc-js passes the IP as the TLS server name and
// Node warns about it once per process (DEP0123). The certificate is still checked against the
// IP; the warning says nothing a user can act on, so dpl's own processes leave it out.
const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
  if (code === 'DEP0123') return;
  emitWarning(warning, ...rest);
});

// Until main() settles the exit code says failure: a run that stalls and lets the event loop
// drain must never look like success.
process.exitCode = 1;
// Loaded here, not imported above: an import would load it before startEarlyExecutors runs.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { main } = require('./cli') as typeof Cli;
// Stack traces of pipeline modules point at the user's source (the bundles carry source maps);
// dpl's own modules, loaded by now, do not pay for reading theirs.
process.setSourceMapsEnabled(true);
main(process.argv.slice(2))
  .finally(() => takeEarlyExecutors()?.stop()) // a command line that ran no pipeline (a usage error)
  .then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`dpl: internal error: ${String((e as Error)?.stack ?? e)}\n`);
      process.exitCode = 1;
    },
  );
