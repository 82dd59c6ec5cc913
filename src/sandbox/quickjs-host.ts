import * as releaseSync from '@jitl/quickjs-wasmfile-release-sync';
import {
  QuickJSWASMModule,
  type EmscriptenModuleLoader,
  type QuickJSContext,
  type QuickJSEmscriptenModule,
  type QuickJSFFI,
  type QuickJSHandle,
  type QuickJSRuntime,
  type QuickJSSyncVariant,
} from 'quickjs-emscripten-core';
import type { ValidateFunction } from 'ajv';
import { compileJsonSchema, describeAjvErrors } from '../util/json-schema.js';
import { cutText } from '../util/text.js';
import type { CheckSpec, EnvironmentCode } from './bundle.js';
import { disposedAfter, FATAL_CODES, SANDBOX_ERROR_CODES, SandboxError, type SandboxErrorCode } from './errors.js';
import { bjsonToJson, OVER_CAP } from './bjson.js';
import { CheckMemo } from './check-memo.js';
import { checkStateTexts } from './state-text.js';
import { finalStatePatch, InitialIndex } from './json-patch.js';
import { HARNESS_SOURCE, JS_DEPTH_ADVICE } from './harness.js';
import { deeperThan, MAX_JSON_DEPTH, RESULT_CAP_ADVICE, RESULT_CAP_SETTING, STATE_CAP_ADVICE } from './python/python-harness.mjs';
import { DEFAULT_SANDBOX_LIMITS, sessionCpuMsOf, type SandboxLimits } from './limits.js';
import { quickjsBuild, Wasm, WASM_MAX_PAGES, WASM_PAGE, type QuickJSBuild, type WasmInstance, type WasmMemory, type WasmModule } from './quickjs-build.js';
import { watchArmed } from './watchdog.js';

const MiB = 1 << 20;
/**
 * The runtime's stack limit while QuickJS's native encoder writes a state or a result (GuestVm.encodePlain): it stops
 * the encoder at about 2,500 levels of containers (measured: 2,000 are written, 3,000 are not), well before its frames
 * fill a 1 MB thread stack (6,000 levels), and past MAX_JSON_DEPTH (1,000), the deepest value that is passed on.
 */
const ENCODER_STACK_BYTES = 64 * 1024;
/** What the error past the state cap adds for a JavaScript initial state (the scenario's own, before the constructor): the setting, and what to do. */
const JS_INITIAL_STATE_CAP_ADVICE = ' (ENVFLEET_SANDBOX_MAX_STATE_KB): give the scenario a smaller initial state, or raise ENVFLEET_SANDBOX_MAX_STATE_KB (a run uses the value it was submitted with)';
/**
 * A module's memory grows to what its allocator asked for, rounded up to this (Emscripten's own
 * policy would add 20 %): what a module is charged then stays within 1 MiB of what it holds.
 * Growing a WebAssembly memory does not copy it, so small steps cost little.
 */
const GROWTH_STEP = 256 * 1024;
/** Idle modules a thread keeps for its next environments: instantiating one costs 2–3 ms. */
const IDLE_MODULES = 8;
/** A module whose heap grew more than this is not reused: a heap never shrinks, dropping it returns the memory. */
const REUSE_GROWTH = 4 * MiB;
/**
 * Initial states up to this many characters get a second parse in their check template, the base of the
 * final state's patch; a larger one would push the template past REUSE_GROWTH, so it is parsed whole per batch.
 */
const PATCH_BASE_MAX_CHARS = 256 * 1024;
/** Session templates a thread keeps: memory copies of environments just created (see createEnvironmentFromText). */
const SESSION_TEMPLATES = 8;
/** Environments (by seed) a thread remembers having created, to copy the second creation of one. */
const SEEN_ENVIRONMENTS = 256;
/**
 * Modules a thread keeps for its next sessions. Sessions end and start in bursts (a pool thread
 * serves hundreds at once), and a burst of starts that finds no spare module instantiates fresh ones
 * (about 2 ms each, and the dropped ones are garbage its isolate must collect: with 500 sessions a
 * thread and room for 128 spares, the pool threads spent more time in GC and instantiation than in
 * the sessions). So a thread keeps as many spares as it had sessions at once lately (the larger
 * peak of the current and the previous SPARE_WINDOW_MS), at least SPARE_MODULES_MIN; spare modules
 * count against the thread's bound and are the first dropped when it needs room, and those above
 * the recent peak are dropped within two windows of quiet.
 */
const SPARE_MODULES_MIN = 128;
const SPARE_WINDOW_MS = 30_000;
/**
 * A result or a state is written up to this many times its cap (natively or by the guest), so that one somewhat over the
 * cap is said with its size; past that, the writing stops and the error says "more than" this many times the cap.
 */
const OVER_CAP_SAID = 2;
/**
 * The harness's error replies for a result's or a state's JSON text past OVER_CAP_SAID times its cap, found before it was
 * written to its end (harness.ts `caps`, which gives these same replies, or bjson.ts's OVER_CAP); the host words the
 * message (SandboxEnvironment).
 */
const RESULT_OVER_CAP = '!{"err":"RESULT_TOO_LARGE","message":""}';
const STATE_OVER_CAP = '!{"err":"STATE_TOO_LARGE","message":""}';
/** The harness functions a session uses, looked up before its module's memory is copied. */
const SESSION_FNS = ['seed', 'bind', 'create', 'caps', 'call', 'callValue', 'encodeOf', 'snapshot', 'state', 'snapshotOf'] as const;

/** The release variant, whether the loader hands us its ESM default or the CommonJS namespace. */
const RELEASE_VARIANT: QuickJSSyncVariant = (() => {
  const exported = (releaseSync as unknown as { default: QuickJSSyncVariant | { default: QuickJSSyncVariant } }).default;
  return 'default' in exported ? exported.default : exported;
})();

interface QuickJSLoader {
  /** Emscripten's module factory (the JavaScript glue). */
  readonly load: EmscriptenModuleLoader<QuickJSEmscriptenModule>;
  readonly FFI: new (module: QuickJSEmscriptenModule) => QuickJSFFI;
}
let loader: Promise<QuickJSLoader> | null = null;
/**
 * The glue and the FFI of the variant, imported once per thread. (newQuickJSWASMModuleFromVariant
 * imports them again for every module, three dynamic imports that cost more than the instantiation.)
 */
function quickjsLoader(): Promise<QuickJSLoader> {
  loader ??= Promise.all([RELEASE_VARIANT.importModuleLoader(), RELEASE_VARIANT.importFFI()]).then(([imported, FFI]) => {
    let load: unknown = imported;
    while (typeof load === 'object' && load !== null && 'default' in load) load = load.default;
    if (typeof load !== 'function') throw new Error('the QuickJS variant has no module loader');
    return { load: load as EmscriptenModuleLoader<QuickJSEmscriptenModule>, FFI };
  });
  return loader;
}

const utf8 = new TextEncoder();
/** Strings at least this long are written into a module natively; shorter ones cost about the same either way. */
const NATIVE_UTF8_FROM = 64;
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/**
 * Every string handed to a module (states, arguments, sources) is written into its memory as UTF-8
 * by the Emscripten glue, a JavaScript loop over its code points: about 0.3 ms for a 65 KB state,
 * three times an episode. For well-formed strings (all JSON.stringify writes), the byte count and
 * the bytes come from Node's encoder instead; they are the same bytes. A string with a lone
 * surrogate, which the glue and TextEncoder encode differently, still goes through the glue.
 */
function useNativeUtf8(raw: QuickJSEmscriptenModule, memory: WasmMemory): void {
  const glueLength = raw.lengthBytesUTF8.bind(raw);
  const glueWrite = raw.stringToUTF8.bind(raw);
  raw.lengthBytesUTF8 = s => (s.length >= NATIVE_UTF8_FROM && isWellFormed(s) ? Buffer.byteLength(s, 'utf8') : glueLength(s));
  raw.stringToUTF8 = (s, ptr, maxBytes) => {
    if (s.length < NATIVE_UTF8_FROM || maxBytes === undefined || !isWellFormed(s)) {
      glueWrite(s, ptr, maxBytes);
      return;
    }
    if (maxBytes <= 0) return;
    const heap = new Uint8Array(memory.buffer);
    const { written } = utf8.encodeInto(s, heap.subarray(ptr, ptr + maxBytes - 1));
    heap[ptr + written] = 0;
  };
}

/** What one tool call produced. `result` is what the method returned, or `{success:false, error}`. */
export interface CallOutcome {
  readonly result: unknown;
  /**
   * The result's JSON text as the runtime wrote it, when it is not what JSON.stringify(result) writes again: a Python
   * result's (integers past 2^53 exact, 1.0 and -0.0 as written, keys in canonical order). What the model is shown.
   */
  readonly resultJson?: string;
  readonly runtimeError?: SandboxErrorCode;
  /**
   * With runtimeError ENV_DISPOSED: the environment was lost with its Python interpreter, which another environment
   * took down (a fatal error, a call past its deadline that ignored the interrupt): not this environment's doing.
   * Absent where ENV_DISPOSED follows the environment's own limit.
   */
  readonly lostWith?: 'interpreter';
  /** Wall time inside the runtime, microseconds. */
  readonly us: number;
}

/**
 * CallOutcome with the result as JSON text (SandboxEnvironment.callText): what a session sends
 * to its host thread, where it is parsed once (runner.ts) instead of being parsed here and then
 * copied across as an object graph.
 */
export interface CallTextOutcome {
  readonly resultJson: string;
  readonly runtimeError?: SandboxErrorCode;
  readonly us: number;
}

export interface CheckOutcome {
  readonly item: string;
  readonly passed: boolean;
  readonly error?: string;
  readonly errorCode?: SandboxErrorCode;
  /** ENV_DISPOSED only: the check could not run, its Python interpreter taken down by another environment. */
  readonly lostWith?: 'interpreter';
}

type Reply = { ok: unknown } | { err: SandboxErrorCode; message: string };

/** Check templates a thread keeps: the initial states of the scenarios whose episodes it scored last. */
const CHECK_TEMPLATES = 4;

/** A module whose runtime and context parsed an initial state for checks, and a copy of its memory then. */
interface CheckTemplate {
  readonly initialJson: string;
  readonly stackBytes: number;
  readonly envMemoryMb: number;
  readonly vm: GuestVm;
  readonly image: MemoryImage;
  /** A batch is using it. */
  busy: boolean;
  /** Used since the copy: written back before the next batch. */
  dirty: boolean;
  /** It holds a second parse of the initial state, the base a batch's final state is patched on (json-patch.ts). */
  readonly patches: boolean;
  /** The initial text's members that the patches of its batches looked into (json-patch.ts), made by the first one. */
  index?: InitialIndex;
}

/**
 * A memory copy of a module in which an environment was just created (source evaluated, class
 * instantiated on the initial state): the next sessions of the same environment and state start
 * from it instead of running the source and the constructor again.
 */
interface SessionTemplate {
  readonly className: string;
  readonly source: string;
  readonly stateJson: string;
  readonly envMemoryMb: number;
  /** The caps the harness was given (`caps`): a template's memory holds them. */
  readonly maxResultBytes: number;
  readonly maxStateBytes: number;
  readonly image: MemoryImage;
}

/**
 * The first module a thread opened for a session, copied once its runtime, context and harness were
 * made: every module opened first thing the same way has the same layout (the same addresses for
 * the runtime, the context and the harness functions, which is what `layout` records), so a copy
 * taken in one is a working state of any other.
 */
interface SessionBase {
  readonly stackBytes: number;
  readonly layout: string;
  readonly image: MemoryImage;
}

/** A module's statics and heap at one moment (GuestModule.capture). */
interface MemoryImage {
  readonly statics: Uint8Array;
  readonly heap: Uint8Array;
  /** The memory's size then. */
  readonly length: number;
}

/** The thread's transient memory copy (GuestModule.captureTransient), and the size past which it is not kept. */
let transientImage: { statics: Uint8Array; heap: Uint8Array } | null = null;
const TRANSIENT_IMAGE_KEPT = 16 << 20;

