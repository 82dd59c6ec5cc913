/**
 * The node:vm baseline: the environment class runs in a V8 context of its own, with no sandbox
 * limits; each call goes in as JSON text and comes out as JSON text (the same work the sandbox
 * harness does at its boundary, minus schema validation and the WebAssembly crossing).
 */
import vm from 'node:vm';
import type { EnvironmentCode, ToolCall } from '../../src/sandbox/bundle.js';

/** In-context dispatcher: JSON text in, JSON text out, like the sandbox harness. */
const VM_DISPATCH = (className: string) => `;(function (stateJson) {
  const inst = new ${className}(JSON.parse(stateJson));
  return function call(name, argsJson) {
    if (name === 'constructor' || name.charAt(0) === '_') return '{"err":"UNKNOWN_TOOL","message":"not a tool"}';
    const method = inst[name];
    if (typeof method !== 'function') return '{"err":"UNKNOWN_TOOL","message":"the class has no method ' + name + '"}';
    let result;
    try { result = method.call(inst, JSON.parse(argsJson)); } catch (e) { return JSON.stringify({ err: 'TOOL_THREW', message: String(e && e.message) }); }
    return '{"ok":' + JSON.stringify(result) + '}';
  };
})`;

export function nodeVmDispatcher(code: EnvironmentCode, state: unknown): (name: string, argsJson: string) => string {
  const context = vm.createContext(Object.create(null) as object);
  const make = vm.runInContext(`${code.source}\n${VM_DISPATCH(code.className)}`, context) as (s: string) => (n: string, a: string) => string;
  return make(JSON.stringify(state));
}

export interface NodeVmTrace {
  readonly lat: number[];
  readonly perTool: Map<string, number[]>;
  readonly createMs: number;
  readonly callsPerSecond: number;
  readonly replies: unknown[];
}

/** Runs the trace on a fresh context, timing each call (host JSON.stringify of the args → JSON.parse of the reply). */
export function nodeVmTrace(code: EnvironmentCode, state: unknown, calls: readonly ToolCall[]): NodeVmTrace {
  const t0 = performance.now();
  const call = nodeVmDispatcher(code, state);
  const createMs = performance.now() - t0;
  const lat: number[] = new Array<number>(calls.length);
  const replies: unknown[] = new Array<unknown>(calls.length);
  const started = performance.now();
  for (let i = 0; i < calls.length; i++) {
    const c = calls[i]!;
    const t = performance.now();
    replies[i] = JSON.parse(call(c.tool, JSON.stringify(c.arguments)));
    lat[i] = (performance.now() - t) * 1000;
  }
  const wall = performance.now() - started;
  const perTool = new Map<string, number[]>();
  calls.forEach((c, i) => {
    let list = perTool.get(c.tool);
    if (!list) perTool.set(c.tool, (list = []));
    list.push(lat[i]!);
  });
  return { lat, perTool, createMs, callsPerSecond: calls.length / (wall / 1000), replies };
}
