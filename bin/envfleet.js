#!/usr/bin/env node
// Entry point of the `envfleet` command: the JavaScript build in dist/, made by `npm ci` (the
// package's prepare script) or `npm run build`. During development, `npm run dev -- ARGS` runs the
// TypeScript sources instead.
try {
  await import('../dist/cli/main.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    process.stderr.write('envfleet: the build is missing (dist/cli/main.js). Run `npm run build` (or `npm ci`) in the envfleet directory.\n');
    process.exit(1);
  }
  throw err;
}