/** Why a module refused to grow: its tenant's own allowance, or the thread's bound. */
/**
 * Why a module's growth was refused: its tenant's allowance; the thread's bound, full of the other modules' memory
 * ('thread': SANDBOX_MEMORY_FULL, the work of others, which the job waits out); or the thread's whole bound, which the
 * module alone would pass ('bound': an allowance larger than the thread's bound, ENVFLEET_SANDBOX_ENV_MEMORY_MB above
 * ENVFLEET_SANDBOX_HEAP_MB, lets one environment hoard the thread by itself: MEMORY_EXCEEDED, the environment's own doing).
 */
type Exhaustion = 'allowance' | 'thread' | 'bound';

const roundUp = (n: number, step: number) => Math.ceil(n / step) * step;
const mb = (bytes: number) => `${Math.round((bytes / MiB) * 10) / 10} MiB`;

/**
 * One instance of the QuickJS WebAssembly module: a heap of its own, serving one environment (or
 * the checks of one task) at a time. Its memory grows only when Emscripten's allocator calls the
 * resize import, which is wrapped here: a growth that its tenant's allowance or the thread's bound
 * cannot cover is refused, so malloc fails inside that tenant and nowhere else. The module then
 * remembers the failure (`exhausted`): the interrupt handler stops the guest at its next check and
 * the call ends with MEMORY_EXCEEDED, even when the guest code caught its out-of-memory error.
 */
class GuestModule {
  private qjs: QuickJSWASMModule | null = null;
  private raw: QuickJSEmscriptenModule | null = null;
  private scratch: MemoryImage | null = null;
  private readonly memory: WasmMemory;
  /** Heap bytes the current tenant may hold. */
  private allowance = 0;
  /** Set once an allocation failed for lack of room; cleared for each new tenant. */
  exhausted: Exhaustion | null = null;
  /** The WebAssembly code failed inside this module (a trap, the host stack): never reused, never freed. */
  fatal = false;
  /** The heap size the allocator asked for, while a resize is under way. */
  private need = 0;
  private refusal: Exhaustion | null = null;
  /**
   * While set (GuestVm.encodePlain, the host's encoder of a result or state): a refused growth is
   * the encoder's, not the tenant's, and calls this instead of marking the module exhausted (the
   * encoder frees what it held and nothing of the guest's is lost). It must not throw.
   */
  onRefusal: (() => void) | null = null;
  /** While non-zero (with onRefusal): the memory size past which a growth is refused even within the allowance. */
  ceiling = 0;

  constructor(
    private readonly build: QuickJSBuild,
    /** Free bytes under the thread's bound once `wanted` are asked for (idle modules may be dropped to make them). */
    private readonly room: (wanted: number) => number,
    /** The thread's bound (ENVFLEET_SANDBOX_HEAP_MB): a growth that would pass it even alone is the module's own doing. */
    private readonly boundBytes: number,
  ) {
    this.memory = new Wasm.Memory({ initial: build.initialPages, maximum: WASM_MAX_PAGES });
    const grow = this.memory.grow.bind(this.memory);
    Object.defineProperty(this.memory, 'grow', { value: (delta: number) => this.grow(grow, delta) });
  }

  async instantiate(): Promise<void> {
    const { load, FFI } = await quickjsLoader();
    const raw = await load({
      wasmMemory: this.memory,
      // Instantiates the thread's compiled build synchronously against this module's memory,
      // after wrapping the import through which the allocator asks for more heap.
      instantiateWasm: ((imports: Record<string, Record<string, unknown>>, receive: (instance: WasmInstance, module: WasmModule) => void) => {
        let wrapped = 0;
        for (const names of Object.values(imports)) {
          for (const [name, value] of Object.entries(names)) {
            // emscripten_resize_heap is the one import that grows the memory (its name is minified).
            if (typeof value === 'function' && Function.prototype.toString.call(value).includes('.grow(')) {
              names[name] = this.resizeHeap(value as (requested: number) => unknown);
              wrapped += 1;
            }
          }
        }
        if (wrapped !== 1) {
          throw new Error(`the QuickJS build has ${wrapped} heap-resize imports where one was expected; the sandbox's memory guard depends on it`);
        }
        const instance = new Wasm.Instance(this.build.module, imports);
        receive(instance, this.build.module);
        return instance.exports;
      }) as never,
    });
    raw.type = 'sync';
    useNativeUtf8(raw, this.memory);
    this.raw = raw;
    this.qjs = new QuickJSWASMModule(raw, new FFI(raw));
  }

  /** Hands the module to a new tenant with its allowance (heap bytes). */
  lease(allowanceBytes: number): void {
    this.allowance = allowanceBytes;
    this.exhausted = null;
  }

  get allowanceBytes(): number {
    return this.allowance;
  }

  newRuntime(stackBytes: number, interruptHandler: () => boolean): QuickJSRuntime {
    if (!this.qjs) throw new Error('module not instantiated');
    // No QuickJS memory limit: in this build it counts 8 bytes per allocation (Emscripten has no
    // malloc_usable_size) and its refusals would bypass the accounting here.
    return this.qjs.newRuntime({ maxStackSizeBytes: stackBytes, interruptHandler });
  }

  /**
   * A copy of the module's state, taken while no call runs: the statics and the heap (see
   * QuickJSBuild.staticEnd). Null when the build's layout is not known well enough to restore one.
   */
  capture(): MemoryImage | null {
    const { staticEnd, heapBase } = this.build;
    if (staticEnd <= 0 || heapBase < staticEnd) return null;
    const bytes = new Uint8Array(this.memory.buffer);
    return { statics: bytes.slice(0, staticEnd), heap: bytes.slice(heapBase), length: bytes.length };
  }

  /**
   * capture() into this module's scratch copy, reused while the memory keeps its size: for a copy
   * that lives only until the next one (a check batch's). Allocating a fresh 2 MB copy per batch cost
   * more than writing it (new pages, and the collector's pressure from external memory).
   */
  captureScratch(): MemoryImage | null {
    const { staticEnd, heapBase } = this.build;
    const scratch = this.scratch;
    if (!scratch || scratch.length !== this.memory.buffer.byteLength) return (this.scratch = this.capture());
    const bytes = new Uint8Array(this.memory.buffer);
    scratch.statics.set(bytes.subarray(0, staticEnd));
    scratch.heap.set(bytes.subarray(heapBase));
    return scratch;
  }

  /**
   * capture() into the thread's transient copy (`transientImage`), which the next call of this in
   * any module writes over: for a copy used and dropped within one synchronous step (a snapshot's,
   * GuestVm.snapshotText). Its buffers grow as needed and are not kept past TRANSIENT_IMAGE_KEPT.
   */
  captureTransient(): MemoryImage | null {
    const { staticEnd, heapBase } = this.build;
    if (staticEnd <= 0 || heapBase < staticEnd) return null;
    const bytes = new Uint8Array(this.memory.buffer);
    const heapBytes = bytes.length - heapBase;
    if (!transientImage || transientImage.statics.length < staticEnd || transientImage.heap.length < heapBytes) {
      transientImage = { statics: new Uint8Array(staticEnd), heap: new Uint8Array(heapBytes) };
    }
    const statics = transientImage.statics.subarray(0, staticEnd);
    const heap = transientImage.heap.subarray(0, heapBytes);
    statics.set(bytes.subarray(0, staticEnd));
    heap.set(bytes.subarray(heapBase));
    if (heapBytes > TRANSIENT_IMAGE_KEPT) transientImage = null; // this copy is still the caller's; the next is made afresh
    return { statics, heap, length: bytes.length };
  }

  /**
   * Puts the module back as it was when `image` was taken, while no call runs: every allocation
   * and every write since then is gone, in QuickJS and in the allocator alike. Memory grown since
   * is zeroed (the allocator takes it for fresh memory); it stays charged until the module is dropped.
   */
  restore(image: MemoryImage): void {
    const bytes = new Uint8Array(this.memory.buffer);
    bytes.set(image.statics, 0);
    bytes.set(image.heap, this.build.heapBase);
    if (bytes.length > image.length) bytes.fill(0, image.length);
  }

  /**
   * restore() for an image taken in another module of the same layout (see SessionBase), which may
   * have had more memory: the memory is first grown the way the allocator grows it (through its
   * resize import, so the allowance and the thread's bound apply and the glue's views follow), and
   * the copy then replaces the allocator's state along with the rest. Throws SandboxError when the
   * growth is refused (the module is exhausted then).
   */
  adopt(image: MemoryImage): void {
    if (!this.raw) throw new Error('module not instantiated');
    for (let have = this.memory.buffer.byteLength; have < image.length; have = this.memory.buffer.byteLength) {
      if (this.raw._malloc(image.length - have) === 0) {
        throw this.exhausted === 'thread'
          ? new SandboxError('SANDBOX_MEMORY_FULL', 'no room to start the environment: its sandbox thread has reached its bound (ENVFLEET_SANDBOX_HEAP_MB)')
          : this.exhausted === 'bound'
            ? this.pastBound()
            : new SandboxError('MEMORY_EXCEEDED', `the environment needs more than its memory allowance (${mb(this.allowance)}, ENVFLEET_SANDBOX_ENV_MEMORY_MB)`);
      }
    }
    this.restore(image);
  }

  /** MEMORY_EXCEEDED for an environment that needs more than its thread's whole bound, which no wait can give it. */
  pastBound(): SandboxError {
    return new SandboxError(
      'MEMORY_EXCEEDED',
      `the environment needs more memory than its sandbox thread's whole bound (${mb(this.boundBytes)}, ENVFLEET_SANDBOX_HEAP_MB) holds, even alone in it: its allowance (${mb(this.allowance)}, ENVFLEET_SANDBOX_ENV_MEMORY_MB) is larger than that bound; keep ENVFLEET_SANDBOX_ENV_MEMORY_MB well below ENVFLEET_SANDBOX_HEAP_MB`,
    );
  }

  /**
   * Whether the heap may still grow, within the tenant's allowance, by `factor` times all it has
   * grown to (the high-water mark of everything it held, the runtime's own part included), or times
   * `atLeast` bytes where that is more.
   */
  roomToGrow(factor: number, atLeast = 0): boolean {
    const size = this.memory.buffer.byteLength;
    const top = Math.floor((this.build.heapBase + this.allowance) / WASM_PAGE) * WASM_PAGE;
    return top - size >= factor * Math.max(size - this.build.heapBase, atLeast);
  }

  /** Bytes charged to the thread's bound: the whole memory but the stack area no guest reaches. */
  charge(): number {
    return this.memory.buffer.byteLength - this.build.unreachableBytes;
  }

  /** Bytes of the whole memory. */
  size(): number {
    return this.memory.buffer.byteLength;
  }

  /** Bytes the heap has grown since the module was made. */
  grownBytes(): number {
    return this.memory.buffer.byteLength - this.build.initialPages * WASM_PAGE;
  }

  private resizeHeap(resize: (requested: number) => unknown): (requested: number) => unknown {
    return (requested: number) => {
      this.need = requested >>> 0;
      this.refusal = null;
      try {
        const grown = resize(requested);
        // Emscripten tried every size it would accept and each was refused: malloc fails now.
        if (!grown) {
          if (this.onRefusal) this.onRefusal();
          else this.exhausted ??= this.refusal ?? 'allowance';
        }
        return grown;
      } finally {
        this.need = 0;
      }
    };
  }

  /** WebAssembly.Memory#grow as the allocator sees it: within the allowance and the thread's bound, or not at all. */
  private grow(grow: (delta: number) => number, delta: number): number {
    const old = this.memory.buffer.byteLength;
    const asked = old + delta * WASM_PAGE;
    const need = roundUp(this.need > 0 ? this.need : asked, WASM_PAGE);
    const top = Math.floor((this.build.heapBase + this.allowance) / WASM_PAGE) * WASM_PAGE;
    if (need > top || (this.ceiling > 0 && need > this.ceiling)) {
      this.refusal = 'allowance';
      throw new RangeError('envfleet: the environment’s memory allowance is used up');
    }
    // Emscripten asks for 20 % more than it needs; grant what is needed, to the next step.
    let target = Math.min(roundUp(need, GROWTH_STEP), top);
    if (this.room(target - old) < target - old) {
      target = need;
      if (this.room(target - old) < target - old) {
        // Full of the other modules' memory, or too much for the whole thread even if this module were alone in it.
        this.refusal = need - this.build.unreachableBytes > this.boundBytes ? 'bound' : 'thread';
        throw new RangeError('envfleet: the sandbox thread’s memory bound is reached');
      }
    }
    // The glue rebuilds its views from the memory's buffer, so a smaller growth than it asked is safe.
    return grow((target - old) / WASM_PAGE);
  }
}

