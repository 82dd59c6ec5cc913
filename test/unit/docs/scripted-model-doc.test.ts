import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { parse as parseYaml } from 'yaml';
import { MODEL_STAGE_NAMES } from '../../../config/model-stages.js';
import { PIPELINE_STAGES, RUN_COUNTERS } from '../../../queues/pipeline.js';
import { ScriptRule, ScriptedFault, ScriptedResponse, loadModelScript, parseModelScript, startModelServer, type ModelScript } from '../../../src/model-server/index.js';
import { stageGlobToRegExp } from '../../../src/model-server/rules.js';

/**
 * Keeps docs/scripted-model.md true: its example scripts load, every stage it or the demo fixtures name exists,
 * every rule and response field is in its tables, and `matchLast` does what its row says.
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DOC = readFileSync(`${ROOT}docs/scripted-model.md`, 'utf8');
const STAGES_DOC = readFileSync(`${ROOT}docs/stages.md`, 'utf8');

/** Stage headers that are not model stages: `envfleet doctor` sends `doctor` (cli/doctor.ts; docs/stages.md says so). */
const OTHER_HEADERS = ['doctor'];
const HEADERS = [...MODEL_STAGE_NAMES, ...OTHER_HEADERS];

/** The stages a rule's `stage` (an exact name or a glob) selects. */
const selected = (stage: string) => HEADERS.filter(h => stageGlobToRegExp(stage).test(h));

/** The example scripts of the doc: its yaml and json blocks that have rules. */
function exampleScripts(): unknown[] {
  const out: unknown[] = [];
  for (const [, lang, text] of DOC.matchAll(/```(yaml|json)\n([\s\S]*?)```/g)) {
    let value: unknown;
    try {
      value = lang === 'json' ? JSON.parse(text!) : parseYaml(text!);
    } catch {
      continue;
    }
    if (value && typeof value === 'object' && 'rules' in value) out.push(value);
  }
  return out;
}

describe('docs/scripted-model.md', () => {
  it('has example scripts that load, whose rules name stages that exist', () => {
    const scripts = exampleScripts();
    expect(scripts.length).to.be.greaterThanOrEqual(2);
    for (const value of scripts) {
      const script = parseModelScript(value, 'docs/scripted-model.md');
      for (const rule of script.rules ?? []) if (rule.stage !== undefined) expect(selected(rule.stage), `stage ${rule.stage}`).to.not.be.empty;
    }
  });

  it('names only stages that exist (model stages, pipeline stages, run counters, or globs of them), here and in docs/stages.md', () => {
    const known = new Set<string>([...HEADERS, ...PIPELINE_STAGES, ...Object.keys(RUN_COUNTERS)]);
    for (const [name, doc] of [['scripted-model.md', DOC], ['stages.md', STAGES_DOC]] as const) {
      const named = [...doc.matchAll(/`(?:stage:\s*)?((?:mine|skeleton|check|scenario|rollout)\.[\w.*-]+|\*\.[\w.-]+)`/g)].map(m => m[1]!);
      expect(named.length, name).to.be.greaterThan(3);
      for (const stage of named) {
        const ok = stage.includes('*') ? [...known].some(k => stageGlobToRegExp(stage).test(k)) : known.has(stage);
        expect(ok, `${name} names ${stage}, which is no stage`).to.equal(true);
      }
    }
  });

  it('documents every rule field, response field and fault type in its tables', () => {
    for (const key of Object.keys(ScriptRule.shape)) expect(DOC, `rule field ${key}`).to.include(`| \`${key}\` |`);
    for (const key of Object.keys(ScriptedResponse.shape)) expect(DOC, `response field ${key}`).to.include(`| \`${key}\` |`);
    for (const option of ScriptedFault.options) expect(DOC, `fault ${option.shape.type.value}`).to.include(`| \`${option.shape.type.value}\` |`);
  });

  it('matchLast tests "ROLE: CONTENT" of the last message, tool calls appended, with only the i flag', async () => {
    const server = await startModelServer({
      script: parseModelScript({
        rules: [
          { name: 'tool-ok', matchLast: '^tool: .*"success":true', respond: { content: 'a' } },
          { name: 'greeting', matchLast: '^user: \\[agent\\] Hi!', respond: { content: 'b' } },
          { name: 'call', matchLast: '^assistant:  tool_call get_book \\{"id":1\\}$', respond: { content: 'c' } },
          { name: 'one-line', matchLast: '^user: first.*second', respond: { content: 'd' } },
          { name: 'any', respond: { content: 'e' } },
        ],
      } satisfies ModelScript),
    });
    try {
      const ask = async (messages: unknown[]) => {
        const res = await fetch(`${server.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'scripted', messages }) });
        expect(res.status).to.equal(200);
        return server.log().at(-1)?.rule;
      };
      expect(await ask([{ role: 'user', content: 'x' }, { role: 'tool', tool_call_id: 'c1', content: '{"success":true,"data":1}' }])).to.equal('tool-ok');
      expect(await ask([{ role: 'system', content: 'play a user' }, { role: 'user', content: '[Agent] Hi! How can I help you today?' }])).to.equal('greeting');
      expect(await ask([{ role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_book', arguments: '{"id":1}' } }] }])).to.equal('call');
      // `.` does not cross a newline; the last user message is not the last message once a tool result follows.
      expect(await ask([{ role: 'user', content: 'first\nsecond' }])).to.equal('any');
      expect(await ask([{ role: 'user', content: '[Agent] Hi!' }, { role: 'tool', tool_call_id: 'c1', content: '{"success":false}' }])).to.equal('any');
    } finally {
      await server.close();
    }
  });
});

describe('fixtures/demo', () => {
  it('names only stages that exist', async () => {
    const script = await loadModelScript(`${ROOT}fixtures/demo`);
    const stages = new Set((script.rules ?? []).flatMap(r => (r.stage === undefined ? [] : [r.stage])));
    expect(stages.size).to.be.greaterThan(10);
    for (const stage of stages) expect(selected(stage), `stage ${stage}`).to.not.be.empty;
  });
});
