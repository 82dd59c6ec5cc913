import { createHash } from 'node:crypto';
import { z } from 'zod';
import { EnvironmentLine, environmentRecordFromLine } from '../datasets/environments-file.js';
import { ScenarioLine, scenarioRecordFromLine } from '../datasets/scenarios-file.js';
import { InputFileError } from '../sandbox/files.js';
import { utf8Lines } from '../util/utf8.js';
import type { SandboxLimits } from '../sandbox/limits.js';
import type { LineProblem } from '../synthesis/inputs.js';
import type { EnvironmentRecord } from '../synthesis/types.js';
import { EnvServerError, shownId } from './errors.js';
import type { ScenarioSource, ServedScenario } from './sessions.js';

/** The two files of an export (`envfleet export --run NAME --out DIR`) a server reads its scenarios from. */
export interface ExportPaths {
  /** DIR/environments.jsonl */
  readonly environments: string;
  /** DIR/scenarios.jsonl */
  readonly scenarios: string;
}

export interface ExportScenarioSource {
  readonly source: ScenarioSource;
  /** The run the scenarios were made in (their lines' `lineage.runId`), or null when they do not name one run. */
  readonly runName: string | null;
  /** Scenarios that can be served: ready, and their environment kept with its code in the environments file. */
  readonly ready: number;
  /** Scenario lines that cannot be served (their environment is missing or not kept): SCENARIO_NOT_READY says why. */
  readonly unservable: number;
  /** Kept environments in the environments file. */
  readonly environments: number;
  /**
   * What is served, as a digest of the served lines' bytes (every scenario line, each kept environment's line, in
   * file order) and the limits: two processes serve the same only when this is equal (the session directory sends
   * a new session to a peer only then), whatever the run name their lines carry.
   */
  readonly content: string;
}

/** Bad lines reported at once before a file is given up on. */
const MAX_PROBLEMS = 10;

/** What every line has, whatever its status: enough to know a rejected or failed environment by its id. */
const AnyEnvironmentLine = z.object({ id: z.string().min(1), status: z.string().optional() });

const issuesOf = (error: z.ZodError): string => error.issues.map(x => `${x.path.join('.') || '(line)'}: ${x.message}`).join('; ');

const hasKeys = (json: unknown, ...keys: string[]): boolean => typeof json === 'object' && json !== null && !Array.isArray(json) && keys.every(k => Object.hasOwn(json, k));

/** Why a line looks like it belongs to another file of the export, or ''. */
function wrongFileHint(kind: 'environments' | 'scenarios', json: unknown): string {
  if (kind === 'environments' && hasKeys(json, 'environmentId', 'initialState')) return ' (this is a line of scenarios.jsonl: pass that file with --scenarios, and environments.jsonl with --environments)';
  if (kind === 'scenarios' && hasKeys(json, 'reason') && !hasKeys(json, 'initialState')) return ' (this is a line of scenarios-dropped.jsonl: serve scenarios.jsonl, the ready scenarios)';
  if (kind === 'scenarios' && hasKeys(json, 'className') && !hasKeys(json, 'environmentId')) return ' (this is a line of environments.jsonl: pass that file with --environments, and scenarios.jsonl with --scenarios)';
  return '';
}

/**
 * Calls `fn` with each non-blank line of a JSONL file, parsed, and its number (from 1), reading line
 * by line on the bytes (utf8Lines): a line may be longer than any read, and a line that is not UTF-8 is a bad
 * line (decoded, its accented letters would have been served as U+FFFD). `fn` returns a problem or null; a line
 * that is not JSON is one. Throws an InputFileError naming the file when it cannot be read, is UTF-16, or when
 * lines were bad (up to MAX_PROBLEMS of them, each with its number).
 */
async function eachJsonLine(path: string, kind: 'environments' | 'scenarios', fn: (json: unknown, line: number, text: string) => string | null): Promise<void> {
  const what = `${kind}.jsonl`;
  const problems: LineProblem[] = [];
  let n = 0;
  try {
    for await (const read of utf8Lines(path)) {
      n = read.line;
      if ('problem' in read) {
        if (read.wholeFile) throw new InputFileError(`${path}: ${read.problem} (one JSON object per line, as envfleet export writes it) and run the command again`);
        problems.push({ line: read.line, problem: read.problem });
        if (problems.length >= MAX_PROBLEMS) break;
        continue;
      }
      const text = read.text;
      if (!text.trim()) continue;
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (err) {
        problems.push({ line: n, problem: `not valid JSON (${(err as Error).message})` });
        if (problems.length >= MAX_PROBLEMS) break;
        continue;
      }
      const problem = fn(json, n, text);
      if (problem !== null) {
        problems.push({ line: n, problem: problem + wrongFileHint(kind, json) });
        if (problems.length >= MAX_PROBLEMS) break;
      }
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!code || err instanceof InputFileError) throw err;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw InputFileError.unreadable(path, `${code}: ${why}`, `${kind} file`, `; pass the ${what} that envfleet export --run NAME --out DIR wrote`);
  }
  if (problems.length) {
    const stopped = problems.length >= MAX_PROBLEMS ? ` (stopped reading at line ${n} after ${MAX_PROBLEMS} bad lines)` : '';
    throw new InputFileError(
      `${path}: ${problems.length === 1 ? 'a bad line' : `${problems.length} bad lines`}${stopped}: ${problems.map(p => `line ${p.line}: ${p.problem}`).join('; ')}. ` +
        `Expected the ${what} of an export, one JSON object per line as envfleet export writes it (docs/formats.md); fix or remove these lines, or export the run again.`,
    );
  }
}

