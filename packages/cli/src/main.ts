/**
 * The `dpl` executable.
 */
import { main } from './cli';

// Stack traces of pipeline modules point at the user's source (the bundles carry source maps).
process.setSourceMapsEnabled(true);

// `dpl run … | head` closes stdout early: stop quietly, as other command-line tools do.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

// Until main() settles the exit code says failure: a run that stalls and lets the event loop
// drain must never look like success.
process.exitCode = 1;
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`dpl: internal error: ${String((e as Error)?.stack ?? e)}\n`);
    process.exitCode = 1;
  },
);
