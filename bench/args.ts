/**
 * Command-line flags for the benchmark scripts: `node:util` parseArgs in strict mode, so an unknown
 * flag or a missing value stops the script before it starts minutes of work. `--help` prints the
 * usage (the script's header comment) and exits 0; a bad flag prints what was wrong and the usage,
 * and exits 2.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export interface FlagSpec {
  /** Flags that take a value (`--delay 500`); their defaults are given where they are read. */
  readonly values?: readonly string[];
  /** Flags without a value (`--quick`). */
  readonly booleans?: readonly string[];
}

export interface BenchArgs {
  flag(name: string): boolean;
  /** The value of a value flag as a non-negative integer; exits 2 with a message if it is not one. */
  int(name: string, fallback: number): number;
  /** The value of a value flag as a comma-separated list of positive integers. */
  ints(name: string, fallback: string): number[];
  /** The value of a value flag as given, or undefined when it is not given. */
  str(name: string): string | undefined;
  /** The command line as given, for the report. */
  readonly raw: readonly string[];
}

/** The script's header comment (the first block comment), as plain text. */
function usageOf(scriptUrl: string): string {
  const source = readFileSync(new URL(scriptUrl), 'utf8');
  const match = /\/\*\*([\s\S]*?)\*\//.exec(source);
  if (!match?.[1]) return '';
  return match[1].split('\n').map(line => line.replace(/^\s*\* ?/, '')).join('\n').trim();
}

function fail(script: string, message: string, usage: string): never {
  process.stderr.write(`${script}: ${message}\n\n${usage}\n`);
  process.exit(2);
}

export function benchArgs(scriptUrl: string, spec: FlagSpec, argv: readonly string[] = process.argv.slice(2)): BenchArgs {
  const script = new URL(scriptUrl).pathname.split('/').slice(-2).join('/');
  const usage = usageOf(scriptUrl);
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const name of spec.values ?? []) options[name] = { type: 'string' };
  for (const name of spec.booleans ?? []) options[name] = { type: 'boolean' };
  let parsed: Record<string, string | boolean | undefined>;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    fail(script, (err as Error).message, usage);
  }
  if (parsed['help']) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const text = (name: string, fallback: string): string => {
    if (!(name in options)) throw new Error(`bench flag --${name} is not declared`);
    const given = parsed[name];
    return typeof given === 'string' ? given : fallback;
  };
  return {
    raw: argv,
    flag(name) {
      if (!(name in options)) throw new Error(`bench flag --${name} is not declared`);
      return parsed[name] === true;
    },
    int(name, fallback) {
      const value = text(name, String(fallback));
      const n = Number(value);
      if (value.trim() === '' || !Number.isInteger(n) || n < 0) fail(script, `--${name} needs a non-negative integer, got "${value}"`, usage);
      return n;
    },
    ints(name, fallback) {
      const value = text(name, fallback);
      const list = value.split(',').map(s => Number(s.trim()));
      if (list.length === 0 || list.some(n => !Number.isInteger(n) || n <= 0)) fail(script, `--${name} needs a comma-separated list of positive integers, got "${value}"`, usage);
      return list;
    },
    str(name) {
      if (!(name in options)) throw new Error(`bench flag --${name} is not declared`);
      const given = parsed[name];
      return typeof given === 'string' ? given : undefined;
    },
  };
}