/**
 * The sandbox of one thread: environments and check functions, each in a QuickJS WebAssembly module
 * of its own, whose heap is capped at the environment's allowance (ENVFLEET_SANDBOX_ENV_MEMORY_MB);
 * the sum over the thread's modules is bounded by `heapMb` (ENVFLEET_SANDBOX_HEAP_MB). A module
 * whose tenant left cleanly and whose heap stayed small is kept for the next one; any other is
 * dropped, which gives its memory back (a WebAssembly heap never shrinks, but a dropped one is freed).
 */
export class QuickJSHost {
  /** Every module of this thread, leased or idle: what the bound counts. */
  private readonly modules = new Set<GuestModule>();
  private readonly idle: GuestModule[] = [];
  private readonly validators = new Map<string, Map<string, ValidateFunction>>();
  /** Checks may share a parse through memory copies (cleared by warm() if the copies do not isolate). */
  private copies = true;
  /** Check templates, least recently used first (see checkTemplate). */
  private readonly templates: CheckTemplate[] = [];
  /** Outcomes of the check batches this thread ran, for the episodes that end in a state scored before (see CheckMemo). */
  readonly checkMemo = new CheckMemo();
  private templateUnderway = false;
  /** Sessions may start from memory copies (cleared by warm() if the copies do not isolate). */
  private sessionCopies = true;
  private sessionBase: SessionBase | null = null;
  /** Session templates, least recently used first. */
  private readonly sessionTemplates: SessionTemplate[] = [];
  /** Seeds of environments created here, oldest first (a template is made on the second creation). */
  private readonly seen = new Set<string>();
  /** Modules on the session layout whose session ended, their runtime kept for the next one. */
  private readonly spare: GuestVm[] = [];
  private readonly boundBytes: number;
  private live = 0;
  /** The most sessions live at once in the current and the previous window (see SPARE_MODULES_MIN). */
  private peakNow = 0;
  private peakBefore = 0;
  private peakWindowStart: number;
  private readonly now: () => number;

  /** `now`: the clock of the spare modules' windows (tests pass their own). */
  constructor(heapMb: number, options: { readonly now?: () => number } = {}) {
    this.boundBytes = heapMb * MiB;
    // A monotonic clock: a wall-clock step must not keep or drop a window's spares.
    this.now = options.now ?? (() => performance.now());
    this.peakWindowStart = this.now();
    // Returns the spares of a past burst once the thread has been quieter for two windows. The timer
    // holds the host weakly: a host nobody holds any more (tests make many) is collected with its modules.
    const host = new WeakRef(this);
    const timer: NodeJS.Timeout = setInterval(() => {
      const h = host.deref();
      if (h) h.trimSpares();
      else clearInterval(timer);
    }, SPARE_WINDOW_MS).unref();
  }

  /** Spare modules held for the next sessions. */
  get spareModuleCount(): number {
    return this.spare.length;
  }

  /** How many spare modules the thread keeps now: as many as sessions were live at once lately. */
  private spareCap(): number {
    const now = this.now();
    if (now - this.peakWindowStart >= SPARE_WINDOW_MS) {
      // Two windows or more since the last one started: the previous window saw no session start.
      this.peakBefore = now - this.peakWindowStart >= 2 * SPARE_WINDOW_MS ? this.live : this.peakNow;
      this.peakNow = this.live;
      this.peakWindowStart = now;
    }
    return Math.max(SPARE_MODULES_MIN, this.peakNow, this.peakBefore);
  }

  /** Drops the spare modules above the cap, oldest first (every SPARE_WINDOW_MS, on a timer). */
  trimSpares(): void {
    const cap = this.spareCap();
    while (this.spare.length > cap) this.modules.delete(this.spare.shift()!.module);
  }

  /** Environments created here and not yet disposed. */
  get liveEnvironments(): number {
    return this.live;
  }

  /** Session templates held (memory copies of environments created here twice or more). */
  get sessionTemplateCount(): number {
    return this.sessionTemplates.length;
  }

  /** Modules held (leased or idle). */
  get moduleCount(): number {
    return this.modules.size;
  }

  /** WebAssembly memory charged to this thread, summed over its modules (bounded by heapMb). */
  heapBytes(): number {
    let sum = 0;
    for (const m of this.modules) sum += m.charge();
    return sum;
  }

  /**
   * Proves the sandbox works in this thread: compiles the build, instantiates a module, runs an
   * environment in it. A pool runs this on every thread at start-up and refuses to start if it fails.
   */
  async warm(): Promise<void> {
    const env = await this.createEnvironment(WARM_CODE, { warm: true }, DEFAULT_SANDBOX_LIMITS);
    try {
      const outcome = env.call('ping', {});
      if (outcome.runtimeError) throw new SandboxError(outcome.runtimeError, `the sandbox's self-test failed: ${JSON.stringify(outcome.result)}`);
    } finally {
      env.dispose();
    }
    // Sessions start from memory copies of an environment created before; should the copies not
    // isolate (a session seeing what the one before it did), every session here is created afresh.
    // Three sessions: created, created and copied, started from the copy; each sees the same
    // untouched environment and draws the same random numbers.
    let first: string | undefined;
    for (let i = 0; i < 3 && this.sessionCopies; i++) {
      const session = await this.createEnvironment(WARM_CODE, WARM_SESSION_STATE, DEFAULT_SANDBOX_LIMITS);
      try {
        const [clean, ...drawn] = session.call('untouched', {}).result as [boolean, number, number];
        session.call('change', {});
        first ??= JSON.stringify(drawn);
        if (clean !== true || JSON.stringify(drawn) !== first) this.sessionCopies = false;
      } finally {
        session.dispose();
      }
    }
    this.dropSessionTemplates();
    if (!this.sessionCopies) for (const vm of this.spare.splice(0)) vm.dispose();
    // Checks share a parse through memory copies; should a build's layout defeat the copies (a check
    // seeing what the one before it did), this thread gives every check a fresh runtime instead.
    const isolated = await this.runCheckBatch(WARM_CHECKS, '{"list":[3,1,2]}', '{"n":1}', DEFAULT_SANDBOX_LIMITS);
    if (!isolated.every(o => o.passed)) this.copies = false;
    for (const t of [...this.templates]) this.dropTemplate(t, this.copies);
  }

  /** Loads the source, instantiates the class on the initial state. Throws SandboxError. */
  async createEnvironment(code: EnvironmentCode, initialState: unknown, limits: SandboxLimits): Promise<SandboxEnvironment> {
    const stateJson = JSON.stringify(initialState);
    if (stateJson === undefined) throw new SandboxError('STATE_INVALID', 'the initial state is not JSON');
    return this.createEnvironmentFromText(code, stateJson, limits);
  }

  /** createEnvironment on the initial state's JSON text (as JSON.stringify wrote it). */
  async createEnvironmentFromText(code: EnvironmentCode, stateJson: string, limits: SandboxLimits): Promise<SandboxEnvironment> {
    const stateBytes = utf8Length(stateJson, limits.maxStateBytes);
    if (stateBytes > limits.maxStateBytes) {
      throw new SandboxError('STATE_TOO_LARGE', `the initial state is ${stateBytes} bytes; the cap is ${limits.maxStateBytes}${JS_INITIAL_STATE_CAP_ADVICE}`);
    }
    const validators = this.validatorsFor(code);
    const vm = (await this.sessionVm(limits)) ?? GuestVm.open(await this.acquire(limits), limits.stackBytes, module => this.release(module));
    try {
      const template = vm.onLayout ? this.sessionTemplate(code, stateJson, limits) : undefined;
      if (template) {
        vm.module.adopt(template.image);
        vm.used = true;
      } else {
        if (vm.onLayout && vm.used) vm.module.restore(this.sessionBase!.image);
        vm.used = true;
        // (Once per scenario and thread where sessions start from a template: a scan of the text, not recursing.)
        if (deeperThan(stateJson, MAX_JSON_DEPTH)) throw new SandboxError('STATE_INVALID', `the initial state nests containers more than ${MAX_JSON_DEPTH} levels deep${JS_DEPTH_ADVICE}`);
        const seed = seedOf(code, stateJson);
        vm.arm(limits.createDeadlineMs, false, undefined, 'ENVFLEET_SANDBOX_CREATE_DEADLINE_MS');
        vm.expectOk(vm.callHarness('seed', [seed]));
        vm.expectOk(vm.callHarness('caps', [String(OVER_CAP_SAID * limits.maxResultBytes), String(OVER_CAP_SAID * limits.maxStateBytes)]));
        const cls = vm.eval(`${code.source}\n;(typeof ${code.className} === 'function' ? ${code.className} : undefined)`, 'SOURCE_LOAD_FAILED');
        try {
          vm.expectOk(vm.callHarness('bind', [cls]), `the source does not declare class ${code.className}`);
        } finally {
          cls.dispose();
        }
        vm.expectOk(vm.callHarness('create', [stateJson]));
        if (vm.onLayout) this.keepTemplate(vm, seed, code, stateJson, limits);
      }
    } catch (err) {
      this.endSession(vm);
      throw err;
    }
    this.live += 1;
    if (this.live > this.peakNow) this.peakNow = this.live;
    return new SandboxEnvironment(
      vm,
      validators,
      limits,
      () => {
        this.live -= 1;
        this.endSession(vm);
      },
      plainSnapshots(code.source),
      this.copies,
      stateJson.length,
    );
  }

  /**
   * A module on the session layout for a new session: a spare one (its last session's memory still
   * in it: the caller writes a copy over it), or a fresh module opened first thing, whose layout is
   * then the thread's (the first one's memory becomes the base copy). Null when sessions cannot
   * start from copies here: the caller opens a module the plain way.
   */
  private async sessionVm(limits: SandboxLimits): Promise<GuestVm | null> {
    if (!this.sessionCopies || (this.sessionBase && this.sessionBase.stackBytes !== limits.stackBytes)) return null;
    const spare = this.spare.pop();
    if (spare) {
      spare.module.lease(limits.envMemoryMb * MiB);
      return spare;
    }
    const module = await this.acquire(limits, true);
    const vm = GuestVm.open(module, limits.stackBytes, m => this.release(m));
    vm.onLayout = true;
    try {
      vm.preload(...SESSION_FNS);
    } catch (err) {
      vm.dispose();
      throw err;
    }
    const layout = vm.layout();
    if (!this.sessionBase) {
      const image = module.capture();
      if (!image) {
        // The build's layout is not known well enough to copy memory: plain sessions from now on.
        this.sessionCopies = false;
        return vm.asPlain();
      }
      this.sessionBase = { stackBytes: limits.stackBytes, layout, image };
    }
    return layout === this.sessionBase.layout ? vm : vm.asPlain();
  }

  /** The template of this environment and state, if the thread has one (marked most recently used). */
  private sessionTemplate(code: EnvironmentCode, stateJson: string, limits: SandboxLimits): SessionTemplate | undefined {
    const i = this.sessionTemplates.findIndex(
      t => t.envMemoryMb === limits.envMemoryMb && t.maxResultBytes === limits.maxResultBytes && t.maxStateBytes === limits.maxStateBytes && t.stateJson.length === stateJson.length && t.className === code.className && t.stateJson === stateJson && t.source === code.source,
    );
    if (i < 0) return undefined;
    const found = this.sessionTemplates.splice(i, 1)[0]!;
    this.sessionTemplates.push(found);
    return found;
  }

  /** After a creation on the session layout: copies the module when this environment was created here before (a one-off costs no copy). */
  private keepTemplate(vm: GuestVm, seed: string, code: EnvironmentCode, stateJson: string, limits: SandboxLimits): void {
    const key = `${seed}:${stateJson.length}:${code.source.length}`;
    if (!this.seen.has(key)) {
      this.seen.add(key);
      if (this.seen.size > SEEN_ENVIRONMENTS) this.seen.delete(this.seen.values().next().value!);
      return;
    }
    // A copy of a module that is not reused (exhausted, broken, grown past the bound) would make every session of the scenario adopt it into a fresh one.
    if (vm.module.exhausted || vm.module.fatal || vm.module.grownBytes() > REUSE_GROWTH) return;
    const image = vm.module.capture();
    if (!image) return;
    this.sessionTemplates.push({ className: code.className, source: code.source, stateJson, envMemoryMb: limits.envMemoryMb, maxResultBytes: limits.maxResultBytes, maxStateBytes: limits.maxStateBytes, image });
    if (this.sessionTemplates.length > SESSION_TEMPLATES) this.sessionTemplates.shift();
  }

