import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startServing, type Serving } from '../../cli/serve.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { buildDemoRun, ENVFLEET_BIN, silentLogger, useFleet, type Fleet } from './integration.js';

export interface Reply {
  readonly status: number;
  readonly text: string;
  readonly json: Record<string, unknown>;
  readonly headers: Headers;
}

/** A NeMo Gym-like client: it sends back only the cookies of the latest response (none when that response set none). */
export class LatestCookieClient {
  cookie: string | null = null;
  constructor(
    readonly base: string,
    readonly token: string | null = null,
  ) {}
  async send(method: string, path: string, body?: unknown, raw = false): Promise<Reply> {
    const res = await fetch(this.base + path, {
      method,
      headers: { 'content-type': 'application/json', ...(this.cookie ? { cookie: this.cookie } : {}), ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) },
      ...(body === undefined ? {} : { body: raw ? (body as string) : JSON.stringify(body) }),
    });
    const set = res.headers.getSetCookie();
    this.cookie = set.length ? set.map(c => c.split(';')[0]!).join('; ') : null;
    const text = await res.text();
    return { status: res.status, text, json: JSON.parse(text) as Record<string, unknown>, headers: res.headers };
  }
  post(path: string, body?: unknown, raw = false) {
    return this.send('POST', path, body, raw);
  }
}

/** The `{"error": {code, message, …}}` of a NeMo Gym style reply. */
export const errorOf = (r: Reply) => r.json['error'] as { code: string; message: string; [k: string]: unknown };

/** Opens a new MCP client and transport, runs fn, closes them: a client that reconnects for every call. */
export async function withMcp<T>(url: string, fn: (client: Client) => Promise<T>, token: string | null = null): Promise<T> {
  const client = new Client({ name: 'envfleet-test', version: '0.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), token ? { requestInit: { headers: { authorization: `Bearer ${token}` } } } : {});
  await client.connect(transport);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** `envfleet sandbox check` (the command a user runs) on a scenario's checklist and a final state (and the episode, for episode checks): its reward and each check's verdict. */
export async function cliCheck(scenario: ScenarioRecord, finalState: unknown, episode?: { readonly messages: readonly unknown[]; readonly turnStates?: readonly unknown[] | null }): Promise<{ reward: number; passed: boolean[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-cli-check-'));
  try {
    await writeFile(join(dir, 'c.json'), JSON.stringify(scenario.checklist));
    await writeFile(join(dir, 'i.json'), JSON.stringify(scenario.initialState));
    await writeFile(join(dir, 'f.json'), JSON.stringify(finalState));
    if (episode) await writeFile(join(dir, 'e.json'), JSON.stringify(episode));
    const { stdout } = await promisify(execFile)(process.execPath, [
      ENVFLEET_BIN, 'sandbox', 'check', join(dir, 'c.json'), '--initial', join(dir, 'i.json'), '--final', join(dir, 'f.json'), ...(episode ? ['--episode', join(dir, 'e.json')] : []),
    ]);
    const out = JSON.parse(stdout) as { reward: number; results: { passed: boolean }[] };
    return { reward: out.reward, passed: out.results.map(r => r.passed) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** What a suite serving the demo run gets. */
export interface ServedDemoRun {
  readonly f: Fleet;
  readonly serving: Serving;
  /** The run's ready scenarios. */
  readonly scenarios: ScenarioRecord[];
}

/**
 * Registers the hooks of a suite that serves the demo run: a fleet (`useFleet('suite')`), the demo run
 * `runId` built in it, `prepare` (e.g. an export), then `envfleet serve` in this process; `ready` gets
 * them before the first test. The server is closed after the suite.
 */
export function useServedDemoRun(runId: string, maxSessions: number, ready: (run: ServedDemoRun) => void, prepare?: (f: Fleet) => Promise<void>): void {
  const fleet = useFleet('suite');
  let serving: Serving | undefined;
  before(async function () {
    const f = await fleet();
    const scenarios = await buildDemoRun(f, runId);
    await prepare?.(f);
    serving = await startServing(f.config, silentLogger(), { run: runId, port: 0, host: '127.0.0.1', maxSessions, idleTimeout: 600_000 });
    ready({ f, serving, scenarios });
  });
  after(async () => {
    await serving?.close();
  });
}

/** The scenario of the demo run whose task mentions `needle`. */
export const scenarioWith = (scenarios: readonly ScenarioRecord[], needle: string): ScenarioRecord => {
  const s = scenarios.find(x => x.task?.includes(needle));
  if (!s) throw new Error(`no ready demo scenario mentions "${needle}"`);
  return s;
};
