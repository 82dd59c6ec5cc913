import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { z } from 'zod';
import { loadConfig } from '../../../config/index.js';
import { readEnvironmentsFile } from '../../../src/datasets/environments-file.js';
import { loadModelScript } from '../../../src/model-server/fixtures.js';
import { readJsonFile, readJsonFileAsText, readJsonlFile } from '../../../src/sandbox/files.js';
import { readDescriptionsFile, readTasksFile } from '../../../src/synthesis/inputs.js';

/** What Windows editors and Excel put at the start of a UTF-8 file. */
const BOM = '\uFEFF';

describe("a UTF-8 byte order mark at the start of a user's file is not part of its first line", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-bom-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));
  const file = async (name: string, text: string) => {
    const path = join(dir, name);
    await writeFile(path, BOM + text);
    return path;
  };

  it('synth --tasks and --descriptions, scenarios --environments: line 1 is read', async () => {
    const tasks = await readTasksFile(await file('tasks.jsonl', '{"task":"book a flight"}\n{"task":"cancel it"}\n'));
    expect(tasks.problems).to.deep.equal([]);
    expect(tasks.items.map(t => t.task)).to.deep.equal(['book a flight', 'cancel it']);
    const descriptions = await readDescriptionsFile(await file('d.jsonl', '{"summary":"a","introduction":"b"}\n'));
    expect(descriptions.problems).to.deep.equal([]);
    expect(descriptions.items).to.deep.equal([{ summary: 'a', introduction: 'b' }]);
    const envs = await readEnvironmentsFile(await file('environments.jsonl', '{"id":"e1","status":"rejected"}\n'), 'r');
    expect(envs.problems.filter(p => p.line === 1 && /JSON/.test(p.problem))).to.deep.equal([]);
  });

  it('sandbox run / check files: JSON and JSON Lines', async () => {
    expect(await readJsonFile(await file('state.json', '{"a":1}'))).to.deep.equal({ a: 1 });
    expect((await readJsonFileAsText(await file('state2.json', '{"a":1.0}'))).json).to.equal('{"a":1.0}');
    expect(await readJsonlFile(await file('calls.jsonl', '{"tool":"t","arguments":{}}\n'), z.object({ tool: z.string() }))).to.deep.equal([{ tool: 't' }]);
  });

  it('model-server --script (JSON and YAML) and ENVFLEET_MODELS_FILE', async () => {
    const json = await loadModelScript(await file('script.json', '{"rules":[{"respond":{"content":"hi"}}]}'));
    expect(json.rules).to.have.length(1);
    const yaml = await loadModelScript(await file('script.yaml', 'rules:\n  - respond:\n      content: hi\n'));
    expect(yaml.rules).to.have.length(1);
    const config = loadConfig({ ENVFLEET_MODELS_FILE: 'models.json' }, { readFile: () => `${BOM}{"profiles":{"rollout.policy":{"model":"m-bom"}}}` });
    expect(config.profiles['rollout.policy'].model).to.equal('m-bom');
  });
});
