import { expect } from 'chai';
import { z } from 'zod';
import { extractJson, parseStructured } from '../../../src/llm/json-output.js';

describe('extractJson', () => {
  it('reads a bare JSON object', () => {
    expect(extractJson('{"a": 1}')).to.deep.equal({ ok: true, value: { a: 1 } });
  });

  it('reads JSON inside a ```json fence with prose around it', () => {
    expect(extractJson('Here you go:\n```json\n{"a": [1, 2]}\n```\nDone.')).to.deep.equal({ ok: true, value: { a: [1, 2] } });
  });

  it('skips <think> reasoning blocks', () => {
    expect(extractJson('<think>maybe {"a": 0}?</think>\n{"a": 2}')).to.deep.equal({ ok: true, value: { a: 2 } });
  });

  it('finds the first balanced object in prose, with braces inside strings', () => {
    expect(extractJson('Answer: {"code": "function f() { return \\"}\\"; }"} hope it helps')).to.deep.equal({
      ok: true,
      value: { code: 'function f() { return "}"; }' },
    });
  });

  it('keeps source code that starts with a word a naive prefix strip would remove', () => {
    const code = 'python_helper = 1; class Library {}';
    expect(extractJson(JSON.stringify({ source: code }))).to.deep.equal({ ok: true, value: { source: code } });
  });

  it('reports an empty reply and a reply with no JSON', () => {
    expect(extractJson('   ')).to.deep.include({ ok: false });
    const none = extractJson('I cannot do that.');
    expect(none.ok).to.equal(false);
    expect(!none.ok && none.error).to.match(/not valid JSON/);
  });
});

describe('parseStructured', () => {
  const schema = z.object({ score: z.number().int().min(1).max(10), reason: z.string() });

  it('returns the validated value', () => {
    expect(parseStructured('{"score": 7, "reason": "ok"}', schema)).to.deep.equal({ ok: true, value: { score: 7, reason: 'ok' }, text: '{"score": 7, "reason": "ok"}' });
  });

  it('names the path and problem of each schema violation', () => {
    const result = parseStructured('{"score": 12}', schema);
    expect(result.ok).to.equal(false);
    if (!result.ok) {
      expect(result.error).to.match(/at score:/).and.to.match(/at reason:/);
    }
  });
});

