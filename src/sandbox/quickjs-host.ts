import * as releaseSync from '@jitl/quickjs-wasmfile-release-sync';
import {
  newQuickJSWASMModuleFromVariant,
  type QuickJSContext,
  type QuickJSHandle,
  type QuickJSRuntime,
  type QuickJSWASMModule,
} from 'quickjs-emscripten-core';
import type { ValidateFunction } from 'ajv';
import { compileJsonSchema, describeAjvErrors } from '../util/json-schema.js';
import type { CheckSpec, EnvironmentCode } from './bundle.js';
import { FATAL_CODES, SANDBOX_ERROR_CODES, SandboxError, type SandboxErrorCode } from './errors.js';
import { HARNESS_SOURCE } from './harness.js';
import type { SandboxLimits } from './limits.js';

const PAGE = 65_536;

type Variant = Parameters<typeof newQuickJSWASMModuleFromVariant>[0];
/** The release variant, whether the loader hands us its ESM default or the CommonJS namespace. */
const RELEASE_VARIANT: Variant = (() => {
  const exported = (releaseSync as unknown as { default: Variant | { default: Variant } }).default;
  return typeof exported === 'object' && 'default' in exported ? exported.default : exported;
})();

/** What one tool call produced. `result` is what the method returned, or `{success:false, error}`. */
export interface CallOutcome {
  readonly result: unknown;
  readonly runtimeError?: SandboxErrorCode;
  /** Wall time inside the runtime, microseconds. */
  readonly us: number;
}

export interface CheckOutcome {
  readonly item: string;
  readonly passed: boolean;
  readonly error?: string;
  readonly errorCode?: SandboxErrorCode;
}

/** The part of WebAssembly.Memory used here (the lib has no WebAssembly types without DOM). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(delta: number): number;
}

type Reply = { ok: unknown } | { err: SandboxErrorCode; message: string };

/**
 * One QuickJS WebAssembly module (one heap) and the environments living in it. A thread owns one
 * host. The prebuilt module ignores its own memory limit, so the heap's growth is capped here:
 * past `heapMb` a growth request fails, QuickJS raises out-of-memory in the environment that
 * asked, and that environment is thrown away while the others go on.
 */
export class QuickJSHost {
  private modulePromise: Promise<QuickJSWASMModule> | null = null;
  private memory: { readonly buffer: ArrayBuffer } | null = null;
  private readonly validators = new Map<string, Map<string, ValidateFunction>>();
  /** Set when the WebAssembly module itself failed (not just one environment): replace this host. */
  broken = false;
  private live = 0;

  constructor(private readonly heapMb: number) {}

  /** Environments created here and not yet disposed. */
  get liveEnvironments(): number {
    return this.live;
  }

  private module(): Promise<QuickJSWASMModule> {
    this.modulePromise ??= newQuickJSWASMModuleFromVariant(RELEASE_VARIANT).then(module => {
      const memory = module.getWasmMemory() as unknown as WasmMemory;
      const cap = this.heapMb * 1024 * 1024;
      const grow = memory.grow.bind(memory);
      Object.defineProperty(memory, 'grow', {
        value: (delta: number) => {
          if (memory.buffer.byteLength + delta * PAGE > cap) throw new RangeError('envfleet: sandbox heap cap reached');
          return grow(delta);
        },
      });
      this.memory = memory;
      return module;
    });
    return this.modulePromise;
  }

  /** Bytes of WebAssembly heap in use (it never shrinks; recycle the thread when it is large). */
  heapBytes(): number {
    return this.memory?.buffer.byteLength ?? 0;
  }

  async warm(): Promise<void> {
    await this.module();
  }

  /** Loads the source, instantiates the class on the initial state. Throws SandboxError. */
  async createEnvironment(code: EnvironmentCode, initialState: unknown, limits: SandboxLimits): Promise<SandboxEnvironment> {
    const module = await this.module();
    const stateJson = JSON.stringify(initialState);
    if (stateJson === undefined) throw new SandboxError('STATE_INVALID', 'the initial state is not JSON');
    if (stateJson.length > limits.maxStateBytes) {
      throw new SandboxError('STATE_TOO_LARGE', `the initial state is ${stateJson.length} bytes; the cap is ${limits.maxStateBytes}`);
    }
    const vm = this.newVm(module, limits, true);
    try {
      vm.arm(limits.createDeadlineMs);
      const cls = vm.eval(`${code.source}\n;(typeof ${code.className} === 'function' ? ${code.className} : undefined)`, 'SOURCE_LOAD_FAILED');
      try {
        vm.expectOk(vm.callHarness('bind', [cls]), `the source does not declare class ${code.className}`);
      } finally {
        cls.dispose();
      }
      vm.expectOk(vm.callHarness('create', [stateJson]));
      return new SandboxEnvironment(vm, this.validatorsFor(code), limits);
    } catch (err) {
      vm.dispose();
      throw err;
    }
  }