/** The environments of an environments.jsonl: kept ones in full, the others by id and status. */
async function readEnvironments(path: string) {
  const kept = new Map<string, { env: EnvironmentRecord; line: number }>();
  const notKept = new Map<string, { status: string; line: number }>();
  const digest = createHash('sha256');
  await eachJsonLine(path, 'environments', (json, line, text) => {
    const any = AnyEnvironmentLine.safeParse(json);
    if (!any.success) return issuesOf(any.error);
    const { id, status } = any.data;
    const earlier = kept.get(id)?.line ?? notKept.get(id)?.line;
    if (earlier !== undefined) return `environment id ${id} is on line ${earlier} too: one line per environment`;
    // Rejected and failed environments are in the export too, some without code: not served, not checked.
    if (status !== undefined && status !== 'kept') {
      notKept.set(id, { status, line });
      return null;
    }
    const full = EnvironmentLine.safeParse(json);
    if (!full.success) return `kept environment ${id}: ${issuesOf(full.error)}`;
    const runId = typeof full.data.lineage?.['runId'] === 'string' ? full.data.lineage['runId'] : 'export';
    kept.set(id, { env: environmentRecordFromLine(full.data, runId), line });
    digest.update(`${text.length}\n${text}\n`);
    return null;
  });
  return { kept, notKept, digest };
}

/**
 * A scenario source that serves the scenarios of an export (`envfleet serve --environments FILE
 * --scenarios FILE`) instead of a run in Redis. Both files are read line by line and checked now: a
 * file that cannot be read or has bad lines throws an InputFileError naming the file, the lines and
 * the problems. An export carries no sandbox limits: every scenario is served with `limits` (the
 * serving process's configuration, `config.sandbox`, as a run freezes them at submission).
 *
 * Scenarios are served when ready with their environment kept (with its code) in the environments
 * file; asking for another id is UNKNOWN_SCENARIO, for a scenario whose environment is missing or not
 * kept SCENARIO_NOT_READY, saying why.
 */
export async function loadExportScenarioSource(paths: ExportPaths, limits: SandboxLimits): Promise<ExportScenarioSource> {
  const { kept, notKept, digest } = await readEnvironments(paths.environments);
  const served = new Map<string, ServedScenario>();
  const unservable = new Map<string, string>();
  const seen = new Map<string, number>();
  const runs = new Set<string>();
  const frozen: SandboxLimits = Object.freeze({ ...limits });

  digest.update(`limits ${JSON.stringify(frozen)}\n`);
  await eachJsonLine(paths.scenarios, 'scenarios', (json, line, text) => {
    digest.update(`${text.length}\n${text}\n`);
    const parsed = ScenarioLine.safeParse(json);
    if (!parsed.success) return issuesOf(parsed.error);
    const s = parsed.data;
    const earlier = seen.get(s.id);
    if (earlier !== undefined) return `scenario id ${s.id} is on line ${earlier} too: one line per scenario`;
    seen.set(s.id, line);
    if (s.lineage?.runId) runs.add(s.lineage.runId);
    const at = `${paths.scenarios} line ${line}`;
    const env = kept.get(s.environmentId);
    const other = notKept.get(s.environmentId);
    if (s.status !== undefined && s.status !== 'ready') {
      unservable.set(s.id, `scenario "${s.id}" is ${s.status} in ${at}, not ready: serve only ready scenarios (scenarios.jsonl of envfleet export holds only those)`);
    } else if (other) {
      unservable.set(s.id, `the environment ${s.environmentId} of scenario "${s.id}" is ${other.status} in ${paths.environments} (line ${other.line}), not kept: only the scenarios of kept environments are served`);
    } else if (!env) {
      unservable.set(s.id, `the environment ${s.environmentId} of scenario "${s.id}" (${at}) is not in ${paths.environments}: pass the environments.jsonl of the same export as the scenarios`);
    } else {
      served.set(s.id, { scenario: scenarioRecordFromLine(s, env.env.runId), env: env.env, limits: frozen });
    }
    return null;
  });

  const runName = runs.size === 1 ? [...runs][0]! : null;
  return {
    runName,
    content: `export:sha256:${digest.digest('hex')}`,
    ready: served.size,
    unservable: unservable.size,
    environments: kept.size,
    source: {
      scenario(scenarioId) {
        const hit = served.get(scenarioId);
        if (hit) return Promise.resolve(hit);
        const why = unservable.get(scenarioId);
        if (why !== undefined) return Promise.reject(new EnvServerError('SCENARIO_NOT_READY', why));
        return Promise.reject(
          new EnvServerError('UNKNOWN_SCENARIO', `no scenario ${shownId(scenarioId)} in ${paths.scenarios}; use a scenario_id from the same export (scenarios.jsonl id, rl-verl.json extra_info.scenario_id, rl-prompts.jsonl scenario_id)`),
        );
      },
    },
  };
}
