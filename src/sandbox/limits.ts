import type { AppConfig } from '../../config/index.js';

/**
 * Limits of the sandboxed runtime, each configurable (config/ → ENVFLEET_SANDBOX_*; the fields
 * are documented there): call, create and check deadlines, memory per environment, the
 * WebAssembly heap cap per thread, result and state caps, and the guest stack (QuickJS's frames
 * live on the host thread's native stack, so it must stay well below it: 256 KiB allows about
 * 1,000–2,000 nested calls).
 */
export type SandboxLimits = AppConfig['sandbox'];

export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = {
  callDeadlineMs: 1_000,
  createDeadlineMs: 5_000,
  checkDeadlineMs: 1_000,
  envMemoryMb: 64,
  heapMb: 512,
  maxResultBytes: 1 << 20,
  maxStateBytes: 8 << 20,
  stackBytes: 256 * 1024,
};
