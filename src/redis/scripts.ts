import { createHash } from 'node:crypto';
import type { Redis } from './connection.js';

/** What a script is given after its keys. */
export type ScriptArg = string | number | Buffer;

/**
 * A Lua script run by its SHA: `script(redis, keys, args)`. It runs as an ioredis command of the
 * connection (`defineCommand`), which sends EVALSHA and falls back to EVAL by itself: the full text
 * goes once per socket (on a Redis Cluster, once per node's socket), and again only when Redis answers
 * NOSCRIPT (a restarted Redis, SCRIPT FLUSH).
 *
 * `createRedisConnection` defines every script made so far on each connection it creates, so that an
 * auto-pipelined connection (the worker's) batches them like any other command. On another
 * connection a script is defined at its first call.
 */
export interface RedisScript {
  (redis: Redis, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown>;
  readonly sha: string;
  readonly lua: string;
  readonly numberOfKeys: number;
  /** The name of the command on a connection. */
  readonly command: string;
}

type ScriptCommand = (...args: ScriptArg[]) => Promise<unknown>;
interface ScriptDefinition {
  readonly lua: string;
  readonly numberOfKeys: number;
}

/** Every script made with `redisScript`, by command name (ioredis's `scripts` option takes this). */
const DEFINED = new Map<string, ScriptDefinition>();
/** Scripts that carry large values, by command name: written as they come, never joined into an auto-pipelined batch. */
const UNBATCHED = new Set<string>();

/**
 * The commands an auto-pipelined connection sends on their own (ioredis's `autoPipeliningIgnoredCommands`):
 * a batch is written as one string or buffer built by concatenation, so a 100 KB trajectory in it is copied
 * with every other command of the tick, and the batch costs several times what the same commands cost
 * written one by one (bench/redis-large-writes.ts; the caller passes a large value as a Buffer, which is
 * then written as it is). A command sent on its own goes out before the batched commands of
 * its tick; a caller that needs an order awaits.
 */
export function unbatchedCommands(): string[] {
  return [...UNBATCHED];
}

/** The scripts made so far, as ioredis's `scripts` connection option. */
export function scriptDefinitions(): Record<string, ScriptDefinition> {
  return Object.fromEntries(DEFINED);
}

/** An argument longer than this (UTF-16 characters of a string, bytes of a Buffer) is large. */
export const LARGE_VALUE_CHARS = 16_384;

const isLarge = (a: ScriptArg) => typeof a !== 'number' && a.length > LARGE_VALUE_CHARS;

/**
 * A script with `numberOfKeys` keys; `label` only makes the command's name readable. `largeValues`: its
 * arguments may be large (a trajectory document, an embeddings answer). A call with a large argument then
 * goes as a second command of the same script, which an auto-pipelined connection sends on its own
 * (`unbatchedCommands`), with its large strings as UTF-8 bytes: ioredis writes a Buffer as it is instead of
 * building one string of the whole command (bench/redis-large-writes.ts: 0.19 ms a 97 KB document on its own
 * as a Buffer, 0.5–0.9 ms as a string in an auto-pipelined batch, 1.1–1.3 ms as a string on its own with
 * non-ASCII text); Redis gets the same bytes either way. A call with only small arguments joins the batch.
 */
export function redisScript(label: string, lua: string, numberOfKeys: number, options: { readonly largeValues?: boolean } = {}): RedisScript {
  const sha = createHash('sha1').update(lua).digest('hex');
  // The SHA in the name: two scripts (or two versions of one) never share a command.
  const command = `envfleet_${label.replace(/\W/g, '_')}_${sha.slice(0, 12)}`;
  const largeCommand = `${command}_large`;
  DEFINED.set(command, { lua, numberOfKeys });
  if (options.largeValues) {
    DEFINED.set(largeCommand, { lua, numberOfKeys });
    UNBATCHED.add(largeCommand);
  }
  const run = (redis: Redis, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> => {
    if (keys.length !== numberOfKeys) throw new Error(`script ${label}: ${keys.length} keys given, it takes ${numberOfKeys}`);
    const large = options.largeValues === true && args.some(isLarge);
    const name = large ? largeCommand : command;
    if (!Object.hasOwn(redis, name)) defineLate(redis, name, { lua, numberOfKeys });
    const sent = large ? args.map(a => (typeof a === 'string' && a.length > LARGE_VALUE_CHARS ? Buffer.from(a, 'utf8') : a)) : args;
    return (redis as unknown as Record<string, ScriptCommand>)[name]!(...keys, ...sent);
  };
  return Object.assign(run, { sha, lua, numberOfKeys, command });
}

/**
 * Defines a script on a connection that did not have it from its start. An auto-pipelined connection
 * copies its commands into each batch when the batch begins (as ioredis's Pipeline does with the
 * scripts defined before it), so a batch begun before the definition and not yet sent gets the command
 * here: the script's call joins it, in order with the commands before and after it.
 */
function defineLate(redis: Redis, command: string, definition: ScriptDefinition): void {
  redis.defineCommand(command, definition);
  const batches = (redis as unknown as { _autoPipelines?: Map<string, Record<string, unknown>> })._autoPipelines;
  for (const batch of batches?.values() ?? []) batch[command] = (redis as unknown as Record<string, unknown>)[command];
}