  /** Runs each check in a fresh runtime as check(finalState, initialState); a failure counts as false. */
  async runChecks(checks: readonly CheckSpec[], finalState: unknown, initialState: unknown, limits: SandboxLimits): Promise<CheckOutcome[]> {
    const module = await this.module();
    const finalJson = JSON.stringify(finalState);
    const initialJson = JSON.stringify(initialState);
    return checks.map(({ item, check }) => {
      let vm: GuestVm | null = null;
      try {
        vm = this.newVm(module, limits, false);
        vm.arm(limits.checkDeadlineMs);
        const fn = vm.eval(`${check}\n;(typeof check === 'function' ? check : undefined)`, 'CHECK_INVALID');
        let reply: Reply;
        try {
          reply = vm.callHarness('check', [fn, finalJson, initialJson]);
        } finally {
          fn.dispose();
        }
        if ('ok' in reply) return { item, passed: reply.ok === true };
        return { item, passed: false, error: reply.message, errorCode: reply.err };
      } catch (err) {
        const e = err instanceof SandboxError ? err : new SandboxError('CHECK_THREW', String(err));
        return { item, passed: false, error: e.message, errorCode: e.code };
      } finally {
        vm?.dispose();
      }
    });
  }

  private readonly slots: RuntimeSlot[] = [];

  /** A shared runtime with room for one more environment (limits of the first environment in it). */
  private sharedSlot(module: QuickJSWASMModule, limits: SandboxLimits): RuntimeSlot {
    for (const slot of this.slots) if (!slot.fatal && slot.contexts < ENVS_PER_RUNTIME) return slot;
    const slot = new RuntimeSlot(module, Math.min(limits.heapMb, limits.envMemoryMb * ENVS_PER_RUNTIME) * 1024 * 1024, limits.stackBytes);
    this.slots.push(slot);
    return slot;
  }

  private newVm(module: QuickJSWASMModule, limits: SandboxLimits, shared: boolean): GuestVm {
    let slot: RuntimeSlot;
    if (shared) {
      slot = this.sharedSlot(module, limits);
    } else {
      slot = new RuntimeSlot(module, limits.envMemoryMb * 1024 * 1024, limits.stackBytes);
      slot.retired = true; // freed with its only context
    }
    const vm = new GuestVm(slot, {
      onFatal: () => {
        this.broken = true;
      },
      onDispose: () => {
        this.live -= 1;
        if (shared && slot.contexts <= 1 && !slot.fatal) {
          // Last environment leaving a shared runtime: retire it so it is freed with that context.
          slot.retired = true;
          this.slots.splice(this.slots.indexOf(slot), 1);
        }
      },
    });
    this.live += 1;
    return vm;
  }

  private validatorsFor(code: EnvironmentCode): Map<string, ValidateFunction> {
    const key = `${code.className}\u0000${JSON.stringify(code.tools)}`;
    let map = this.validators.get(key);
    if (!map) {
      map = new Map();
      for (const tool of code.tools) {
        map.set(tool.function.name, compileJsonSchema(tool.function.parameters ?? { type: 'object' }));
      }
      if (this.validators.size > 500) this.validators.clear();
      this.validators.set(key, map);
    }
    return map;
  }
}

/**
 * A QuickJS runtime and the contexts living in it. Environments share runtimes (up to
 * ENVS_PER_RUNTIME each): a runtime's fixed cost and its object shapes are then shared, which is
 * most of the memory of an environment. Only one call runs at a time in a thread, so one deadline
 * per runtime is enough; the interrupt handler cannot be caught by guest code.
 */
class RuntimeSlot {
  readonly runtime: QuickJSRuntime;
  deadline = 0;
  interrupted = false;
  contexts = 0;
  /** The WebAssembly code failed inside this runtime: never free it, never reuse it. */
  fatal = false;
  retired = false;

  constructor(module: QuickJSWASMModule, memoryLimitBytes: number, stackBytes: number) {
    this.runtime = module.newRuntime({
      memoryLimitBytes,
      maxStackSizeBytes: stackBytes,
      interruptHandler: () => {
        if (Date.now() > this.deadline) {
          this.interrupted = true;
          return true;
        }
        return false;
      },
    });
  }

  release(): void {
    this.contexts -= 1;
    if (this.contexts <= 0 && this.retired && !this.fatal) this.runtime.dispose();
  }
}