describe('parseStructured: replies as models write them', () => {
  const Verdict = z.strictObject({ verdict: z.enum(['yes', 'no']), reason: z.string() });

  // It took the last block that matched (for a draft first); an example written after the answer then replaced it
  // without a word (the synthesis probe's judge verdicts were all inverted). A draft, an example after the answer and
  // a format reminder in a fence all look like the answer, so different values go back for repair.
  it('takes the one value that matches; several different ones go back for repair, fenced or not', () => {
    const reply = 'The format is {"verdict": "yes", "reason": "…"}. Draft: {"verdict":"yes","reason":"first try"}\nFinal: {"verdict":"no","reason":"état inchangé — 状态不变 🙂"}';
    const several = parseStructured(reply, Verdict);
    expect(several.ok).to.equal(false);
    expect(!several.ok && several.error).to.match(/^the reply holds 3 different JSON values that each match the required format \(.*状态不变 🙂"\}\); answer with exactly one$/);
    for (const two of [
      'Here is my answer:\n```json\n{"verdict":"no","reason":"état inchangé"}\n```\nFor comparison, the opposite case would look like {"verdict":"yes","reason":"changed"}.',
      'My answer: {"verdict":"no","reason":"r"}\nFormat reminder:\n```json\n{"verdict":"yes","reason":"…"}\n```',
      '```json\n{"verdict":"yes","reason":"a"}\n```\n```json\n{"verdict":"no","reason":"b"}\n```',
    ]) {
      const r = parseStructured(two, Verdict);
      expect(!r.ok && r.error, two).to.match(/^the reply holds 2 different JSON values/);
    }
    const twice = 'Answer: {"verdict":"no","reason":"r"}\n```json\n{"verdict": "no", "reason": "r"}\n```';
    expect(parseStructured(twice, Verdict)).to.deep.equal({ ok: true, value: { verdict: 'no', reason: 'r' }, text: '{"verdict": "no", "reason": "r"}' });
    // prose that matches nothing beside the answer changes nothing
    expect(parseStructured('See [1] and {"note": 1}. {"verdict":"yes","reason":"ok"}', Verdict)).to.deep.include({ ok: true, value: { verdict: 'yes', reason: 'ok' } });
  });

  it("reads a reply written as one JSON value through the slips a reader mends without guessing (code with raw line breaks, trailing commas, comments, single quotes, Python constants); says the parser's message for one it cannot", () => {
    const Method = z.strictObject({ source: z.string(), helpers: z.array(z.string()).default([]) });
    const code = 'get_member(id) {\n  return this.members[id]; // « membre » 👤\n}';
    const raw = `{"source": "${code}", "helpers": []}`;
    // Each cost a paid repair round (the synthesis probe: 9 rounds said "expected object, received array").
    for (const reply of [raw, `Voilà 👇\n\`\`\`json\n${raw}\n\`\`\``, `\`\`\`\n${raw}\n\`\`\`\nSee [1].`]) {
      const r = parseStructured(reply, Method);
      expect(r.ok, reply).to.equal(true);
      expect(r.ok && r.value).to.deep.equal({ source: code, helpers: [] });
      expect(r.ok && JSON.parse(r.text)).to.deep.equal({ source: code, helpers: [] });
    }
    const Flags = z.object({ verdict: z.boolean(), reason: z.string().nullable(), tags: z.array(z.string()) });
    expect(parseStructured("{'verdict': True, 'reason': None, 'tags': ['a', 'é',], // fin\n}", Flags)).to.deep.include({ ok: true, value: { verdict: true, reason: null, tags: ['a', 'é'] } });
    // An apostrophe inside a single-quoted string is not read as its end and turned into a `"` the model never wrote
    // (a stranger's probe: "the member's loan" was taken as 'the member"s loan'); escaped, it is the model's own.
    const Items = z.object({ items: z.array(z.string()) });
    for (const reply of ["{'items': ['Has the member's loan closed', 'l'été ☀️']}", `{"items": ['the member's loan']}`]) {
      const apostrophe = parseStructured(reply, Items);
      expect(apostrophe.ok, JSON.stringify(apostrophe)).to.equal(false);
    }
    expect(parseStructured("{'items': ['it\\'s fine — ok', 'say \"hi\" 👋']}", Items)).to.deep.include({ ok: true, value: { items: ["it's fine — ok", 'say "hi" 👋'] } });
    // A reply cut short is not completed (its end is unknown): the parser's message goes back.
    const cut = parseStructured('{"source": "get_member(id) {\\n  return', Method);
    expect(!cut.ok && cut.error).to.match(/^the reply is not valid JSON \(/);
    // A mended value is checked against the schema as any other.
    const wrong = parseStructured("{'verdict': 'maybe', 'reason': None, 'tags': []}", Flags);
    expect(!wrong.ok && wrong.error).to.match(/^the reply is not valid JSON \(/);
    // a fragment that does not match is still said when nothing was meant as the whole answer
    const prose = parseStructured('I would use {"helpers": []} here.', Method);
    expect(!prose.ok && prose.error).to.match(/does not match the required format:\n- at source/);
    // JSON followed by prose, prose in brackets first, an untagged fence of code, a python fence: the schema's
    // complaint about the answer, not a parse error of the prose or the code (from the review)
    const Bool = z.object({ verdict: z.boolean() });
    for (const [reply, says] of [
      ['{"verdict":"yes"}\nThat is my answer.', /at verdict: Invalid input: expected boolean, received string/],
      ['[Answer]\n{"verdict":"yes"}', /at verdict: Invalid input: expected boolean, received string/],
      ['```\nsome code {\n```\n{"verdict":1}', /at verdict: Invalid input: expected boolean, received number/],
      ['```python\nx = {}\n```\n{"verdict":1}', /at verdict: Invalid input: expected boolean, received number/],
    ] as const) {
      const r = parseStructured(reply, Bool);
      expect(!r.ok && r.error, reply).to.match(says);
    }
  });

  it('refuses a value nested more than 1,000 levels (it crashed the job that stored it, UNEXPECTED, again on every rerun)', () => {
    const State = z.object({ exampleState: z.record(z.string(), z.unknown()) });
    const deep = `{"exampleState": {"x": ${'['.repeat(6000)}${']'.repeat(6000)}}}`;
    const refused = parseStructured(deep, State);
    expect(!refused.ok && refused.error).to.match(/^the JSON nests containers more than 1000 levels deep/);
    const fine = `{"exampleState": {"x": ${'['.repeat(900)}"é"${']'.repeat(900)}}}`;
    expect(parseStructured(fine, State).ok).to.equal(true);
  });

  it('reads past reasoning: a <think> block, a leading </think> whose <think> was in the prompt, and refuses a reply cut off while thinking', () => {
    expect(parseStructured('<think>maybe {"verdict":"yes","reason":"x"}</think>\n{"verdict":"no","reason":"y"}', Verdict)).to.deep.equal({ ok: true, value: { verdict: 'no', reason: 'y' }, text: '{"verdict":"no","reason":"y"}' });
    expect(parseStructured('draft {"verdict":"yes","reason":"x"}</think>\n{"verdict":"no","reason":"z"}', Verdict)).to.deep.equal({ ok: true, value: { verdict: 'no', reason: 'z' }, text: '{"verdict":"no","reason":"z"}' });
    const cut = parseStructured('<think>I think {"verdict":"yes","reason":"x"} but', Verdict);
    expect(cut.ok).to.equal(false);
    expect(!cut.ok && cut.error).to.match(/empty/);
  });

  it('finds the JSON after many bracketed citations in the prose', () => {
    const prose = Array.from({ length: 40 }, (_, i) => `see [${i + 1}] and [link](x)`).join(' ');
    expect(parseStructured(`${prose}\n{"verdict":"yes","reason":"ok"}`, Verdict)).to.deep.equal({ ok: true, value: { verdict: 'yes', reason: 'ok' }, text: '{"verdict":"yes","reason":"ok"}' });
  });

  it('drops an extra key but sends a misspelt one back for repair', () => {
    const Method = z.strictObject({ source: z.string(), helpers: z.array(z.string()).default([]) });
    expect(parseStructured('{"source":"f() {}","explanation":"simple"}', Method)).to.deep.equal({ ok: true, value: { source: 'f() {}', helpers: [] }, text: '{"source":"f() {}","explanation":"simple"}' });
    const typo = parseStructured('{"source":"f() {}","helper":["_h() {}"]}', Method);
    expect(typo.ok).to.equal(false);
    expect(!typo.ok && typo.error).to.match(/helper/);
  });
});

describe('parseStructured: the text the value was read from', () => {
  it('is the fenced block as the model wrote it, its numbers as spelt (5.0, an integer past 2^53)', () => {
    const State = z.strictObject({ state: z.record(z.string(), z.unknown()) });
    const block = '{"state": {"balance": 5.0, "serial": 12345678901234567891, "note": "café ☕ 咖啡"}}';
    const parsed = parseStructured(`Voici l’état 🍵:\n\`\`\`json\n${block}\n\`\`\`\nVoilà.`, State);
    expect(parsed).to.deep.equal({ ok: true, value: { state: { balance: 5, serial: 12345678901234567000, note: 'café ☕ 咖啡' } }, text: block });
  });
});
