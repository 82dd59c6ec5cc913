import { expect } from 'chai';
import { judgeRedis, type RedisFacts } from '../../../src/redis/guard.js';

const safe: RedisFacts = { version: '7.0.15', maxmemoryPolicy: 'noeviction', aofEnabled: true, rdbEnabled: false };

describe('judgeRedis', () => {
  it('accepts noeviction with AOF', () => {
    expect(judgeRedis(safe, { requirePersistence: true })).to.deep.include({ ok: true, errors: [], warnings: [] });
  });

  it('refuses any eviction policy and says why and how to fix it', () => {
    for (const policy of ['allkeys-lru', 'volatile-lru', 'allkeys-random']) {
      const verdict = judgeRedis({ ...safe, maxmemoryPolicy: policy }, { requirePersistence: false });
      expect(verdict.ok).to.equal(false);
      expect(verdict.errors[0]).to.include(policy).and.to.include('jobs are lost').and.to.include('CONFIG SET maxmemory-policy noeviction');
    }
  });

  it('warns when persistence is off, and refuses when it is required', () => {
    const off = { ...safe, aofEnabled: false, rdbEnabled: false };
    const lenient = judgeRedis(off, { requirePersistence: false });
    expect(lenient.ok).to.equal(true);
    expect(lenient.warnings[0]).to.match(/persistence is off/).and.to.match(/appendonly yes/);
    expect(judgeRedis(off, { requirePersistence: true }).ok).to.equal(false);
  });

  it('counts RDB snapshots as persistence', () => {
    expect(judgeRedis({ ...safe, aofEnabled: false, rdbEnabled: true }, { requirePersistence: true }).ok).to.equal(true);
  });

  it('refuses a Redis older than 6', () => {
    expect(judgeRedis({ ...safe, version: '5.0.7' }, { requirePersistence: false }).errors.join()).to.match(/too old/);
  });
});
