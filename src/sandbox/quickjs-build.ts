import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

/**
 * The QuickJS WebAssembly build, read and compiled once per thread, so that every environment can
 * get a module instance (a heap) of its own for the price of an instantiation.
 *
 * Emscripten lays the linear memory out as [static data][C stack, growing down][heap, growing up]:
 * the first mutable global (`__stack_pointer`) starts at the top of the stack, which is where the
 * heap begins. The build declares a 16 MiB minimum memory, which would hand every module about
 * 10.7 MiB of heap before it ever asks to grow; growth is the only thing the host can see and refuse,
 * so the minimum is lowered to the top of the stack (5.1 MiB in 0.32) by rewriting the import's
 * limit in place. All heap then arrives through the resize import, where it is charged.
 */
/** The parts of the WebAssembly API used here (TypeScript's lib has no WebAssembly types without DOM). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(deltaPages: number): number;
}
/** A compiled module: opaque here, handed to `Instance`. */
export type WasmModule = { readonly __wasmModule: never };
export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
  Memory: new (descriptor: { initial: number; maximum: number }) => WasmMemory;
}
export const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

export interface QuickJSBuild {
  readonly module: WasmModule;
  /** Pages a module's memory starts with: the static data and the C stack. */
  readonly initialPages: number;
  /** Byte offset where malloc's arena starts (the top of the C stack). */
  readonly heapBase: number;
  /**
   * Bytes of the C stack area that guest code can never reach: QuickJS stops recursion at the
   * guest stack limit (256 KiB), far above the bottom of Emscripten's 5 MiB stack. They are
   * address space that is never touched, so they are not charged to the thread's bound.
   */
  readonly unreachableBytes: number;
  /** False when the layout was not as expected and the build is used unmodified (16 MiB minimum). */
  readonly patched: boolean;
  /**
   * End of the static data and the zero-initialized statics after it (0 when unknown). With the
   * heap, this is all the mutable state of a module between two calls: the build's one mutable
   * global is the stack pointer, back at the top of the stack whenever no call is running, and the
   * stack below it is dead then. So a copy of [0, staticEnd) and of the heap, written back, returns
   * a module to the moment the copy was taken (see GuestModule.capture in quickjs-host.ts).
   */
  readonly staticEnd: number;
}

export const WASM_PAGE = 65_536;
/** The build's declared maximum (2 GiB): a memory handed to it may not declare more. */
export const WASM_MAX_PAGES = 32_768;
/** What the C stack may really use: the guest stack limit plus QuickJS's and the harness's own frames, generously. */
const REACHABLE_STACK = 1 << 20;
/** Room for the zero-initialized statics after the last data segment (not recorded in the binary). */
const BSS_SLACK = 1 << 16;

interface Layout {
  /** Offset and length of the LEB128 `min` of the memory import's limits. */
  minAt: number;
  minLength: number;
  min: number;
  stackTop: number;
  dataEnd: number;
  /** How many globals the module defines (Emscripten's stack pointer is the only mutable one expected). */
  globals: number;
}

/** Reads what the build's binary says about its memory: the import's minimum, the stack top, the end of the static data. */
function readLayout(bytes: Uint8Array): Layout | null {
  let p = 8; // magic + version
  const u32 = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[p++]!;
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(b & 0x80)) return result;
    }
  };
  const s32 = (): number => {
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      b = bytes[p++]!;
      result |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    return shift < 32 && b & 0x40 ? result | (-1 << shift) : result;
  };
  const name = () => {
    const n = u32();
    p += n;
  };
  const limits = () => {
    const flags = bytes[p++]!;
    u32();
    if (flags & 1) u32();
  };
  let memory: Pick<Layout, 'minAt' | 'minLength' | 'min'> | null = null;
  let stackTop: number | null = null;
  let dataEnd = 0;
  let globals = 0;
  while (p < bytes.length) {
    const id = bytes[p++]!;
    const size = u32();
    const end = p + size;
    if (id === 2) {
      // imports
      for (let n = u32(); n > 0; n--) {
        name();
        name();
        const kind = bytes[p++]!;
        if (kind === 0) u32();
        else if (kind === 1) {
          p++;
          limits();
        } else if (kind === 2) {
          const flags = bytes[p++]!;
          if (flags !== 1) return null; // shared or 64-bit memories: not this build
          const minAt = p;
          const min = u32();
          memory = { minAt, minLength: p - minAt, min };
          u32();
        } else p += 2; // global: type, mutability
      }
    } else if (id === 6 && stackTop === null) {
      // globals: Emscripten's first one is the stack pointer, a mutable i32 set by i32.const
      globals = u32();
      if (globals > 0) {
        const type = bytes[p++];
        const mutable = bytes[p++];
        const op = bytes[p++];
        if (type === 0x7f && mutable === 1 && op === 0x41) stackTop = s32();
      }
    } else if (id === 11) {
      // data segments (active, memory 0, i32.const offset)
      for (let n = u32(); n > 0; n--) {
        const flags = u32();
        if (flags !== 0 || bytes[p++] !== 0x41) return null;
        const offset = s32();
        p++; // end
        const length = u32();
        p += length;
        dataEnd = Math.max(dataEnd, offset + length);
      }
    }
    p = end;
  }
  if (!memory || stackTop === null || stackTop <= dataEnd) return null;
  return { ...memory, stackTop, dataEnd, globals };
}

/** Writes `value` as an unsigned LEB128 of exactly `length` bytes (padding is valid in WebAssembly). */
function writeLeb(bytes: Uint8Array, at: number, length: number, value: number): boolean {
  if (value >= 128 ** length) return false;
  for (let i = 0; i < length; i++) {
    const last = i === length - 1;
    bytes[at + i] = (value & 0x7f) | (last ? 0 : 0x80);
    value = Math.floor(value / 128);
  }
  return true;
}

let build: Promise<QuickJSBuild> | null = null;

/** The build of this thread (read and compiled on first use). */
export function quickjsBuild(): Promise<QuickJSBuild> {
  build ??= (async () => {
    // Resolved from envfleet's own dependencies, whatever the working directory.
    const bytes = new Uint8Array(await readFile(createRequire(import.meta.url).resolve('@jitl/quickjs-wasmfile-release-sync/wasm')));
    const layout = readLayout(bytes);
    if (layout) {
      const initialPages = Math.ceil(layout.stackTop / WASM_PAGE);
      if (initialPages <= layout.min && writeLeb(bytes, layout.minAt, layout.minLength, initialPages)) {
        const stackArea = layout.stackTop - layout.dataEnd - BSS_SLACK;
        return {
          module: new Wasm.Module(bytes),
          initialPages,
          heapBase: layout.stackTop,
          unreachableBytes: Math.max(0, stackArea - REACHABLE_STACK),
          patched: true,
          // Only the stack pointer as global state, and the statics well below the reachable stack.
          staticEnd: layout.globals === 1 && stackArea > REACHABLE_STACK ? layout.dataEnd + BSS_SLACK : 0,
        };
      }
    }
    // Unexpected layout: run the build as it is. Its heap below the declared minimum is then charged as used.
    const min = layout?.min ?? 256;
    return { module: new Wasm.Module(bytes), initialPages: min, heapBase: layout?.stackTop ?? 0, unreachableBytes: 0, patched: false, staticEnd: 0 };
  })();
  return build;
}