/** Environments per shared runtime: bounds each runtime's garbage-collection work. */
const ENVS_PER_RUNTIME = 64;

/** A QuickJS context with the harness loaded, in a runtime of its own or shared. */
class GuestVm {
  readonly ctx: QuickJSContext;
  private readonly harness: QuickJSHandle;
  private readonly fns = new Map<string, QuickJSHandle>();
  disposed = false;

  constructor(
    private readonly slot: RuntimeSlot,
    private readonly hooks: { onFatal(): void; onDispose(): void } = { onFatal: () => undefined, onDispose: () => undefined },
  ) {
    slot.contexts += 1;
    try {
      this.ctx = slot.runtime.newContext();
      slot.deadline = Date.now() + 5_000;
      const result = this.ctx.evalCode(HARNESS_SOURCE, 'envfleet-harness.js');
      if (result.error) {
        result.error.dispose();
        throw new SandboxError('SOURCE_LOAD_FAILED', 'the sandbox harness did not load (runtime out of memory?)');
      }
      this.harness = result.value;
    } catch (err) {
      this.disposed = true;
      slot.release();
      this.hooks.onDispose();
      throw err instanceof SandboxError ? err : new SandboxError('MEMORY_EXCEEDED', `cannot create a sandbox: ${String(err)}`);
    }
  }

  get interrupted(): boolean {
    return this.slot.interrupted;
  }

  arm(ms: number): void {
    this.slot.deadline = Date.now() + ms;
    this.slot.interrupted = false;
  }

  /** Evaluates code; returns its completion value or throws SandboxError with `code`. */
  eval(source: string, code: SandboxErrorCode): QuickJSHandle {
    let result;
    try {
      result = this.ctx.evalCode(source, 'environment.js');
    } catch (err) {
      throw this.hostFailure(err);
    }
    if (result.error) throw this.guestError(result.error, code);
    return result.value;
  }

  /** Calls a harness function with handles or strings; returns its parsed reply. Throws SandboxError. */
  callHarness(name: string, args: readonly (QuickJSHandle | string)[]): Reply {
    let fn = this.fns.get(name);
    if (!fn) {
      fn = this.ctx.getProp(this.harness, name);
      this.fns.set(name, fn);
    }
    const owned: QuickJSHandle[] = [];
    const handles = args.map(a => {
      if (typeof a !== 'string') return a;
      const h = this.ctx.newString(a);
      owned.push(h);
      return h;
    });
    let result;
    try {
      result = this.ctx.callFunction(fn, this.ctx.undefined, ...handles);
    } catch (err) {
      throw this.hostFailure(err);
    } finally {
      for (const h of owned) h.dispose();
    }
    if (result.error) throw this.guestError(result.error, 'TOOL_THREW');
    const text = this.ctx.getString(result.value);
    result.value.dispose();
    return JSON.parse(text) as Reply;
  }

  /** Like callHarness but returns the raw reply text (to measure and cap it before parsing). */
  callHarnessText(name: string, a: string, b: string): string {
    let fn = this.fns.get(name);
    if (!fn) {
      fn = this.ctx.getProp(this.harness, name);
      this.fns.set(name, fn);
    }
    const ha = this.ctx.newString(a);
    const hb = this.ctx.newString(b);
    let result;
    try {
      result = this.ctx.callFunction(fn, this.ctx.undefined, ha, hb);
    } catch (err) {
      throw this.hostFailure(err);
    } finally {
      ha.dispose();
      hb.dispose();
    }
    if (result.error) throw this.guestError(result.error, 'TOOL_THREW');
    const text = this.ctx.getString(result.value);
    result.value.dispose();
    return text;
  }

  /**
   * The WebAssembly code itself failed (the host stack overflowed under deep guest recursion, or
   * the module trapped). The module may be inconsistent: the host is marked broken so new
   * environments go to a fresh module, and this runtime is abandoned rather than freed.
   */
  private hostFailure(err: unknown): SandboxError {
    this.slot.fatal = true;
    this.hooks.onFatal();
    const message = String(err);
    if (/call stack/i.test(message)) return new SandboxError('STACK_OVERFLOW', `the call recursed too deeply (${message})`);
    return new SandboxError('MEMORY_EXCEEDED', `the runtime failed: ${message}`);
  }

  expectOk(reply: Reply, message?: string): void {
    if ('err' in reply) throw new SandboxError(reply.err, message ? `${message}: ${reply.message}` : reply.message);
  }