  private dropSessionTemplates(): void {
    this.sessionTemplates.length = 0;
    this.seen.clear();
  }

  /**
   * A session's module once it ended: kept with its runtime for the next session if it is on the
   * session layout, sound and small; dropped whole when there are spare modules enough (freeing its
   * runtime object by object would be wasted work); freed otherwise.
   */
  private endSession(vm: GuestVm): void {
    const { module } = vm;
    if (vm.onLayout && !vm.disposed && !module.fatal && !module.exhausted && module.grownBytes() <= REUSE_GROWTH) {
      if (this.spare.length < this.spareCap()) this.spare.push(vm);
      else this.modules.delete(module);
      return;
    }
    vm.dispose();
  }

  /**
   * Runs each check as check(finalState, initialState), isolated from the others; a failure counts as false. A state
   * JSON cannot write (nested deeper than V8's stack allows, a cycle, a BigInt, undefined) fails every check with
   * STATE_INVALID, as a state the guest cannot parse does.
   */
  async runChecks(checks: readonly CheckSpec[], finalState: unknown, initialState: unknown, limits: SandboxLimits): Promise<CheckOutcome[]> {
    const texts = checkStateTexts(checks, finalState, initialState);
    return 'failed' in texts ? texts.failed : this.runChecksOnText(checks, texts.finalJson, texts.initialJson, limits);
  }

  /**
   * runChecks on the states' JSON text. Each check runs in a sandbox of its own as far as it can
   * tell: one module, runtime and context parse both states once, the module's memory is copied
   * there, and before every check but the first it is written back, so a check starts from exactly
   * those bytes whatever the one before it did (sorted or changed the states, changed globals or
   * built-ins, ran out of time). The initial state is parsed once per thread rather than once per
   * batch: a module with it parsed is kept (a check template, copied the same way) for the next
   * batches on the same initial state, i.e. the next episodes of the scenario. A check that
   * exhausted the module, or broke it, is followed by a fresh one. Without a copy (a build whose
   * layout is not known), every check gets a fresh runtime.
   */
  async runChecksOnText(checks: readonly CheckSpec[], finalJson: string, initialJson: string, limits: SandboxLimits): Promise<CheckOutcome[]> {
    const key = this.checkMemo.keyOf(checks, limits);
    const known = key === undefined ? undefined : this.checkMemo.get(key, finalJson, initialJson);
    if (known) return known as CheckOutcome[];
    const out = await this.runCheckBatch(checks, finalJson, initialJson, limits);
    if (key !== undefined) this.checkMemo.set(key, finalJson, initialJson, out);
    return out;
  }

  /** runChecksOnText without the memo: every check run. */
  private async runCheckBatch(checks: readonly CheckSpec[], finalJson: string, initialJson: string, limits: SandboxLimits): Promise<CheckOutcome[]> {
    const out: CheckOutcome[] = [];
    let batch: CheckBatch | null = null;
    try {
      for (const [i, { item, check, episode }] of checks.entries()) {
        if (episode) {
          out.push({ item, passed: false, error: 'a JavaScript check cannot read the episode (episode: true is for Python checks)', errorCode: 'CHECK_INVALID' });
          continue;
        }
        try {
          batch ??= await this.openCheckBatch(finalJson, initialJson, limits);
          out.push({ item, ...batch.run(check, limits.checkDeadlineMs, i < checks.length - 1) });
        } catch (err) {
          const e = err instanceof SandboxError ? err : new SandboxError('CHECK_THREW', String(err));
          out.push({ item, passed: false, error: e.message, errorCode: e.code });
        } finally {
          if (batch && !batch.reusable()) {
            batch.dispose();
            batch = null;
          }
        }
      }
    } finally {
      batch?.dispose();
    }
    return out;
  }

  /** A module with a runtime, a context and both states parsed, and a copy of its memory at that point. Throws SandboxError. */
  private async openCheckBatch(finalJson: string, initialJson: string, limits: SandboxLimits): Promise<CheckBatch> {
    const template = this.copies ? await this.checkTemplate(initialJson, limits) : null;
    if (template) {
      const { vm } = template;
      try {
        if (template.dirty) vm.module.restore(template.image);
        template.dirty = true;
        vm.arm(limits.checkDeadlineMs, false, undefined, 'ENVFLEET_SANDBOX_CHECK_DEADLINE_MS');
        // Only the values the episode changed are parsed here; the rest is the template's second parse of the initial state.
        const patch = template.patches ? finalStatePatch(initialJson, finalJson, (template.index ??= new InitialIndex(template.initialJson))) : null;
        vm.expectOk(patch === null ? vm.callHarness('prepareFinal', [finalJson]) : vm.callHarness('prepareFinalPatch', [patch]));
      } catch (err) {
        this.leaveTemplate(template);
        throw err;
      }
      return new CheckBatch(vm, () => this.leaveTemplate(template), true);
    }
    const module = await this.acquire(limits);
    const vm = GuestVm.open(module, limits.stackBytes, () => this.release(module));
    try {
      vm.arm(limits.checkDeadlineMs, false, undefined, 'ENVFLEET_SANDBOX_CHECK_DEADLINE_MS');
      vm.expectOk(vm.callHarness('prepareFinal', [finalJson]));
      vm.expectOk(vm.callHarness('prepareInitial', [initialJson]));
      vm.preload('check');
    } catch (err) {
      vm.dispose();
      throw err;
    }
    return new CheckBatch(vm, () => vm.dispose(), this.copies);
  }

  /**
   * The thread's check template for this initial state (and stack and allowance), made if there is
   * none: a module with a runtime and context that parsed it, and a copy of its memory then; marked
   * busy for the caller's batch. Null when it cannot be made (the plain way then reports why) or one
   * is being made already.
   */
  private async checkTemplate(initialJson: string, limits: SandboxLimits): Promise<CheckTemplate | null> {
    const i = this.templates.findIndex(t => !t.busy && t.stackBytes === limits.stackBytes && t.envMemoryMb === limits.envMemoryMb && t.initialJson === initialJson);
    if (i >= 0) {
      const found = this.templates.splice(i, 1)[0]!;
      this.templates.push(found);
      found.busy = true;
      return found;
    }
    if (this.templateUnderway) return null;
    this.templateUnderway = true;
    const patches = initialJson.length <= PATCH_BASE_MAX_CHARS;
    try {
      const module = await this.acquire(limits);
      const vm = GuestVm.open(module, limits.stackBytes, () => this.release(module));
      let image: MemoryImage | null = null;
      try {
        vm.arm(limits.checkDeadlineMs, false, undefined, 'ENVFLEET_SANDBOX_CHECK_DEADLINE_MS');
        vm.expectOk(vm.callHarness('prepareInitial', [initialJson]));
        // The base a batch's final state is patched on: a second parse, for states small enough that the
        // template stays reusable with it (a larger one is parsed whole per batch, as before).
        if (patches) vm.expectOk(vm.callHarness('prepareBase', [initialJson]));
        vm.preload('prepareFinal', 'prepareFinalPatch', 'check');
        image = module.capture();
      } catch {
        image = null;
      }
      if (!image) {
        vm.dispose();
        return null;
      }
      const template: CheckTemplate = { initialJson, stackBytes: limits.stackBytes, envMemoryMb: limits.envMemoryMb, vm, image, busy: true, dirty: false, patches };
      this.templates.push(template);
      const spare = this.templates.length - CHECK_TEMPLATES;
      for (const old of this.templates.filter(t => !t.busy && t !== template).slice(0, Math.max(0, spare))) this.dropTemplate(old, true);
      return template;
    } catch {
      return null;
    } finally {
      this.templateUnderway = false;
    }
  }

  /** A batch is done with its template: kept for the next one unless the batch exhausted or broke its module, or grew it as a reused module may not. */
  private leaveTemplate(template: CheckTemplate): void {
    template.busy = false;
    const { module } = template.vm;
    if (module.exhausted || module.fatal || module.grownBytes() > REUSE_GROWTH) this.dropTemplate(template, true);
  }

  /** Drops a template: its runtime freed and its module handed back (`free`), or the module dropped whole (to make room). */
  private dropTemplate(template: CheckTemplate, free: boolean): void {
    const at = this.templates.indexOf(template);
    if (at >= 0) this.templates.splice(at, 1);
    const { vm } = template;
    if (!free) {
      this.modules.delete(vm.module);
      return;
    }
    if (template.dirty && !vm.module.exhausted && !vm.module.fatal) vm.module.restore(template.image);
    vm.dispose();
  }

  /** A module for a new tenant: an idle one (unless `fresh`), or a fresh one if the thread's bound has room for it. */
  private async acquire(limits: SandboxLimits, fresh = false): Promise<GuestModule> {
    const allowance = limits.envMemoryMb * MiB;
    const reused = fresh ? undefined : this.idle.pop();
    if (reused) {
      reused.lease(allowance);
      return reused;
    }
    const build = await quickjsBuild();
    const start = build.initialPages * WASM_PAGE - build.unreachableBytes;
    if (this.room(start) < start) {
      throw new SandboxError('SANDBOX_MEMORY_FULL', `no room for a new environment: the sandbox thread holds ${mb(this.heapBytes())} of its ${mb(this.boundBytes)} (ENVFLEET_SANDBOX_HEAP_MB)`);
    }
    const module = new GuestModule(build, wanted => this.room(wanted), this.boundBytes);
    module.lease(allowance);
    this.modules.add(module);
    try {
      await module.instantiate();
    } catch (err) {
      this.modules.delete(module);
      throw err;
    }
    return module;
  }

  /** Takes a module back from its tenant: kept for the next one if it is clean and small, dropped otherwise. */
  private release(module: GuestModule): void {
    if (!module.fatal && !module.exhausted && module.grownBytes() <= REUSE_GROWTH && this.idle.length < IDLE_MODULES) {
      this.idle.push(module);
      return;
    }
    this.modules.delete(module);
  }

  /** Free bytes under the bound, after dropping idle modules while fewer than `wanted` are free. */
  private room(wanted: number): number {
    let free = this.boundBytes - this.heapBytes();
    while (free < wanted && this.idle.length > 0) {
      this.modules.delete(this.idle.shift()!);
      free = this.boundBytes - this.heapBytes();
    }
    while (free < wanted && this.spare.length > 0) {
      this.modules.delete(this.spare.shift()!.module);
      free = this.boundBytes - this.heapBytes();
    }
    // Then the check templates no batch is using: they only save time.
    for (let t = this.templates.find(x => !x.busy); free < wanted && t; t = this.templates.find(x => !x.busy)) {
      this.dropTemplate(t, false);
      free = this.boundBytes - this.heapBytes();
    }
    return free;
  }

  private validatorsFor(code: EnvironmentCode): Map<string, ValidateFunction> {
    const key = `${code.className}\u0000${JSON.stringify(code.tools)}`;
    let map = this.validators.get(key);
    if (!map) {
      map = new Map();
      for (const tool of code.tools) {
        try {
          map.set(tool.function.name, compileJsonSchema(tool.function.parameters ?? { type: 'object' }));
        } catch (err) {
          throw new SandboxError('TOOL_SCHEMA_INVALID', `tool ${tool.function.name}: ${(err as Error).message}`);
        }
      }
      if (this.validators.size > 500) this.validators.clear();
      this.validators.set(key, map);
    }
    return map;
  }
}

/** A check that changes everything it can, then one that must not see it (warm-up's test of the memory copies). */
const WARM_CHECKS: readonly CheckSpec[] = [
  { item: 'changes', check: 'function check(f, i) { f.list.sort(); i.n = 2; globalThis.leak = 1; Array.prototype.sort = null; const a = []; for (let k = 0; k < 2e4; k++) a.push({ k }); globalThis.keep = a; return true; }' },
  { item: 'sees none of it', check: 'function check(f, i) { return f.list.join() === "3,1,2" && i.n === 1 && typeof leak === "undefined" && typeof keep === "undefined" && typeof [].sort === "function"; }' },
  { item: 'again', check: 'function check(f, i) { return f.list[0] === 3 && i.n === 1 && typeof keep === "undefined"; }' },
];

