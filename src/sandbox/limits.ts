/** Limits of the sandboxed runtime; every one is configurable (config/ → ENVFLEET_SANDBOX_*). */
export interface SandboxLimits {
  /** Deadline of one tool call. */
  readonly callDeadlineMs: number;
  /** Deadline of loading the source and running the constructor. */
  readonly createDeadlineMs: number;
  /** Deadline of one check function. */
  readonly checkDeadlineMs: number;
  /** Memory limit of one environment's QuickJS runtime. */
  readonly envMemoryMb: number;
  /** Cap on the WebAssembly heap shared by the environments of one thread (the real memory guard). */
  readonly heapMb: number;
  /** Largest serialized tool result. */
  readonly maxResultBytes: number;
  /** Largest serialized state. */
  readonly maxStateBytes: number;
  /**
   * Guest stack size. QuickJS's frames live on the host thread's native stack, so this must stay
   * well below it (256 KiB allows about 1,000–2,000 nested calls).
   */
  readonly stackBytes: number;
}

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
