import type { AppConfig } from '../../config/index.js';

/**
 * Limits of the sandboxed runtime, each configurable (config/ → ENVFLEET_SANDBOX_*; the fields
 * are documented there): call, create and check deadlines, the CPU budget of a session, the memory
 * allowance of an environment, the bound on a thread's WebAssembly memory, result and state caps,
 * and the guest stack (QuickJS's frames live on the host thread's native stack, so it must stay
 * well below it: 256 KiB allows about 1,000–2,000 nested calls).
 *
 * A run freezes these at submission, so every worker applies the same ones to its environments;
 * `heapMb` is the exception: it bounds a worker's own threads, so the pool takes it from the
 * worker's configuration, whatever the run says.
 */
export type SandboxLimits = AppConfig['sandbox'];

export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = {
  callDeadlineMs: 1_000,
  createDeadlineMs: 5_000,
  checkDeadlineMs: 1_000,
  sessionCpuMs: 10_000,
  envMemoryMb: 64,
  heapMb: 512,
  maxResultBytes: 1 << 20,
  maxStateBytes: 8 << 20,
  stackBytes: 256 * 1024,
};

/** The session CPU budget; runs frozen before it existed have none in their limits and get the default. */
export const sessionCpuMsOf = (limits: SandboxLimits): number =>
  Number.isFinite(limits.sessionCpuMs) && limits.sessionCpuMs > 0 ? limits.sessionCpuMs : DEFAULT_SANDBOX_LIMITS.sessionCpuMs;
