import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createRedisSessionDirectory } from '../../../src/env-server/directory.js';
import type { SessionResult } from '../../../src/env-server/sessions.js';
import { RawJson, stringifyJson } from '../../../src/util/raw-json.js';

const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

describe("the serve directory: an ended session's result read back by another process (real Redis)", () => {
  const prefix = `envfleet-test-directory-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  const directory = () => createRedisSessionDirectory(redis, prefix, { serverId: randomUUID(), url: 'http://127.0.0.1:1', serves: 'r', content: 'c', heartbeatTtlMs: 10_000, resultTtlMs: 60_000 });
  before(() => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  });
  after(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  // A Python state as the runtime wrote it: 1.0 a float, an integer past 2^64, text in several scripts.
  const STATE = '{"big":18446744073709551617,"f":1.0,"note":"réservé — 東京 😀","rows":[{"p":54.0}]}';
  const result = (sessionId: string, finalState: RawJson | null): SessionResult => ({
    sessionId, scenarioId: 's-1', environmentId: 'e-1', endedBy: 'finished', detail: null, endedAt: '2026-12-07T00:00:00.000Z', calls: 3,
    finalState, reward: 1, solved: true, checks: [{ item: 'ok', passed: true }], checksError: null,
  });

  it('stores the final state once, as the runtime wrote it, and gives it back as that text', async () => {
    const sid = randomUUID();
    const json = stringifyJson(result(sid, new RawJson(STATE)))!;
    // Once: the state's text is in the stored result, and nowhere else in it.
    expect(json.split('réservé').length).to.equal(2);
    expect(json).to.include(`"finalState":${STATE}`);
    await directory().release(sid, json);
    const found = await directory().locate(sid);
    expect(found.kind).to.equal('ended');
    const r = (found as { result: SessionResult }).result;
    expect(r.finalState).to.be.instanceOf(RawJson);
    expect(r.finalState!.json).to.equal(STATE);
    expect(r).to.deep.include({ reward: 1, calls: 3, checksError: null });
    expect(stringifyJson({ final_state: r.finalState })).to.equal(`{"final_state":${STATE}}`);

    const none = randomUUID();
    await directory().release(none, stringifyJson(result(none, null))!);
    expect(((await directory().locate(none)) as { result: SessionResult }).result.finalState).to.equal(null);
  });

  it("reads a result an earlier version wrote (the value, and the text where they differ as finalStateJson) with the runtime's text", async () => {
    const sid = randomUUID();
    await directory().release(sid, JSON.stringify({ ...result(sid, null), finalState: JSON.parse(STATE) as unknown, finalStateJson: STATE }));
    const r = ((await directory().locate(sid)) as { result: SessionResult & { finalStateJson?: string } }).result;
    expect(r.finalState!.json).to.equal(STATE);
    expect(r.finalStateJson).to.equal(undefined);
    const plain = randomUUID();
    await directory().release(plain, JSON.stringify({ ...result(plain, null), finalState: { n: 2, s: 'ü' } }));
    expect(((await directory().locate(plain)) as { result: SessionResult }).result.finalState!.json).to.equal('{"n":2,"s":"ü"}');
  });
});