const WARM_CODE: EnvironmentCode = {
  name: 'warm-up',
  className: 'WarmUp',
  source: [
    'class WarmUp {',
    '  constructor(s) { this.state = s; this.drawn = Math.random(); }',
    '  ping() { return { success: true, data: "pong" }; }',
    // warm()'s test of session copies: what one session changes, the next must not see.
    '  change() { this.state.list.sort(); this.state.n = 2; globalThis.leak = 1; Array.prototype.sort = null; WarmUp.prototype.untouched = () => false; Math.random(); return true; }',
    '  untouched() { return [this.state.list.join() === "3,1,2" && this.state.n === 1 && typeof leak === "undefined" && typeof [].sort === "function", this.drawn, Math.random()]; }',
    '}',
  ].join('\n'),
  tools: ['ping', 'change', 'untouched'].map(name => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } })),
};
const WARM_SESSION_STATE = { list: [3, 1, 2], n: 1 };

/**
 * The native encoder's heap grows by up to about 3.5 times the encoding at its peak (its buffer
 * grows by halves through realloc, then QTS_bjson_encode copies it into an ArrayBuffer and
 * QTS_GetArrayBuffer copies that), more than the guest's JSON.stringify and the UTF-8 copy of its
 * text take for some states (wide text: about 3.4 against 2.8 times). The encoding of a state is
 * at most about what the state takes in the heap, so where the heap may still grow by this many
 * times what it has grown to (GuestModule.roomToGrow), the encoder cannot run out where
 * JSON.stringify would not; with less room, a snapshot copies the module's memory before it tries
 * (GuestVm.snapshotText; a copy of a 4 MB heap is under a millisecond into the thread's reused buffer).
 */
const NATIVE_SNAPSHOT_ROOM = 4;
/**
 * The most the native encoder may grow a module by, as times the units of text it may write (GuestVm.encodePlain),
 * plus ENCODER_SLACK_BYTES: a text of n units is mostly at most about 2.5 n bytes of encoding (a float's 8 bytes
 * against "0.5,"), held at most about 3.5 times at the peak (NATIVE_SNAPSHOT_ROOM). Some values encode to far more than
 * their text (members whose value is undefined, which JSON leaves out; integers held as floats) and may meet it within
 * the units: then, as for any refusal on the encoder's way, the value is written the guest's way, exactly, only slower.
 */
const ENCODER_ROOM = 10;
const ENCODER_SLACK_BYTES = 1 << 20;
/** encodePlain's answer where a growth was refused on the encoder's way: the caller writes the value the guest's way. */
const ENCODER_STOPPED = Symbol('encoder stopped');
/**
 * How this thread's snapshots were written so far (read by tests and benchmarks); `restored`: those
 * of them (written by JSON.stringify) whose native attempt ran out of room and whose module's memory
 * was written back (GuestVm.snapshotText); `stopped`: native attempts the allowance stopped
 * (GuestVm.encodePlain).
 */
export const SNAPSHOT_WAYS = { native: 0, stringify: 0, restored: 0, stopped: 0 };

/** What STACK_OVERFLOW's message adds: how deep the guest may go (limits.stackBytes), and what to write instead. */
const stackAdvice = (stackBytes: number): string => {
  // (about 1,000–2,000 nested calls in 256 KiB, as docs/sandbox.md measures it)
  const calls = (per256: number) => (Math.round((per256 * stackBytes) / (256 * 1024) / 100) * 100).toLocaleString('en-US');
  return `: the JavaScript runtime's stack (${Math.round(stackBytes / 1024)} KiB) holds about ${calls(1000)}–${calls(2000)} nested calls; write a deep recursion as a loop over an array used as a stack, or recurse over less at a time`;
};

/** The setting a deadline comes from (for DEADLINE_EXCEEDED's message). */
type DeadlineSetting = 'ENVFLEET_SANDBOX_DEADLINE_MS' | 'ENVFLEET_SANDBOX_CREATE_DEADLINE_MS' | 'ENVFLEET_SANDBOX_CHECK_DEADLINE_MS';
/** How this thread's tool results were written so far (GuestVm.callTool; read by tests and benchmarks). */
export const CALL_WAYS = { native: 0, stringify: 0 };
const PLAIN_SNAPSHOT_BARS = /toJSON|prototype|PrototypeOf|__proto__|Object\s*\.\s*create|definePropert|Reflect/;
const plainSnapshotsBySource = new Map<string, boolean>();
/**
 * Whether an environment's snapshots may go through QuickJS's native encoder (GuestVm.snapshotText,
 * bjson.ts), which writes an object's own data and cannot see its prototype: only where the source
 * names none of the ways to a `toJSON` the guest's JSON.stringify would call instead (a `toJSON`
 * of its own, a prototype it sets or reaches, an object made on another, such as
 * `Object.create(new Date())`) or to an array element that is not enumerable or is read from a
 * prototype (`defineProperty`). Such code is snapshotted by JSON.stringify, as before. Code that
 * builds those names at run time could make the two texts differ, for its own state only, which it
 * writes as it likes anyway. Kept per source text: a thread sees a handful.
 */
export function plainSnapshots(source: string): boolean {
  let plain = plainSnapshotsBySource.get(source);
  if (plain === undefined) {
    plain = !PLAIN_SNAPSHOT_BARS.test(source);
    if (plainSnapshotsBySource.size >= 256) plainSnapshotsBySource.clear();
    plainSnapshotsBySource.set(source, plain);
  }
  return plain;
}

/**
 * The seed of an environment's Math.random: FNV-1a over its class name and initial state, so the
 * sessions of one scenario draw the same numbers wherever they run.
 */
function seedOf(code: EnvironmentCode, stateJson: string): string {
  let h = 0x811c9dc5;
  const mix = (text: string) => {
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  };
  mix(code.className);
  mix('\u0000');
  mix(stateJson);
  return String(h >>> 0);
}

/**
 * The checks of one batch, in one module whose runtime and context have both states parsed:
 * `run` writes the module's memory back to that point (from the second check on), then evaluates
 * the check's source and calls it on the states.
 */
class CheckBatch {
  private used = false;
  /** The module's memory once the states were parsed, taken before the first check when more follow. */
  private image: MemoryImage | null = null;

  constructor(
    private readonly vm: GuestVm,
    /** Hands the runtime and module back once the batch is done. */
    private readonly done: () => void,
    /** Whether the memory may be copied (false: one check per batch). */
    private readonly copies: boolean,
  ) {}

  /** Runs one check; `more`: other checks of the list follow (the memory is copied before the first one then). */
  run(check: string, deadlineMs: number, more: boolean): Omit<CheckOutcome, 'item'> {
    if (this.used) {
      if (!this.image) throw new Error('a check batch without a copy of its memory runs one check');
      this.vm.module.restore(this.image);
    } else if (more && this.copies) {
      this.image = this.vm.module.captureScratch();
    }
    this.used = true;
    this.vm.arm(deadlineMs, false, undefined, 'ENVFLEET_SANDBOX_CHECK_DEADLINE_MS');
    const fn = this.vm.eval(`${check}\n;(typeof check === 'function' ? check : undefined)`, 'CHECK_INVALID');
    let reply: Reply;
    try {
      reply = this.vm.callHarness('check', [fn]);
    } finally {
      fn.dispose();
    }
    return 'ok' in reply ? { passed: reply.ok === true } : { passed: false, error: reply.message, errorCode: reply.err };
  }

  /** Whether the next check may run here: there is a copy to restore, and the module is sound and within its allowance. */
  reusable(): boolean {
    return this.image !== null && !this.vm.module.exhausted && !this.vm.module.fatal;
  }

  dispose(): void {
    this.done();
  }
}

/**
 * The UTF-8 length of `text` wherever it could pass `cap` (a UTF-16 unit is at most 3 bytes); further below the
 * cap, its length in UTF-16 units, which is no more. The size caps count bytes, as the Python runtime's do: a
 * state of CJK text is 3 bytes a character in both runtimes. Counting costs nothing for a text well under its cap.
 */
function utf8Length(text: string, cap: number): number {
  return text.length * 3 + 8 <= cap ? text.length : Buffer.byteLength(text, 'utf8');
}

/** The parts of quickjs-emscripten's FFI that GuestVm.callTool uses (pointers are numbers into the module's memory). */
interface RawContext {
  readonly ffi: {
    QTS_NewString(ctx: number, chars: number): number;
    QTS_Call(ctx: number, fn: number, self: number, argc: number, argv: number): number;
    QTS_ResolveException(ctx: number, value: number): number;
    QTS_GetString(ctx: number, value: number): number;
    QTS_FreeCString(ctx: number, chars: number): void;
    QTS_FreeValuePointer(ctx: number, value: number): void;
  };
  /** QuickJS's native encoder and its buffer (GuestVm.snapshotText); null where this release lacks them. */
  readonly bjson: {
    QTS_bjson_encode(ctx: number, value: number): number;
    QTS_GetArrayBuffer(ctx: number, value: number): number;
    QTS_GetArrayBufferLength(ctx: number, value: number): number;
  } | null;
  readonly module: {
    _malloc(bytes: number): number;
    _free(ptr: number): void;
    readonly HEAPU8: Uint8Array;
    lengthBytesUTF8(s: string): number;
    stringToUTF8(s: string, ptr: number, maxBytes: number): void;
  };
  readonly ctx: number;
  readonly undefinedPtr: number;
  /** A handle owning a value pointer (what the wrapper gives for an exception). */
  handle(ptr: number): QuickJSHandle;
  /** The module glue's UTF-8 decoder (what getString decodes with). */
  decode(bytes: Uint8Array): string;
}

/** The FFI behind a context, reached past the wrapper's `protected` members; null when this release lays them out differently. */
function rawAccess(context: QuickJSContext): RawContext | null {
  const c = context as unknown as {
    ffi?: Partial<RawContext['ffi']>;
    module?: Partial<RawContext['module']> & { UTF8ToString?: unknown };
    ctx?: { value?: unknown };
    memory?: { heapValueHandle?: (ptr: number) => QuickJSHandle };
  };
  const { ffi, module, ctx, memory } = c;
  const fns = ['QTS_NewString', 'QTS_Call', 'QTS_ResolveException', 'QTS_GetString', 'QTS_FreeCString', 'QTS_FreeValuePointer'] as const;
  if (!ffi || !fns.every(f => typeof ffi[f] === 'function')) return null;
  if (!module || typeof module._malloc !== 'function' || typeof module._free !== 'function' || !(module.HEAPU8 instanceof Uint8Array)) return null;
  if (typeof module.lengthBytesUTF8 !== 'function' || typeof module.stringToUTF8 !== 'function' || typeof module.UTF8ToString !== 'function') return null;
  if (typeof ctx?.value !== 'number' || typeof memory?.heapValueHandle !== 'function') return null;
  const undefinedPtr = (context.undefined as unknown as { value?: unknown }).value;
  if (typeof undefinedPtr !== 'number') return null;
  const heapValueHandle = memory.heapValueHandle.bind(memory);
  const encoder = ffi as Partial<NonNullable<RawContext['bjson']>>;
  const bjson = typeof encoder.QTS_bjson_encode === 'function' && typeof encoder.QTS_GetArrayBuffer === 'function' && typeof encoder.QTS_GetArrayBufferLength === 'function' ? (encoder as RawContext['bjson']) : null;
  return {
    ffi: ffi as RawContext['ffi'],
    bjson,
    module: module as RawContext['module'],
    ctx: ctx.value,
    undefinedPtr,
    handle: heapValueHandle,
    decode: bytes => GLUE_UTF8.decode(bytes),
  };
}

/** Emscripten's UTF8ToString decodes with a default TextDecoder; so does callTool. */
const GLUE_UTF8 = new TextDecoder();

/**
 * A guest string value's text, as the glue's getString gives it (QTS_GetString, the same decoder),
 * with the end of its bytes found by a native indexOf instead of the glue's loop over every byte.
 * Null when the module had no room for the UTF-8 copy QTS_GetString makes (a reply is never empty:
 * the caller answers MEMORY_EXCEEDED, not an empty text).
 */
