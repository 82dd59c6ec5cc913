#!/usr/bin/env node
// Entry point of the `envfleet` command. The product runs from its TypeScript sources through
// tsx (a runtime dependency), so a clone works right after `npm ci` with no build step.
import { register } from 'tsx/esm/api';

register();
await import('../workers/cli.ts');
