import type { FunctionTool } from '../sandbox/bundle.js';
import type { SandboxLimits } from '../sandbox/limits.js';
import type { SandboxRunner } from '../sandbox/runner.js';
import type { Operation } from './schemas.js';
import { typedParameters } from './tool-schemas.js';

/**
 * Builds the environment class from its parts. The constructor is envfleet's own (it keeps the
 * initial state in this.state, the contract), so a model only ever writes methods; each is
 * indented as a whole, so no re-indentation can break it (the seed's assembler did).
 */
export function assembleSource(className: string, methods: readonly string[], helpers: readonly string[]): string {
  const indent = (src: string) => src.trim().split('\n').map(line => (line.trim() ? `  ${line}` : '')).join('\n');
  const body = [...methods, ...helpers].map(indent).join('\n\n');
  // The runtime hands each environment a freshly parsed initial state, so no copy is needed.
  return `class ${className} {\n  constructor(initialState) {\n    this.state = initialState === undefined || initialState === null ? {} : initialState;\n  }\n\n${body}\n}\n`;
}

/** The tools of the operations; every property of their parameters gets a `type` (typedParameters), which trainers and chat templates need. */
export function toolsOf(operations: readonly Operation[]): FunctionTool[] {
  return operations.map(op => ({ type: 'function', function: { name: op.name, description: op.description, parameters: typedParameters(op.parameters) } }));
}

/**
 * Checks one method in the sandbox (never in Node): it must parse inside a class body and define
 * a method of the expected name. Returns null, or what is wrong in words a model can act on.
 */
export async function checkMethodSource(sandbox: SandboxRunner, name: string, source: string, limits: SandboxLimits): Promise<string | null> {
  if (/^\s*(import|export)\s/m.test(source) || /\brequire\s*\(/.test(source)) {
    return 'the method must not use import, export or require: environments have no modules';
  }
  const check = `function check() {\nclass __EnvfleetMethodProbe {\n${source}\n}\nreturn Object.getOwnPropertyNames(__EnvfleetMethodProbe.prototype).includes(${JSON.stringify(name)});\n}`;
  const { results } = await sandbox.checks({ checks: [{ item: name, check }], finalState: {}, initialState: {}, limits });
  const r = results[0];
  if (!r) return 'the sandbox returned no result';
  if (r.passed) return null;
  if (r.errorCode) return `it does not load as a class method: ${r.error ?? r.errorCode}`;
  return `it does not define a method named ${name}(…) (write it as ${name}({ ... }) { ... } inside a class body)`;
}