function readText(raw: RawContext, valuePtr: number): string | null {
  const { ffi, module, ctx } = raw;
  const chars = ffi.QTS_GetString(ctx, valuePtr);
  if (!chars) return null;
  try {
    const heap = module.HEAPU8;
    return raw.decode(heap.subarray(chars, heap.indexOf(0, chars)));
  } finally {
    ffi.QTS_FreeCString(ctx, chars);
  }
}

/**
 * What an environment's tool calls keep in its module between calls (GuestVm.callTool): a block
 * for the argument array and the arguments, and its tools' names as guest strings. It belongs to
 * one environment (one session), not to the VM: a VM on the session layout serves one session after
 * another with its memory written over in between, which would leave pointers kept in the VM
 * dangling. Freed by GuestVm.releaseCalls when the environment ends.
 */
interface CallScratch {
  block: number;
  bytes: number;
  names: Map<string, number>;
}

/** What stopped a guest run: its deadline, its session's CPU budget, or its module's memory. */
type Stop = 'deadline' | 'budget' | 'memory';

/**
 * A QuickJS runtime and context with the harness loaded, in a module of its own. The interrupt
 * handler cannot be caught by guest code; it stops the guest at the deadline armed for the current
 * call and as soon as an allocation failed in the module.
 */
class GuestVm {
  private runtime: QuickJSRuntime | undefined;
  private context: QuickJSContext | undefined;
  private harnessHandle: QuickJSHandle | undefined;
  private readonly fns = new Map<string, QuickJSHandle>();
  /** The FFI behind the context (callTool), looked up at the first tool call; null: not reachable. */
  private raw: RawContext | null | undefined;
  private deadline = 0;
  private deadlineIsBudget = false;
  private stopped: Stop | null = null;
  /** The deadline the last arm set, and the setting it comes from, for DEADLINE_EXCEEDED's message (two fields: arm runs on every call). */
  private armedMs = 0;
  private armedSetting: DeadlineSetting | null = null;
  disposed = false;
  /**
   * Opened first thing in a fresh module, with the session functions looked up, on the thread's
   * session layout (see SessionBase): memory copies from other such modules may be written over it.
   */
  onLayout = false;
  /** An environment was created here (its memory must be written over before the next one). */
  used = false;

  private constructor(
    readonly module: GuestModule,
    private readonly onDisposed: (module: GuestModule) => void,
    /** The guest stack the runtime was opened with (its max stack size). */
    private readonly stackBytes: number,
  ) {}

  /** A runtime, a context and the harness in `module`. Throws SandboxError; the module is handed back on failure. */
  static open(module: GuestModule, stackBytes: number, onDisposed: (module: GuestModule) => void): GuestVm {
    const vm = new GuestVm(module, onDisposed, stackBytes);
    try {
      vm.runtime = module.newRuntime(stackBytes, () => vm.shouldInterrupt());
      vm.context = vm.runtime.newContext();
      vm.arm(5_000);
      const result = vm.context.evalCode(HARNESS_SOURCE, 'envfleet-harness.js');
      if (result.error) {
        result.error.dispose();
        throw vm.limitHit() ?? new SandboxError('MEMORY_EXCEEDED', 'the sandbox harness did not load (out of memory?)');
      }
      vm.harnessHandle = result.value;
      return vm;
    } catch (err) {
      const e = err instanceof SandboxError ? err : (vm.limitHit() ?? new SandboxError('MEMORY_EXCEEDED', `cannot create a sandbox: ${String(err)}`));
      if (!(err instanceof SandboxError) && !module.exhausted) module.fatal = true;
      vm.dispose();
      throw e;
    }
  }

  private get ctx(): QuickJSContext {
    if (!this.context) throw new Error('the sandbox context is not open');
    return this.context;
  }

  private shouldInterrupt(): boolean {
    if (this.module.exhausted) {
      this.stopped = 'memory';
      return true;
    }
    if (performance.now() > this.deadline) {
      this.stopped = this.deadlineIsBudget ? 'budget' : 'deadline';
      return true;
    }
    return false;
  }

  /**
   * Sets the deadline of the next run, `ms` after `now` (a performance.now() reading the caller took
   * just before, so a tool call arms it without reading the clock again); `isBudget` when it is the
   * session's CPU budget rather than the call's deadline. The clock is performance.now(), which the
   * calls read anyway for their accounting (and which, unlike Date.now(), never steps back).
   */
  arm(ms: number, isBudget = false, now = performance.now(), setting: DeadlineSetting | null = null): void {
    this.deadline = now + ms;
    // Seen from outside the thread too: a guest inside a built-in that never polls is stopped by terminating its thread.
    watchArmed(ms);
    this.deadlineIsBudget = isBudget;
    this.armedMs = ms;
    this.armedSetting = setting;
    this.stopped = null;
  }

  /** The limit the last run hit, whatever the guest made of it (it may have caught an out-of-memory error). */
  limitHit(): SandboxError | null {
    switch (this.module.exhausted) {
      case 'allowance':
        return new SandboxError('MEMORY_EXCEEDED', `the environment used up its memory allowance (${mb(this.module.allowanceBytes)}, ENVFLEET_SANDBOX_ENV_MEMORY_MB)`);
      case 'thread':
        return new SandboxError('SANDBOX_MEMORY_FULL', 'the environment needed more memory and its sandbox thread has reached its bound (ENVFLEET_SANDBOX_HEAP_MB)');
      case 'bound':
        return this.module.pastBound();
      case null:
        break;
    }
    if (this.stopped === 'budget') return new SandboxError('CPU_BUDGET_EXCEEDED', 'the session used up its CPU budget (ENVFLEET_SANDBOX_SESSION_CPU_MS)');
    if (this.stopped === 'deadline') {
      const setting = this.armedSetting;
      return new SandboxError('DEADLINE_EXCEEDED', `interrupted at its deadline of ${Math.round(this.armedMs)} ms${setting ? ` (${setting})` : ''}`);
    }
    return null;
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
    const hit = this.limitHit();
    if (hit) {
      result.value.dispose();
      throw hit;
    }
    return result.value;
  }

  /** Looks the harness functions up now (a handle taken after a memory copy would not survive its restore). */
  preload(...names: string[]): void {
    for (const name of names) this.fn(name);
  }

  /** Not on the session layout after all (another layout than the thread's): used the plain way. */
  asPlain(): GuestVm {
    this.onLayout = false;
    return this;
  }

  /**
   * The addresses of what the host holds in this module between calls: the runtime, the context
   * (and the buffer it keeps), the harness and its looked-up functions. Equal layouts make a memory
   * copy from one module a working state of the other.
   */
  layout(): string {
    const rt = (this.runtime as unknown as { rt: { value: number } }).rt.value;
    const ctx = this.context as unknown as { ctx: { value: number }; uint32Out: { value: { ptr: number } } };
    const handles = [this.harnessHandle, ...this.fns.values()].map(h => (h ? String(h.value) : '-'));
    return [rt, ctx.ctx.value, ctx.uint32Out.value.ptr, ...handles, [...this.fns.keys()].join('/')].join(',');
  }

  private fn(name: string): QuickJSHandle {
    let fn = this.fns.get(name);
    if (!fn) {
      if (this.onLayout && this.used) throw new Error(`harness function ${name} was not looked up before the module's memory was copied`);
      if (!this.harnessHandle) throw new Error('the sandbox harness is not loaded');
      fn = this.ctx.getProp(this.harnessHandle, name);
      this.fns.set(name, fn);
    }
    return fn;
  }

  /** Calls a harness function with handles or strings; returns its parsed reply. Throws SandboxError. */
  callHarness(name: string, args: readonly (QuickJSHandle | string)[]): Reply {
    return JSON.parse(this.call(name, args)) as Reply;
  }

  /** Like callHarness but returns the raw reply text (to measure and cap it before parsing). */
  callHarnessText(name: string, a: string, b: string): string {
    return this.call(name, [a, b]);
  }

  /**
   * The harness's `snapshot` reply (the state's JSON text, or "!" and an error reply), written by
   * QuickJS's native encoder and read back by bjson.ts where the state is plain data, which is
   * several times cheaper than the guest's JSON.stringify (docs/benchmarks.md), and the same text.
   * Where it is not plain data (or longer than `maxUnits`), the harness stringifies the value read
   * the first time. `plain` false (code that could reach an inherited toJSON, see plainSnapshots):
   * the harness's `snapshot`. `mayRestore`: this module's memory may be copied and written back
   * (QuickJSHost's `copies`); `sizeHint`: the length of a text of this state known before (the
   * initial state's, the last snapshot's), which its encoding may exceed the heap by (strings
   * shared by many members). Throws SandboxError as `call` does.
   */
  snapshotText(plain: boolean, maxUnits: number, mayRestore: boolean, sizeHint: number): string {
    if (this.raw === undefined) this.raw = rawAccess(this.ctx);
    const raw = this.raw;
    if (!plain || !raw?.bjson) {
      SNAPSHOT_WAYS.stringify += 1;
      return this.call('snapshot', ['', '']);
    }
    const fn = this.fn('state');
    let result;
    try {
      result = this.ctx.callFunction(fn, this.ctx.undefined);
    } catch (err) {
      throw this.hostFailure(err);
    }
    // (TOOL_THREW, as `call` gives for an exception out of the harness's `snapshot`: the harness
    // catches what the state's getter throws; what escapes it is what escaped `snapshot` before.)
    if (result.error) throw this.guestError(result.error, 'TOOL_THREW');
    const wrapped = result.value;
    try {
      const hit = this.limitHit();
      if (hit) throw hit;
      // [state], or "!" and an error reply: the reader and snapshotOf both hand the reply back as it is.
      // Where the heap may run out on the encoder's way (see NATIVE_SNAPSHOT_ROOM), its memory is
      // copied first and written back if it does, so that the guest's JSON.stringify then finds the
      // module as it was and meets the allowance where it always did; without a copy, such a state
      // is the guest's JSON.stringify from the start.
      let image: MemoryImage | null = null;
      let text: string | null = null;
      // (The encoding takes at most two bytes a character of the text, numbers aside.)
      if (this.module.roomToGrow(NATIVE_SNAPSHOT_ROOM, 2 * sizeHint) || (mayRestore && (image = this.module.captureTransient()))) {
        const encoded = this.encodePlain(raw, (wrapped as unknown as { value: number }).value, maxUnits, STATE_OVER_CAP);
        if (encoded !== ENCODER_STOPPED) text = encoded;
        else if (image && !this.module.fatal) {
          // Out of room, and nothing of the guest ran since the copy: back to it, so that the guest's
          // JSON.stringify finds the heap exactly as it was.
          this.module.restore(image);
          SNAPSHOT_WAYS.restored += 1;
        }
      }
      if (text !== null) {
        SNAPSHOT_WAYS.native += 1;
        return text;
      }
      SNAPSHOT_WAYS.stringify += 1;
      return this.call('snapshotOf', [wrapped]);
    } finally {
      wrapped.dispose();
    }
  }

