import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { ENV_VARS, ENV_VAR_NAMES, loadConfig, MODEL_STAGE_NAMES } from '../../../config/index.js';
import {
  CONFIGURATION_DOC_PATH,
  ENV_EXAMPLE_PATH,
  generatedFiles,
  MODELS_FILE_EXAMPLE,
} from '../../../scripts/gen-env-example.js';

interface EnvEntry {
  readonly name: string;
  readonly value: string;
  /** The comment line right above the assignment, without `# `; null if there is none. */
  readonly comment: string | null;
  readonly line: number;
}

/** A strict dotenv reader: `NAME=value` lines, `#` comments, blank lines; anything else is reported. */
function parseDotenv(text: string): { entries: EnvEntry[]; malformed: string[] } {
  const entries: EnvEntry[] = [];
  const malformed: string[] = [];
  let previous: string | null = null;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trimEnd();
    if (line === '') {
      previous = null;
      return;
    }
    if (line.startsWith('#')) {
      previous = line.replace(/^# ?/, '');
      return;
    }
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match) {
      malformed.push(`line ${index + 1}: ${line}`);
      previous = null;
      return;
    }
    let value = match[2]!;
    if (value.startsWith('"')) value = JSON.parse(value) as string;
    entries.push({ name: match[1]!, value, comment: previous, line: index + 1 });
    previous = null;
  });
  return { entries, malformed };
}

const text = readFileSync(ENV_EXAMPLE_PATH, 'utf8');
const { entries, malformed } = parseDotenv(text);
const values = Object.fromEntries(entries.map(e => [e.name, e.value]));

describe('config: .env.example', () => {
  it('has only comments, blank lines and NAME=value lines', () => {
    expect(malformed).to.deep.equal([]);
  });

  it('lists exactly the variables of ENV_VARS', () => {
    const names = entries.map(e => e.name);
    const expected = Object.keys(ENV_VARS);
    const missing = expected.filter(name => !names.includes(name));
    const extra = names.filter(name => !expected.includes(name));
    const duplicated = names.filter((name, i) => names.indexOf(name) !== i);
    expect(missing, 'in ENV_VARS but missing from .env.example').to.deep.equal([]);
    expect(extra, 'in .env.example but not in ENV_VARS').to.deep.equal([]);
    expect(duplicated, 'listed more than once in .env.example').to.deep.equal([]);
  });

  it('keeps the order of ENV_VARS and puts each description right above its variable', () => {
    expect(entries.map(e => e.name)).to.deep.equal(ENV_VAR_NAMES);
    for (const entry of entries) {
      const description = ENV_VARS[entry.name as keyof typeof ENV_VARS].description;
      expect(entry.comment, `comment above ${entry.name} (line ${entry.line})`).to.equal(description);
    }
  });

  it('writes each example value (empty where the default depends on the machine)', () => {
    for (const name of ENV_VAR_NAMES) {
      if (name === 'ENVFLEET_POOL_THREADS') expect(values[name], name).to.equal('');
      else expect(values[name], name).to.equal(ENV_VARS[name].example);
    }
  });

  it('says how to use it and that the API key is secret', () => {
    const header = text.slice(0, text.indexOf('\n\n'));
    expect(header).to.match(/copy this file to \.env/i);
    expect(header).to.match(/only the names listed here/i);
    expect(header).to.include('OPENAI_API_KEY');
    expect(header).to.match(/never logged/i);
  });

  it('is accepted by loadConfig and gives exactly the defaults', () => {
    const { explicit, ...fromFile } = loadConfig(values);
    const { explicit: _none, ...defaults } = loadConfig({});
    expect(fromFile).to.deep.equal(defaults);
    expect(explicit).to.deep.equal(ENV_VAR_NAMES.filter(name => values[name] !== ''));
  });
});

describe('config: generated files are up to date', () => {
  for (const { path, content } of generatedFiles()) {
    const rel = path === ENV_EXAMPLE_PATH ? '.env.example' : 'docs/configuration.md';
    it(`${rel} matches what scripts/gen-env-example.ts writes`, () => {
      const committed = readFileSync(path, 'utf8');
      expect(committed === content, `${rel} is stale: run npx tsx scripts/gen-env-example.ts`).to.equal(true);
    });
  }
});

describe('config: docs/configuration.md', () => {
  const doc = readFileSync(CONFIGURATION_DOC_PATH, 'utf8');

  it('has a table row for every variable and every stage', () => {
    for (const name of ENV_VAR_NAMES) expect(doc, name).to.include(`| \`${name}\` |`);
    for (const stage of MODEL_STAGE_NAMES) expect(doc, stage).to.include(`| \`${stage}\` |`);
  });

  it('shows a models file example that loadConfig accepts', () => {
    expect(doc).to.include(MODELS_FILE_EXAMPLE.trimEnd());
    const config = loadConfig(
      { ENVFLEET_MODELS_FILE: 'models.yaml', OPENAI_PROD_KEY: 'sk-prod', VLLM_API_KEY: 'vllm-key' },
      { readFile: () => MODELS_FILE_EXAMPLE },
    );
    expect(Object.keys(config.endpoints)).to.have.members(['default', 'openai', 'vllm-a', 'vllm-b']);
    expect(config.profiles['rollout.policy']).to.include({ model: 'Qwen/Qwen3-8B', temperature: 0.8, maxTokens: 8192 });
    expect(config.profiles['rollout.policy'].endpoints).to.deep.equal([
      { name: 'vllm-a', weight: 3 },
      { name: 'vllm-b', weight: 1 },
    ]);
    expect(config.profiles['mine.dedup'].model).to.equal('text-embedding-3-large');
    expect(config.profiles['mine.judge']).to.include({ model: 'gpt-4.1-mini', maxTokens: 4096 });
    expect(config.profiles['mine.judge'].endpoints).to.deep.equal([{ name: 'openai', weight: 1 }]);
    expect(config.prices['gpt-4.1']).to.deep.equal({ inputPerMTok: 1.8, outputPerMTok: 7.2 });
  });
});