  private guestError(handle: QuickJSHandle, code: SandboxErrorCode): SandboxError {
    let message = 'unknown error';
    try {
      const dumped: unknown = this.ctx.dump(handle);
      if (dumped && typeof dumped === 'object' && 'message' in dumped) {
        const name = 'name' in dumped && typeof dumped.name === 'string' ? dumped.name : 'Error';
        message = `${name}: ${String(dumped.message)}`;
      } else {
        message = String(dumped);
      }
    } catch {
      // the runtime may be out of memory: keep the generic message
    } finally {
      handle.dispose();
    }
    if (this.interrupted) return new SandboxError('DEADLINE_EXCEEDED', 'interrupted at the deadline');
    if (/out of memory/i.test(message)) return new SandboxError('MEMORY_EXCEEDED', message);
    if (/stack overflow|call stack/i.test(message)) return new SandboxError('STACK_OVERFLOW', message);
    return new SandboxError(code, message);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.hooks.onDispose();
    if (this.slot.fatal) return;
    try {
      for (const fn of this.fns.values()) fn.dispose();
      this.harness.dispose();
      this.ctx.dispose();
      this.slot.release();
    } catch {
      // a runtime that failed inside may refuse to free cleanly; its memory goes with the module
    }
  }
}

/**
 * A live environment: one instance of the environment class in its own QuickJS runtime. Not
 * thread-safe and synchronous: a call runs to completion (or to its deadline) before it returns.
 */
export class SandboxEnvironment {
  constructor(
    private readonly vm: GuestVm,
    private readonly validators: ReadonlyMap<string, ValidateFunction>,
    private readonly limits: SandboxLimits,
  ) {}

  get disposed(): boolean {
    return this.vm.disposed;
  }

  get toolNames(): string[] {
    return [...this.validators.keys()];
  }

  call(tool: string, args: unknown): CallOutcome {
    const started = performance.now();
    const stop = (code: SandboxErrorCode, message: string): CallOutcome => {
      if (FATAL_CODES.has(code)) this.vm.dispose();
      return { result: { success: false, error: message }, runtimeError: code, us: (performance.now() - started) * 1000 };
    };
    if (this.vm.disposed) return stop('ENV_DISPOSED', SANDBOX_ERROR_CODES.ENV_DISPOSED);
    const validate = this.validators.get(tool);
    if (!validate) return stop('UNKNOWN_TOOL', `unknown tool "${tool}"; the tools are: ${this.toolNames.join(', ')}`);
    const input = args ?? {};
    if (typeof input !== 'object' || Array.isArray(input)) {
      return stop('INVALID_ARGUMENTS', `invalid arguments for ${tool}: expected an object of named arguments`);
    }
    if (!validate(input)) return stop('INVALID_ARGUMENTS', `invalid arguments for ${tool}:\n${describeAjvErrors(validate.errors)}`);
    this.vm.arm(this.limits.callDeadlineMs);
    let text: string;
    try {
      text = this.vm.callHarnessText('call', tool, JSON.stringify(input));
    } catch (err) {
      const e = err instanceof SandboxError ? err : new SandboxError('TOOL_THREW', String(err));
      return stop(e.code, e.message);
    }
    if (text.length > this.limits.maxResultBytes) {
      return stop('RESULT_TOO_LARGE', `the result of ${tool} is ${text.length} bytes; the cap is ${this.limits.maxResultBytes}`);
    }
    const reply = JSON.parse(text) as Reply;
    if ('err' in reply) return stop(reply.err, reply.message);
    return { result: reply.ok, us: (performance.now() - started) * 1000 };
  }

  /** The state as JSON text. Throws SandboxError (STATE_TOO_LARGE, STATE_INVALID, ENV_DISPOSED). */
  snapshotText(): string {
    if (this.vm.disposed) throw new SandboxError('ENV_DISPOSED', SANDBOX_ERROR_CODES.ENV_DISPOSED);
    this.vm.arm(this.limits.callDeadlineMs);
    const text = this.vm.callHarnessText('snapshot', '', '');
    if (text.length > this.limits.maxStateBytes + 7) {
      throw new SandboxError('STATE_TOO_LARGE', `the state is ${text.length - 7} bytes; the cap is ${this.limits.maxStateBytes}`);
    }
    if (text.startsWith('{"err"')) {
      const reply = JSON.parse(text) as { err: SandboxErrorCode; message: string };
      if (FATAL_CODES.has(reply.err)) this.vm.dispose();
      throw new SandboxError(reply.err, reply.message);
    }
    // '{"ok":' + state + '}'
    return text.slice(6, -1);
  }

  snapshot(): unknown {
    return JSON.parse(this.snapshotText());
  }

  dispose(): void {
    this.vm.dispose();
  }
}