  /**
   * `[value]` through QuickJS's encoder and bjson.ts: the value's JSON text, or null (see bjsonToJson),
   * or ENCODER_STOPPED (the encoder found no room), or `tooLong` (the harness's error reply for a text
   * past `maxUnits`). Throws SandboxError (a limit met before it began).
   */
  private encodePlain(raw: RawContext, valuePtr: number, maxUnits: number, tooLong: string): string | null | typeof ENCODER_STOPPED {
    const { ffi, ctx } = raw;
    const bjson = raw.bjson!;
    // The encoder writes into a DynBuf that, once it found no room, skips what it is given and goes
    // on, and it checks no interrupt: out of room, it would go on to the end of the value, all the
    // holes of a sparse array (a[3e9] = 1: minutes) or a long string shared by many members. What it
    // does check, for every value, is the runtime's stack limit: the first refused growth sets that
    // so that the next check fails, and the encoder returns its exception there; it is set back after.
    // A refused growth here is the encoder's, not the guest's (GuestModule.onRefusal): the module is
    // not exhausted, the encoder frees what it held, and the caller writes the value the guest's way,
    // which stops at `maxUnits` (the harness's counting replacer) where this could not. The growth is
    // refused past ENCODER_ROOM times `maxUnits` (and the allowance), far more than a text of
    // `maxUnits` takes here, so that one string shared by many members of a result stops at a few
    // megabytes rather than growing the module to its whole allowance on the way.
    const runtime = this.runtime!;
    const module = this.module;
    let stopped = false;
    // (Only while the encoder runs: its stack limit is set back right after, and a refusal after that, of the copy of
    // its buffer, is only noted: the value is then written the guest's way, under the runtime's own limit.)
    let encoding = true;
    module.onRefusal = () => {
      if (stopped) return;
      stopped = true;
      if (!encoding) return;
      try {
        runtime.setMaxStackSize(1);
      } catch {
        // (a runtime that cannot take the call: the encoder then runs to its end, as it would have)
      }
    };
    if (Number.isFinite(maxUnits)) module.ceiling = module.size() + ENCODER_ROOM * maxUnits + ENCODER_SLACK_BYTES;
    let at = 0;
    let bufferPtr = 0;
    try {
      // The encoder recurses once per level of containers, and its frames take the host thread's own stack faster than
      // the runtime's limit is reached: 6,000 levels overflowed a 1 MB main thread's (`envfleet sandbox run`), which throws
      // the environment away. Under a lower limit it stops after a few thousand levels (more than MAX_JSON_DEPTH: a value
      // deeper than that is not passed on anyway, and the guest's JSON.stringify then says so).
      try {
        runtime.setMaxStackSize(Math.min(this.stackBytes, ENCODER_STACK_BYTES));
        bufferPtr = bjson.QTS_bjson_encode(ctx, valuePtr);
      } catch (err) {
        throw this.hostFailure(err);
      } finally {
        encoding = false;
        try {
          runtime.setMaxStackSize(this.stackBytes);
        } catch {
          module.fatal = true; // (a module that failed inside: never reused, as hostFailure has it)
        }
      }
      const errorPtr = bufferPtr ? ffi.QTS_ResolveException(ctx, bufferPtr) : 0;
      // Not plain data (a function, an accessor, a class the encoder refuses), or no room: null. The
      // encoder's buffer (quickjs.c's DynBuf) skips what it finds no room for and goes on, and
      // JS_WriteObject never checks, so a buffer written while a growth was refused may lack bytes
      // anywhere with no exception: it is never read.
      if (errorPtr) ffi.QTS_FreeValuePointer(ctx, errorPtr);
      const hit = this.limitHit();
      if (hit) throw hit;
      if (stopped) return ENCODER_STOPPED;
      if (errorPtr || !bufferPtr) return null;
      const length = bjson.QTS_GetArrayBufferLength(ctx, bufferPtr);
      // QTS_GetArrayBuffer hands back a malloc'd copy of the buffer's bytes, freed below.
      at = bjson.QTS_GetArrayBuffer(ctx, bufferPtr);
      if (!at || stopped) return ENCODER_STOPPED;
      const heap = raw.module.HEAPU8;
      const text = bjsonToJson(heap.subarray(at, at + length), maxUnits);
      return text === OVER_CAP ? tooLong : text;
    } finally {
      module.onRefusal = null;
      module.ceiling = 0;
      if (stopped) SNAPSHOT_WAYS.stopped += 1;
      if (at) raw.module._free(at);
      if (bufferPtr) ffi.QTS_FreeValuePointer(ctx, bufferPtr);
    }
  }

  /**
   * The harness's `call` for one tool call: what callHarnessText('call', tool, argsJson) does, on
   * quickjs-emscripten's FFI directly, the hot path of every session. The wrapper would make three
   * allocations in the module (two C strings and the argument array) and a handle object per
   * value, and find the end of the reply with a JavaScript loop over its bytes; here the tool's name
   * is a guest string made once per environment and tool (toolName), the argument array and the
   * arguments' text go to the environment's scratch block (scratchFor; both in `scratch`, freed by
   * releaseCalls), and the reply's end is found natively. The arguments are written by the same
   * (native or glue) UTF-8 functions and the reply is decoded by the same decoder, so the guest sees
   * the same strings and the host the same reply. Falls back to the wrapper where the internals it
   * reaches are not there (another quickjs-emscripten release). Throws SandboxError as `call` does.
   */
  callTool(tool: string, argsJson: string, scratch: CallScratch, plain = false, maxBytes = Infinity, sizeHint = 0): string {
    if (this.raw === undefined) this.raw = rawAccess(this.ctx);
    const raw = this.raw;
    if (!raw) return this.call('call', [tool, argsJson]);
    const { ffi, module, ctx } = raw;
    // plain: the result comes back in a one-element array for the native encoder (snapshotText's way)
    const native = plain && raw.bjson !== null;
    let resultPtr: number;
    try {
      const fnPtr = this.fn(native ? 'callValue' : 'call').value;
      const toolPtr = this.toolName(raw, scratch, tool);
      const argsBytes = module.lengthBytesUTF8(argsJson) + 1;
      // [argv: 2 JSValue pointers][args\0], in the environment's scratch block
      const block = this.scratchFor(raw, scratch, 8 + argsBytes);
      let argsPtr = 0;
      try {
        module.stringToUTF8(argsJson, block + 8, argsBytes);
        argsPtr = ffi.QTS_NewString(ctx, block + 8);
        const argv = new Int32Array(module.HEAPU8.buffer, block, 2);
        argv[0] = toolPtr;
        argv[1] = argsPtr;
        resultPtr = ffi.QTS_Call(ctx, fnPtr, raw.undefinedPtr, 2, block);
      } finally {
        if (argsPtr) ffi.QTS_FreeValuePointer(ctx, argsPtr);
      }
    } catch (err) {
      if (err instanceof SandboxError) throw err;
      throw this.hostFailure(err);
    }
    const errorPtr = ffi.QTS_ResolveException(ctx, resultPtr);
    if (errorPtr) {
      ffi.QTS_FreeValuePointer(ctx, resultPtr);
      throw this.guestError(raw.handle(errorPtr), 'TOOL_THREW');
    }
    const hit = this.limitHit();
    if (hit) {
      ffi.QTS_FreeValuePointer(ctx, resultPtr);
      throw hit;
    }
    if (native) {
      // [result], or "!" and an error reply; encodeOf stringifies the result where the encoder cannot write it.
      // Only where the heap can take the encoder's peak (see NATIVE_SNAPSHOT_ROOM; `sizeHint`: the
      // length of this environment's last result): there is no copy to go back to here.
      let text: string | null = null;
      try {
        const encoded = this.module.roomToGrow(NATIVE_SNAPSHOT_ROOM, 2 * sizeHint) ? this.encodePlain(raw, resultPtr, maxBytes, RESULT_OVER_CAP) : null;
        // (stopped for room: the guest's way below, which stops at maxBytes)
        if (encoded !== ENCODER_STOPPED) text = encoded;
      } catch (err) {
        ffi.QTS_FreeValuePointer(ctx, resultPtr);
        throw err;
      }
      if (text !== null) {
        ffi.QTS_FreeValuePointer(ctx, resultPtr);
        CALL_WAYS.native += 1;
        return text;
      }
      CALL_WAYS.stringify += 1;
      const handle = raw.handle(resultPtr); // (a handle object only on this way: `call` takes handles)
      try {
        return this.call('encodeOf', [handle]);
      } finally {
        handle.dispose();
      }
    }
    let text: string | null;
    try {
      text = readText(raw, resultPtr);
    } finally {
      ffi.QTS_FreeValuePointer(ctx, resultPtr);
    }
    if (text === null) throw this.noRoomToRead();
    return text;
  }

  /** The module had no room for the UTF-8 copy of a reply (readText): the limit it hit, as a call's own allocation failure would be. */
  private noRoomToRead(): SandboxError {
    return this.limitHit() ?? new SandboxError('MEMORY_EXCEEDED', 'out of memory reading the reply');
  }

  /**
   * The environment's scratch block in the module's heap, at least `bytes` long: callTool writes the
   * argument array and the arguments there instead of allocating for every call. It grows in powers
   * of two (the arguments are bounded by what the schema let through) and is freed by releaseCalls.
   */
  private scratchFor(raw: RawContext, scratch: CallScratch, bytes: number): number {
    if (bytes > scratch.bytes) {
      if (scratch.block) raw.module._free(scratch.block);
      scratch.block = 0;
      scratch.bytes = 0;
      const size = Math.max(256, 2 ** Math.ceil(Math.log2(bytes)));
      const ptr = raw.module._malloc(size);
      if (!ptr) throw this.limitHit() ?? new SandboxError('MEMORY_EXCEEDED', 'out of memory passing the arguments');
      scratch.block = ptr;
      scratch.bytes = size;
    }
    return scratch.block;
  }

  /**
   * The guest string of a tool's name, made at the environment's first call of the tool and kept
   * in its scratch (a string value is immutable; an environment has a handful of tools).
   */
  private toolName(raw: RawContext, scratch: CallScratch, tool: string): number {
    let ptr = scratch.names.get(tool);
    if (ptr === undefined) {
      const bytes = raw.module.lengthBytesUTF8(tool) + 1;
      const chars = raw.module._malloc(bytes);
      if (!chars) throw this.limitHit() ?? new SandboxError('MEMORY_EXCEEDED', 'out of memory passing the tool name');
      try {
        raw.module.stringToUTF8(tool, chars, bytes);
        ptr = raw.ffi.QTS_NewString(raw.ctx, chars);
      } finally {
        raw.module._free(chars);
      }
      scratch.names.set(tool, ptr);
    }
    return ptr;
  }

  /**
   * Frees what an environment's calls kept in the module (its scratch block and tool names), when
   * it ends and before its module is freed, reused or written over. A module that is dropped whole
   * needs nothing freed.
   */
  releaseCalls(scratch: CallScratch): void {
    const { block, names } = scratch;
    scratch.block = 0;
    scratch.bytes = 0;
    scratch.names = new Map();
    const raw = this.raw;
    if (!raw || this.disposed || this.module.fatal || this.module.exhausted) return;
    try {
      for (const ptr of names.values()) raw.ffi.QTS_FreeValuePointer(raw.ctx, ptr);
      if (block) raw.module._free(block);
    } catch {
      this.module.fatal = true;
    }
  }

  private call(name: string, args: readonly (QuickJSHandle | string)[]): string {
    const fn = this.fn(name);
    const owned: QuickJSHandle[] = [];
    let result;
    try {
      const handles = args.map(a => {
        if (typeof a !== 'string') return a;
        const h = this.ctx.newString(a);
        owned.push(h);
        return h;
      });
      result = this.ctx.callFunction(fn, this.ctx.undefined, ...handles);
    } catch (err) {
      throw this.hostFailure(err);
    } finally {
      for (const h of owned) h.dispose();
    }
    if (result.error) throw this.guestError(result.error, 'TOOL_THREW');
    const hit = this.limitHit();
    if (hit) {
      result.value.dispose();
      throw hit;
    }
    // A long reply (a state's snapshot) is read with the end found natively, as callTool reads one.
    if (this.raw === undefined) this.raw = rawAccess(this.ctx);
    const raw = this.raw;
    const text = raw ? readText(raw, (result.value as unknown as { value: number }).value) : this.ctx.getString(result.value);
    result.value.dispose();
    // No reply of the harness is empty: an empty one from the wrapper is the same failed copy.
    if (text === null || text === '') throw this.noRoomToRead();
    return text;
  }

  /**
   * The host side failed: a limit made a host call fail, or the WebAssembly code itself failed
   * (the host stack overflowed under deep guest recursion, or the module trapped). In the second
   * case the module may be inconsistent: it is never reused and its runtime is not freed.
   */
  private hostFailure(err: unknown): SandboxError {
    const hit = this.limitHit();
    if (hit) return hit;
    this.module.fatal = true;
    const message = String(err);
    if (/call stack/i.test(message)) return new SandboxError('STACK_OVERFLOW', `the call recursed too deeply (${message})`);
    return new SandboxError('MEMORY_EXCEEDED', `the runtime failed: ${message}`);
  }

  expectOk(reply: Reply, message?: string): void {
    if ('err' in reply) throw new SandboxError(reply.err, message ? `${message}: ${reply.message}` : reply.message);
  }

