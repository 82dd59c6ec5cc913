/**
 * The piscina task file: one module instance per pool thread. It only dispatches; the work is in
 * src/sandbox/tasks.ts. Code inside a pool thread does not log; it returns data.
 */
import type { MessagePort } from 'node:worker_threads';
import type { EnvironmentCode } from '../src/sandbox/bundle.js';
import type { SandboxLimits } from '../src/sandbox/limits.js';
import { HostPool, runChecks, runProbe, runSession, type ChecksInput, type ProbeInput } from '../src/sandbox/tasks.js';

export type PoolTask =
  | ({ readonly kind: 'probe' } & ProbeInput)
  | ({ readonly kind: 'checks' } & ChecksInput)
  | { readonly kind: 'session'; readonly code: EnvironmentCode; readonly initialState: unknown; readonly limits: SandboxLimits; readonly port: MessagePort }
  | { readonly kind: 'warm' };

const hosts = new HostPool();

export default async function handle(task: PoolTask): Promise<unknown> {
  switch (task.kind) {
    case 'probe':
      return runProbe(hosts, task);
    case 'checks':
      return runChecks(hosts, task);
    case 'session':
      return runSession(hosts, task);
    case 'warm':
      return null;
  }
}
