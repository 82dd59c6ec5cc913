import { expect } from 'chai';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppError } from '../../../src/errors.js';
import { loadModelScript, ModelScriptError, parseModelScript } from '../../../src/model-server/index.js';

describe('model-server: fixture scripts', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-fixtures-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function file(name: string, text: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  }

  /** The ModelScriptError thrown by `load` (fails the test if it resolves or throws something else). */
  async function loadError(path: string): Promise<ModelScriptError> {
    try {
      await loadModelScript(path);
    } catch (err) {
      expect(err).to.be.instanceOf(ModelScriptError);
      return err as ModelScriptError;
    }
    throw new Error(`expected ${path} to be rejected`);
  }

  const EXAMPLE = `
models: [scripted, gpt-4o-mini]
defaults:
  usage: auto
rules:
  - name: judge-yes
    stage: mine.judge
    match: "library|book"
    times: 2
    respond:
      json: { verdict: yes }
  - stage: "mine.*"
    fault: { type: rate_limit, retryAfterS: 0.5 }
  - responses:
      - toolCalls: [{ name: get_book, arguments: { id: 1 } }]
        reasoning: look it up
      - content: done
        finishReason: stop
        usage: { prompt_tokens: 10, completion_tokens: 5 }
  - endpoint: embeddings
    match: cat
    embedding: [0.1, 0.2]
`;

  it('loads the documented YAML example', async () => {
    const script = await loadModelScript(await file('script.yaml', EXAMPLE));
    expect(script.models).to.deep.equal(['scripted', 'gpt-4o-mini']);
    expect(script.rules).to.have.length(4);
    expect(script.rules?.[0]).to.deep.include({ name: 'judge-yes', stage: 'mine.judge', times: 2, respond: { json: { verdict: 'yes' } } });
    expect(script.rules?.[1]?.fault).to.deep.equal({ type: 'rate_limit', retryAfterS: 0.5 });
    expect(script.rules?.[2]?.responses?.[0]?.toolCalls).to.deep.equal([{ name: 'get_book', arguments: { id: 1 } }]);
    expect(script.rules?.[3]?.embedding).to.deep.equal([0.1, 0.2]);
  });

  it('loads .json and .yml files', async () => {
    const json = await loadModelScript(await file('a.json', JSON.stringify({ rules: [{ respond: { content: 'hi' } }] })));
    expect(json.rules?.[0]?.respond).to.deep.equal({ content: 'hi' });
    const yml = await loadModelScript(await file('b.yml', 'rules:\n  - respond: { content: yo }\n'));
    expect(yml.rules?.[0]?.respond).to.deep.equal({ content: 'yo' });
  });

  it('loads a directory in name order, concatenating rules and merging models and defaults', async () => {
    const scripts = join(dir, 'scripts');
    await mkdir(scripts);
    await writeFile(join(scripts, '20-second.yaml'), 'models: [b, a]\nrules:\n  - name: second\n    respond: { content: "2" }\n');
    await writeFile(join(scripts, '10-first.json'), JSON.stringify({ models: ['a'], defaults: { usage: 'auto' }, rules: [{ name: 'first', respond: { content: '1' } }] }));
    await writeFile(join(scripts, '30-defaults.yml'), 'defaults:\n  usage: { prompt_tokens: 1, completion_tokens: 2 }\n');
    await writeFile(join(scripts, 'README.md'), 'not a script');
    const script = await loadModelScript(scripts);
    expect(script.rules?.map((rule) => rule.name)).to.deep.equal(['first', 'second']);
    expect(script.models).to.deep.equal(['a', 'b']);
    expect(script.defaults).to.deep.equal({ usage: { prompt_tokens: 1, completion_tokens: 2 } });
  });

  it('names the file and the problem for bad YAML syntax', async () => {
    const path = await file('broken.yaml', 'rules:\n  - respond: { content: "unterminated\n');
    const err = await loadError(path);
    expect(err.file).to.equal(path);
    expect(err.message).to.include(`Invalid model script ${path}: YAML syntax error:`);
  });

  it('names the file and the problem for bad JSON syntax', async () => {
    const path = await file('broken.json', '{"rules": [');
    expect((await loadError(path)).message).to.include(`Invalid model script ${path}: JSON syntax error:`);
  });

  it('names the file and the zod path for an invalid rule', async () => {
    const path = await file('bad-rule.yaml', 'rules:\n  - respond: { content: ok }\n  - fault: { type: explode }\n');
    const err = await loadError(path);
    expect(err.message).to.include(path);
    expect(err.problems).to.have.length(1);
    expect(err.problems[0]).to.match(/^rules\[1\]\.fault\.type: /);
  });

  it('names the offending file inside a directory', async () => {
    await writeFile(join(dir, 'a.yaml'), 'rules:\n  - respond: { content: ok }\n');
    await writeFile(join(dir, 'b.yaml'), 'rules:\n  - respnd: { content: typo }\n');
    const err = await loadError(dir);
    expect(err.file).to.equal(join(dir, 'b.yaml'));
    expect(err.message).to.include('rules[0]: Unrecognized key: "respnd"');
  });

  it('reports missing files and empty directories', async () => {
    const missing = join(dir, 'nope.yaml');
    const notFound = await loadError(missing);
    expect(notFound.message).to.match(new RegExp(`^Invalid model script ${missing}: cannot read file: .*ENOENT.*; pass --script a .json, .yaml or .yml script, or a folder of them`));
    // A user's mistake with a stable code: the command line prints its message, not a stack.
    expect(notFound).to.be.instanceOf(AppError).and.to.have.property('code', 'INPUT_FILE_INVALID');
    const empty = join(dir, 'empty');
    await mkdir(empty);
    expect((await loadError(empty)).message).to.include('directory contains no .json, .yaml or .yml files');
  });

  describe('validation', () => {
    function problems(value: unknown): readonly string[] {
      try {
        parseModelScript(value, 'inline.yaml');
      } catch (err) {
        expect(err).to.be.instanceOf(ModelScriptError);
        expect((err as Error).message).to.match(/^Invalid model script inline\.yaml: /);
        return (err as ModelScriptError).problems;
      }
      throw new Error('expected the script to be rejected');
    }

    it('accepts an empty script', () => {
      expect(parseModelScript({})).to.deep.equal({});
    });

    it('rejects unknown keys at every level', () => {
      expect(problems({ rule: [] })).to.deep.equal(['(root): Unrecognized key: "rule"']);
      expect(problems({ rules: [{ respond: { content: 'x', tool_calls: [] } }] })).to.deep.equal(['rules[0].respond: Unrecognized key: "tool_calls"']);
      expect(problems({ rules: [{ fault: { type: 'delay', ms: 5, seconds: 1 }, respond: { content: 'x' } }] })).to.deep.equal([
        'rules[0].fault: Unrecognized key: "seconds"',
      ]);
    });

    it('requires a response, responses or a fault on chat rules', () => {
      expect(problems({ rules: [{ name: 'empty' }] })).to.deep.equal(['rules[0]: a chat rule needs respond, responses or fault']);
      expect(problems({ rules: [{ fault: { type: 'delay', ms: 10 } }] })).to.deep.equal([
        'rules[0]: a delay fault answers after waiting, so the rule also needs respond or responses',
      ]);
      expect(problems({ rules: [{ respond: { content: 'a' }, responses: [{ content: 'b' }] }] })).to.deep.equal([
        'rules[0].responses: use either respond or responses, not both',
      ]);
    });

    it('requires content, json or toolCalls in a response', () => {
      expect(problems({ rules: [{ responses: [{ content: 'ok' }, { reasoning: 'only thinking' }] }] })).to.deep.equal([
        'rules[0].responses[1]: a response needs at least one of content, json or toolCalls',
      ]);
      expect(problems({ rules: [{ respond: { content: 'a', json: { b: 1 } } }] })).to.deep.equal(['rules[0].respond: use either content or json, not both']);
    });

    it('keeps embeddings and chat rules apart', () => {
      expect(problems({ rules: [{ respond: { content: 'x' }, embedding: [1] }] })).to.deep.equal([
        'rules[0].embedding: embedding is only allowed on rules with endpoint: embeddings',
      ]);
      expect(problems({ rules: [{ endpoint: 'embeddings', respond: { content: 'x' } }] })).to.deep.equal([
        'rules[0]: embeddings rules answer with `embedding` (or the hashing embedder), not respond/responses',
      ]);
      expect(parseModelScript({ rules: [{ endpoint: 'embeddings', fault: { type: 'hang' } }, { endpoint: 'embeddings' }] }).rules).to.have.length(2);
    });

    it('rejects invalid regexes and field values', () => {
      expect(problems({ rules: [{ match: 'a(b', respond: { content: 'x' } }] })[0]).to.match(/^rules\[0\]\.match: not a valid regular expression/);
      expect(problems({ rules: [{ times: 0, respond: { content: 'x' } }] })[0]).to.match(/^rules\[0\]\.times: /);
      expect(problems({ rules: [{ endpoint: 'completions', respond: { content: 'x' } }] })[0]).to.match(/^rules\[0\]\.endpoint: /);
      expect(problems({ rules: [{ fault: { type: 'server_error', status: 200 } }] })[0]).to.match(/^rules\[0\]\.fault\.status: /);
      expect(problems({ defaults: { usage: 'exact' } })[0]).to.match(/^defaults\.usage: /);
    });

    it('lists every problem', () => {
      expect(problems({ rules: [{ respnd: {} }, { times: -1, respond: { content: 'x' } }] })).to.deep.equal([
        'rules[0]: Unrecognized key: "respnd"',
        'rules[0]: a chat rule needs respond, responses or fault',
        'rules[1].times: Too small: expected number to be >0',
      ]);
    });
  });
});