  private guestError(handle: QuickJSHandle, code: SandboxErrorCode): SandboxError {
    let message = 'unknown error';
    // Only the engine's own InternalError says a limit was met: an error the code threw itself is its own, whatever
    // its message says ("Device out of memory", a RangeError of "Maximum call stack size exceeded").
    let engine = false;
    try {
      const dumped: unknown = this.ctx.dump(handle);
      if (dumped && typeof dumped === 'object' && 'message' in dumped) {
        const name = 'name' in dumped && typeof dumped.name === 'string' ? dumped.name : 'Error';
        engine = name === 'InternalError';
        message = `${name}: ${String(dumped.message)}`;
      } else {
        message = String(dumped);
      }
    } catch {
      // the runtime may be out of memory: keep the generic message
    } finally {
      handle.dispose();
    }
    const hit = this.limitHit();
    if (hit) return hit;
    if (engine && /out of memory/i.test(message)) return new SandboxError('MEMORY_EXCEEDED', message);
    if (engine && /stack overflow/i.test(message)) return new SandboxError('STACK_OVERFLOW', message);
    return new SandboxError(code, message);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    // A module that failed or ran out of room is dropped whole: freeing into it would gain nothing.
    if (!this.module.fatal && !this.module.exhausted) {
      try {
        for (const fn of this.fns.values()) fn.dispose();
        this.harnessHandle?.dispose();
        this.context?.dispose();
        this.runtime?.dispose();
      } catch {
        // a runtime that failed inside may refuse to free cleanly: its module is not reused
        this.module.fatal = true;
      }
    }
    this.onDisposed(this.module);
  }
}

/**
 * A live environment: one instance of the environment class in a QuickJS module of its own. Not
 * thread-safe and synchronous: a call runs to completion (or to a limit) before it returns. Its
 * calls and snapshots draw on one CPU budget for the session (`sessionCpuMs`); the call that
 * exhausts it is interrupted and the session ends with CPU_BUDGET_EXCEEDED.
 */
export class SandboxEnvironment {
  private ended = false;
  /** The limit that ended the environment, for what later calls and snapshots are told (not set when it was closed). */
  private endedBy: { readonly code: SandboxErrorCode; readonly message: string } | null = null;
  /** What this environment's calls keep in its module (see CallScratch). */
  private readonly scratch: CallScratch = { block: 0, bytes: 0, names: new Map() };
  private spentMs = 0;
  private calls = 0;
  /** The length of the last reply's text (callTool's room check for its native way). */
  private resultHint = 0;
  private readonly budgetMs: number;

  constructor(
    private readonly vm: GuestVm,
    private readonly validators: ReadonlyMap<string, ValidateFunction>,
    private readonly limits: SandboxLimits,
    private readonly onDisposed: () => void,
    /** Snapshots may go through the native encoder (see plainSnapshots). */
    private readonly plainSnapshots = false,
    /** The module's memory may be copied and written back around a snapshot (GuestVm.snapshotText). */
    private readonly mayRestore = false,
    /** The length of the state's last known text (the initial state's, then the last snapshot's): GuestVm.snapshotText. */
    private sizeHint = 0,
  ) {
    this.budgetMs = sessionCpuMsOf(limits);
  }

  get disposed(): boolean {
    return this.ended;
  }

  get toolNames(): string[] {
    return [...this.validators.keys()];
  }

  /** Milliseconds this environment has kept its thread busy (calls and snapshots). */
  get cpuMs(): number {
    return this.spentMs;
  }

  /** Arms the call's deadline from `started`, or the rest of the session's budget when that is shorter. */
  private armWithin(deadlineMs: number, started: number): SandboxError | null {
    const left = this.budgetMs - this.spentMs;
    if (left <= 0) return this.budgetError();
    this.vm.arm(Math.min(deadlineMs, left), left < deadlineMs, started, 'ENVFLEET_SANDBOX_DEADLINE_MS');
    return null;
  }

  private budgetError(runningMs = 0): SandboxError {
    const spent = Math.round(this.spentMs + runningMs);
    return new SandboxError('CPU_BUDGET_EXCEEDED', `the session used up its CPU budget: ${spent} ms over ${this.calls} calls; the budget is ${this.budgetMs} ms (ENVFLEET_SANDBOX_SESSION_CPU_MS)`);
  }

  /**
   * Calls a tool. The limits are those of every call: the arguments validated against the tool's
   * schema, the call's deadline or the rest of the session's budget, the module's memory, and the
   * result cap (`maxResultBytes`, on the result's JSON text in UTF-8 bytes, as in the Python
   * runtime; until 2026-12-06 on `{"ok":` + result + `}`, 7 bytes more). The time the call took
   * (`us`, and the session's CPU account) includes parsing the result.
   */
  call(tool: string, args: unknown): CallOutcome {
    return this.invoke(tool, args, true) as CallOutcome;
  }

  /** call() with the result as the guest's JSON text, not parsed (what a session sends to its host thread). */
  callText(tool: string, args: unknown): CallTextOutcome {
    return this.invoke(tool, args, false) as CallTextOutcome;
  }

  /** call and callText: `parse` the result or not. Two clock reads on the way to a result, and no closure. */
  private invoke(tool: string, args: unknown, parse: boolean): CallOutcome | CallTextOutcome {
    const started = performance.now();
    if (this.ended) return this.stop(started, parse, 'ENV_DISPOSED', this.disposedMessage());
    const validate = this.validators.get(tool);
    if (!validate) return this.stop(started, parse, 'UNKNOWN_TOOL', `unknown tool "${tool}"; the tools are: ${this.toolNames.join(', ')}`);
    const input = args ?? {};
    if (typeof input !== 'object' || Array.isArray(input)) {
      return this.stop(started, parse, 'INVALID_ARGUMENTS', `invalid arguments for ${tool}: expected an object of named arguments`);
    }
    if (!validate(input)) return this.stop(started, parse, 'INVALID_ARGUMENTS', `invalid arguments for ${tool}:\n${describeAjvErrors(validate.errors)}`);
    this.calls += 1;
    try {
      const over = this.armWithin(this.limits.callDeadlineMs, started);
      if (over) return this.stop(started, parse, over.code, over.message, true);
      let text: string;
      try {
        text = this.vm.callTool(tool, JSON.stringify(input), this.scratch, this.plainSnapshots, OVER_CAP_SAID * this.limits.maxResultBytes, this.resultHint);
        if (text !== RESULT_OVER_CAP) this.resultHint = text.length;
      } catch (err) {
        const e = err instanceof SandboxError ? err : new SandboxError('TOOL_THREW', String(err));
        if (e.code !== 'CPU_BUDGET_EXCEEDED') return this.stop(started, parse, e.code, e.message, true);
        const outcome = this.stop(started, parse, e.code, this.budgetError(performance.now() - started).message, true);
        // Stopped for the budget: the session spent it all (the interrupt's clock may fire a fraction of a millisecond early).
        this.spentMs = Math.max(this.spentMs, this.budgetMs);
        return outcome;
      }
      // The harness's reply: the result's JSON text, or "!" and an error reply (harness.ts). The cap
      // applies to the result's JSON text, as the Python runtime's does, or to the error reply's.
      const failed = text.charCodeAt(0) === 33;
      const length = utf8Length(text, this.limits.maxResultBytes) - (failed ? 1 : 0);
      if (length > this.limits.maxResultBytes) {
        // An error past the cap (an exception whose message holds the whole database) is said as an error, with its
        // start, as the Python runtime says it; a limit keeps its own code.
        const reply = failed ? (JSON.parse(text.slice(1)) as { err: SandboxErrorCode; message: string }) : null;
        if (reply && FATAL_CODES.has(reply.err)) return this.stop(started, parse, reply.err, cutText(reply.message, 2000), true);
        const what = reply ? `the error (${reply.err}) of ${tool}` : `the result of ${tool}`;
        return this.stop(started, parse, 'RESULT_TOO_LARGE', `${what} is ${length} bytes; the cap is ${this.limits.maxResultBytes}${reply ? `${RESULT_CAP_SETTING}; it began: ${cutText(reply.message, 200)}` : RESULT_CAP_ADVICE}`, true);
      }
      if (failed) {
        const reply = JSON.parse(text.slice(1)) as { err: SandboxErrorCode; message: string };
        // (Found past the cap as it was written: the harness stops there, and so does the native encoder's reader.)
        if (reply.err === 'RESULT_TOO_LARGE') return this.stop(started, parse, reply.err, `the result of ${tool} is more than ${OVER_CAP_SAID * this.limits.maxResultBytes} bytes; the cap is ${this.limits.maxResultBytes}${RESULT_CAP_ADVICE}`, true);
        return this.stop(started, parse, reply.err, reply.message, true);
      }
      if (parse) {
        const result: unknown = JSON.parse(text);
        const ms = performance.now() - started;
        this.spentMs += ms;
        return { result, us: ms * 1000 };
      }
      const ms = performance.now() - started;
      this.spentMs += ms;
      return { resultJson: text, us: ms * 1000 };
    } catch (err) {
      // Not expected (every failure above is an outcome), but the time is still the session's.
      this.spentMs += performance.now() - started;
      throw err;
    }
  }

  /** ENV_DISPOSED's message: the limit that ended the environment where one did (the call that met it said it; the calls after it say which it was). */
  private disposedMessage(): string {
    const by = this.endedBy;
    return by ? disposedAfter(by.code, by.message) : SANDBOX_ERROR_CODES.ENV_DISPOSED;
  }

  /**
   * A call that ended without a result: the environment disposed first if the code discards it,
   * then timed; `charged`: the call got as far as counting (`calls`), and its time goes to the
   * session's CPU account.
   */
  private stop(started: number, parse: boolean, code: SandboxErrorCode, message: string, charged = false): CallOutcome | CallTextOutcome {
    if (code === 'STACK_OVERFLOW') message = `the call recursed too deeply (${message.replace(/^the call recursed too deeply \((.*)\)$/s, '$1')})${stackAdvice(this.limits.stackBytes)}`;
    if (FATAL_CODES.has(code)) {
      if (!this.ended) this.endedBy = { code, message };
      this.dispose();
    }
    const result = { success: false, error: message };
    const outcome = parse ? { result, runtimeError: code, us: 0 } : { resultJson: JSON.stringify(result), runtimeError: code, us: 0 };
    const ms = performance.now() - started;
    if (charged) this.spentMs += ms;
    outcome.us = ms * 1000;
    return outcome;
  }

  /** The state as JSON text. Throws SandboxError (STATE_TOO_LARGE, STATE_INVALID, ENV_DISPOSED, a limit). */
  snapshotText(): string {
    if (this.ended) throw new SandboxError('ENV_DISPOSED', this.disposedMessage());
    const started = performance.now();
    try {
      const over = this.armWithin(this.limits.callDeadlineMs, started);
      if (over) throw over;
      // The state's JSON text, or "!" and an error reply.
      const text = this.vm.snapshotText(this.plainSnapshots, OVER_CAP_SAID * this.limits.maxStateBytes, this.mayRestore, this.sizeHint);
      if (text.startsWith('!')) {
        const reply = JSON.parse(text.slice(1)) as { err: SandboxErrorCode; message: string };
        if (reply.err === 'STATE_TOO_LARGE') throw new SandboxError(reply.err, `the state is more than ${OVER_CAP_SAID * this.limits.maxStateBytes} bytes; the cap is ${this.limits.maxStateBytes}${STATE_CAP_ADVICE}`);
        throw new SandboxError(reply.err, reply.message);
      }
      const bytes = utf8Length(text, this.limits.maxStateBytes);
      if (bytes > this.limits.maxStateBytes) {
        throw new SandboxError('STATE_TOO_LARGE', `the state is ${bytes} bytes; the cap is ${this.limits.maxStateBytes}${STATE_CAP_ADVICE}`);
      }
      this.sizeHint = text.length;
      return text;
    } catch (err) {
      if (err instanceof SandboxError && FATAL_CODES.has(err.code)) {
        if (!this.ended) this.endedBy = { code: err.code, message: err.message };
        this.dispose();
      }
      throw err;
    } finally {
      this.spentMs += performance.now() - started;
    }
  }

  snapshot(): unknown {
    return JSON.parse(this.snapshotText());
  }

  /** Ends the environment: its module is freed, or kept for the thread's next environment (the host decides). */
  dispose(): void {
    if (this.ended) return;
    this.ended = true;
    this.vm.releaseCalls(this.scratch);
    this.onDisposed();
  }
}
