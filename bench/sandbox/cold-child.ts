/**
 * Cold start in a fresh process (spawned by bench/sandbox.ts):
 *
 *   node --import tsx bench/sandbox/cold-child.ts hotel|library
 *
 * Times, in order: importing the sandbox host module (QuickJS's JavaScript glue), the first host's
 * warm() (reading, compiling and instantiating the WebAssembly module), the first environment
 * creation, a second one for comparison, then a second host in the same process (a new thread's
 * sandbox in a warm process: the schemas compiled again). Prints one JSON object.
 */
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import { loadEnv, type EnvKey } from './common.js';

const env = loadEnv((process.argv[2] ?? 'hotel') as EnvKey);
let t = performance.now();
const { QuickJSHost } = await import('../../src/sandbox/quickjs-host.js');
const importMs = performance.now() - t;
t = performance.now();
const host = new QuickJSHost(512);
await host.warm();
const warmMs = performance.now() - t;
t = performance.now();
const first = await host.createEnvironment(env.code, env.state, DEFAULT_SANDBOX_LIMITS);
const firstCreateMs = performance.now() - t;
first.dispose();
t = performance.now();
const second = await host.createEnvironment(env.code, env.state, DEFAULT_SANDBOX_LIMITS);
const secondCreateMs = performance.now() - t;
second.dispose();
// A second host in the same (now warm) process.
t = performance.now();
const host2 = new QuickJSHost(512);
await host2.warm();
const rewarmMs = performance.now() - t;
t = performance.now();
const third = await host2.createEnvironment(env.code, env.state, DEFAULT_SANDBOX_LIMITS);
const rewarmCreateMs = performance.now() - t;
third.dispose();
process.stdout.write(`${JSON.stringify({ importMs, warmMs, firstCreateMs, secondCreateMs, rewarmMs, rewarmCreateMs })}\n`);
