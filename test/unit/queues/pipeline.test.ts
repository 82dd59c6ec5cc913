import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { z } from 'zod';
import { MODEL_STAGE_NAMES } from '../../../config/index.js';
import { definePipeline } from '../../../queues/define-pipeline.js';
import { ITEMS, PIPELINE, PIPELINE_STAGES, RUN_COUNTERS, STAGES, isPipelineStage } from '../../../queues/pipeline.js';
import { ERROR_CODES } from '../../../src/errors.js';
import { PROCESSORS } from '../../../workers/processors.js';

describe('the pipeline declaration', () => {
  it('names every stage once, with a processor and an item kind for each', () => {
    expect(PIPELINE_STAGES).to.have.length(new Set(PIPELINE_STAGES).size);
    expect(Object.keys(PROCESSORS).sort()).to.deep.equal([...PIPELINE_STAGES].sort());
    for (const s of PIPELINE_STAGES) expect(ITEMS, s).to.have.property(STAGES[s].item.kind);
  });

  it('draws the graph of the method: mining fans in at dedup, methods at assemble, samples at the group; verdict loops back to probe', () => {
    const edges = PIPELINE.edges().map(e => `${e.from} ${e.kind} ${e.to}`);
    expect(edges).to.include.members([
      '(tasks) fan-out mine.judge',
      'mine.judge flow-child mine.topic',
      'mine.topic fan-in mine.dedup',
      'mine.dedup fan-out skeleton.state',
      'skeleton.state next skeleton.operations',
      'skeleton.operations fan-out skeleton.method',
      'skeleton.method fan-in skeleton.assemble',
      'check.verdict next check.probe',
      '(scenarios) fan-out scenario.state',
      'scenario.check next scenario.verify',
      '(rollouts) fan-out rollout.run',
      'rollout.run fan-in rollout.group',
    ]);
  });

  it('feeds each stage data its schema accepts', () => {
    const feeds = PIPELINE.feeds;
    const parse = (stage: keyof typeof STAGES, data: unknown) => PIPELINE.queues[stage].parseData(data);
    const env = { runId: 'r', envId: 'env-1' };
    const methods = feeds['skeleton.operations']![0]!;
    const flow = 'fanIn' in methods ? methods.data(env, { ok: true, operations: ['a', 'b'] }) : null;
    expect(parse('skeleton.assemble', flow!.parent)).to.deep.equal(env);
    expect(flow!.children.map(c => parse('skeleton.method', c))).to.deep.equal([{ ...env, op: 'a' }, { ...env, op: 'b' }]);
    const probe = feeds['check.config']![0]!;
    expect('next' in probe && parse(probe.next, probe.data(env, { ok: true }))).to.deep.equal({ ...env, round: 1 });
    const again = feeds['check.verdict']![0]!;
    expect('next' in again && again.data({ ...env, round: 1 }, { ok: true, nextRound: 2 })).to.deep.equal({ ...env, round: 2 });
    expect('next' in again && again.data({ ...env, round: 2 }, { ok: false })).to.equal(null);
    const entry = PIPELINE.entries.scenarios.feed;
    const states = 'each' in entry ? entry.data({ runId: 'r', envIds: ['e1', 'e2'], perEnv: 2 }, null) : [];
    expect(states.map(d => parse('scenario.state', d))).to.have.length(4);
  });

  it('attributes every model stage to exactly one pipeline stage (tokens and cost per stage in status)', () => {
    const owners = new Map<string, string[]>();
    for (const s of PIPELINE_STAGES) for (const m of STAGES[s].models ?? []) owners.set(m, [...(owners.get(m) ?? []), s]);
    for (const m of MODEL_STAGE_NAMES) expect(owners.get(m) ?? [], m).to.have.length(1);
  });

  it('names only known codes as the ways a stage ends an item', () => {
    for (const s of PIPELINE_STAGES) for (const code of STAGES[s].ends ?? []) expect(ERROR_CODES, `${s}: ${code}`).to.have.property(code);
  });

  it('classifies a stage’s counters: passed, left (also every failed:/dropped: code), measures (with * suffixes), undeclared', () => {
    expect(PIPELINE.classify('check.verdict', 'kept-after-repair')).to.equal('passed');
    expect(PIPELINE.classify('check.verdict', 'rejected')).to.equal('left');
    expect(PIPELINE.classify('check.verdict', 'repair-round')).to.equal('measure');
    expect(PIPELINE.classify('check.probe', 'round-7')).to.equal('measure');
    expect(PIPELINE.classify('skeleton.state', 'failed:MODEL_AUTH')).to.equal('left');
    expect(PIPELINE.classify('scenario.task', 'dropped:DUPLICATE_TASK')).to.equal('left');
    expect(PIPELINE.classify('rollout.run', 'user-stopped')).to.equal('passed');
    expect(PIPELINE.classify('mine.judge', 'maybe')).to.equal('undeclared');
  });

  it('refuses a declaration whose edges name an undeclared stage, or with a stage no entry reaches', () => {
    const data = z.strictObject({ runId: z.string() });
    const spec = { description: 'x', data, item: { kind: 'run', id: (d: { runId: string }) => d.runId }, onFailure: 'ends-item' as const, funnel: { passed: ['done'] } };
    expect(() =>
      definePipeline<{ a: typeof spec; b: typeof spec }, { a: null; b: null }, { go: { runId: string } }>({
        stages: { a: spec, b: spec },
        feeds: {},
        entries: { go: { command: 'go', feed: { next: 'a', data: i => i } } },
      }),
    ).to.throw(/no entry point leads to b/);
    expect(() =>
      definePipeline<{ a: typeof spec }, { a: null }, { go: { runId: string } }>({
        stages: { a: spec },
        feeds: { a: [{ next: 'nope' as 'a', data: d => d }] },
        entries: { go: { command: 'go', feed: { next: 'a', data: i => i } } },
      }),
    ).to.throw(/a → nope names a stage that is not declared/);
  });

  it('declares every counter the stages of src/ record (a stage may only count outcomes its declaration names)', () => {
    const src = fileURLToPath(new URL('../../../src/', import.meta.url));
    const files = (readdirSync(src, { recursive: true }) as string[]).filter(f => f.endsWith('.ts'));
    const declared = (stage: string) => {
      const f = (STAGES as Record<string, { funnel: { passed: readonly string[]; left?: readonly string[]; measures?: readonly string[] } }>)[stage]!.funnel;
      return [...f.passed, ...(f.left ?? []), ...(f.measures ?? []), 'failed:*', 'dropped:*'];
    };
    let checked = 0;
    for (const file of files) {
      const text = readFileSync(join(src, file), 'utf8');
      // count(runId, 'stage', OUTCOME[, n]) and { stage: 'stage', outcome: OUTCOME, n }
      for (const m of text.matchAll(/count\(runId, '([\w.]+)', ([^;]+?)\);|\{ stage: '([\w.]+)', outcome: ([^,]+),/g)) {
        const stage = m[1] ?? m[3]!;
        const outcome = m[2] ?? m[4]!;
        expect(isPipelineStage(stage) || Object.hasOwn(RUN_COUNTERS, stage), `${file}: counter group "${stage}" is neither a stage nor a run counter`).to.equal(true);
        if (!isPipelineStage(stage)) continue;
        // Every literal the outcome expression may produce ('x', `round-${n}`) must match a declared name.
        for (const [, quoted, template] of outcome.matchAll(/'([^']+)'|`([^`]+)`/g)) {
          const literal = quoted ?? template!;
          if (/^[A-Z_]+$/.test(literal) && !template) continue; // a code argument, not an outcome
          const pattern = new RegExp(`^${literal.split(/\$\{[^}]+\}/).map(p => p.replace(/[.*+?^()|[\]\\]/g, '\\$&')).join('.*')}$`);
          const names = declared(stage);
          const ok = names.some(n => pattern.test(n) || (n.endsWith('*') && literal.startsWith(n.slice(0, -1))));
          expect(ok, `${file}: ${stage} counts "${literal}", which its declaration does not name (${names.join(', ')})`).to.equal(true);
          checked += 1;
        }
      }
    }
    expect(checked).to.be.greaterThan(20);
  });
});
