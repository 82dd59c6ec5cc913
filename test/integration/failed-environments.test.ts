import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { submitSynthesis } from '../../queues/submit.js';
import { exportRun } from '../../src/datasets/export.js';
import { parseModelScript } from '../../src/model-server/index.js';
import { useFleet } from '../helpers/integration.js';

const CLINIC = { summary: 'Clinic appointment scheduling', introduction: "An outpatient clinic's scheduling system holding doctors with their specialties, registered patients, and appointments in day and time slots. Receptionists list doctors, book, look up and cancel appointments and review a patient's visits. A doctor can see one patient per slot." };

describe('an environment that fails during its repair round (real Redis, real workers, scripted server)', function () {
  const fleet = useFleet();

  it('keeps the quality report of the round that sent it to repair', async () => {
    // The demo's clinic is rejected in round 1 and repaired; here the repair's model call fails for good.
    const refused = parseModelScript({ rules: [{ name: 'repair-refused', stage: 'check.repair', matchAny: 'Clinic appointment scheduling', fault: { type: 'server_error', status: 400, message: 'refused' } }] });
    const f = await fleet({ extra: refused });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-failed-env-'));
    const descriptions = join(dir, 'descriptions.jsonl');
    await writeFile(descriptions, `${JSON.stringify(CLINIC)}\n`);
    await submitSynthesis(f.config, f.redis, { runId: 'fail', descriptions, probeSteps: 8 });
    await f.waitForRun('fail');
    expect(f.server.log().some(e => e.rule === 'repair-refused')).to.equal(true);

    const [id] = await f.store.listDocIds('fail', 'env');
    const clinic = (await f.store.getDoc('fail', 'env', id!))!;
    expect(clinic.status).to.equal('failed');
    expect(clinic.failure).to.deep.include({ stage: 'check.verdict', code: 'MODEL_BAD_REQUEST' });
    expect(clinic.quality).to.deep.include({ round: 1, verdict: 'rejected' });
    expect(clinic.quality!.rejectionReason).to.match(/book_appointment ×2/);
    expect(clinic.qualityHistory!.map(q => q.round)).to.deep.equal([1]);
    const counters = await f.store.counters('fail');
    expect(counters['check.verdict']).to.deep.equal({ 'failed:MODEL_BAD_REQUEST': 1 });

    const exported = await exportRun(f.store, 'fail', join(dir, 'out'));
    const [line] = (await readFile(exported.path, 'utf8')).trim().split('\n').map(l => JSON.parse(l) as { status: string; quality: { round: number; verdict: string; history: unknown[] } | null });
    expect(line!.status).to.equal('failed');
    expect(line!.quality).to.deep.include({ round: 1, verdict: 'rejected' });
    expect(line!.quality!.history).to.have.length(1);
  });

  it('an endpoint that echoes the API key in its error body: the key reaches no stored failure, job, event or export', async () => {
    const key = 'test-key';
    const echo = parseModelScript({ rules: [{ name: 'repair-echo', stage: 'check.repair', matchAny: 'Clinic appointment scheduling', fault: { type: 'server_error', status: 400, message: `Invalid request for API key ${key} (Bearer ${key}) — clé refusée 🔑` } }] });
    const f = await fleet({ extra: echo });
    expect(f.config.endpoints['default']!.apiKey).to.equal(key);
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-echo-key-'));
    const descriptions = join(dir, 'descriptions.jsonl');
    await writeFile(descriptions, `${JSON.stringify(CLINIC)}\n`);
    await submitSynthesis(f.config, f.redis, { runId: 'echo', descriptions, probeSteps: 8 });
    await f.waitForRun('echo');
    expect(f.server.log().some(e => e.rule === 'repair-echo')).to.equal(true);
    const [id] = await f.store.listDocIds('echo', 'env');
    const clinic = (await f.store.getDoc('echo', 'env', id!))!;
    expect(clinic.failure).to.deep.include({ code: 'MODEL_BAD_REQUEST' });
    expect(clinic.failure!.message).to.include('Invalid request for API key [redacted] (Bearer [redacted]) — clé refusée 🔑');
    // Every value under the fleet's prefix: documents, job hashes, event streams.
    const found: string[] = [];
    for (const k of await f.redis.keys(`*${f.config.redis.prefix}*`)) {
      const type = await f.redis.type(k);
      const values =
        type === 'string' ? [await f.redis.getBuffer(k).then(b => b?.toString('latin1') ?? '')]
        : type === 'hash' ? Object.values(await f.redis.hgetall(k))
        : type === 'stream' ? (await f.redis.xrange(k, '-', '+')).flatMap(([, fields]) => fields)
        : type === 'list' ? await f.redis.lrange(k, 0, -1)
        : type === 'set' ? await f.redis.smembers(k)
        : type === 'zset' ? await f.redis.zrange(k, '0', '-1')
        : [];
      if (values.some(v => v.includes(key))) found.push(k);
    }
    expect(found).to.deep.equal([]);
    const exported = await exportRun(f.store, 'echo', join(dir, 'out'));
    const text = await readFile(exported.path, 'utf8');
    expect(text).to.include('[redacted]');
    expect(text).to.not.include(key);
  });

  it('keeps one report per round when the repair round is retried', async () => {
    // The first repair call fails (retried by its job, which finds the round's report stored already).
    const once = parseModelScript({ rules: [{ name: 'repair-503-once', stage: 'check.repair', matchAny: 'Clinic appointment scheduling', times: 1, fault: { type: 'server_error', status: 503 } }] });
    const f = await fleet({ extra: once });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-retried-env-'));
    const descriptions = join(dir, 'descriptions.jsonl');
    await writeFile(descriptions, `${JSON.stringify(CLINIC)}\n`);
    await submitSynthesis(f.config, f.redis, { runId: 'retry', descriptions, probeSteps: 8 });
    await f.waitForRun('retry');
    expect(f.server.log().some(e => e.rule === 'repair-503-once')).to.equal(true);

    const [id] = await f.store.listDocIds('retry', 'env');
    const clinic = (await f.store.getDoc('retry', 'env', id!))!;
    expect(clinic.status).to.equal('rejected');
    expect(clinic.qualityHistory!.map(q => q.round)).to.deep.equal([1, 2]);
    expect(clinic.quality?.repair).to.deep.include({ attempted: true, saved: false, methods: ['book_appointment'] });
    expect((await f.store.counters('retry'))['check.verdict']).to.deep.equal({ 'repair-round': 1, 'rejected-after-repair': 1 });
  });
});
