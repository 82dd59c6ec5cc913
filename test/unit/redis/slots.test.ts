import { expect } from 'chai';
import { queuePrefix } from '../../../queues/define-queue.js';
import { PIPELINE } from '../../../queues/pipeline.js';
import { loadConfig } from '../../../config/index.js';
import { createRedisConnection } from '../../../src/redis/connection.js';
import { isCluster, tag } from '../../../src/redis/slots.js';
import { runKey, runKeys } from '../../../src/runs/keys.js';

/** The hash tag Redis Cluster hashes a key by: the first non-empty `{…}`, or the whole key. */
function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

const cluster = { isCluster: true };

describe('Redis Cluster hash tags', () => {
  it('tells a cluster connection apart from a server connection or connection options', () => {
    expect(isCluster(cluster)).to.equal(true);
    expect(isCluster({ isCluster: false })).to.equal(false);
    expect(isCluster({ url: 'redis://127.0.0.1:6379' })).to.equal(false);
    expect(isCluster(null)).to.equal(false);
  });

  it('keeps the one-Redis key layout as it was, and tags by run on a cluster', () => {
    expect(tag(false, 'r1')).to.equal('r1');
    expect(runKey('envfleet', 'r1')).to.equal('envfleet:run:r1');
    expect(runKeys('envfleet', 'r1').doc('env', 'e1')).to.equal('envfleet:run:r1:doc:env:e1');
    expect(runKey('envfleet', 'r1', true)).to.equal('envfleet:run:{r1}');
    const keys = runKeys('envfleet', 'r1', true);
    // Every key a script or MULTI of the run touches together has the run's tag.
    const all = [keys.record, keys.doc('env', 'e1'), keys.ids('env'), keys.funnel, keys.bytes, keys.statusOf('env'), keys.statuses('env'), keys.steps('e1', 0), keys.probeState('e1', 0), keys.pending, keys.pendingByStage, keys.finishedAt, keys.cache('h'), keys.ledger, keys.trajectories, keys.sinkLock, keys.control, keys.parked, keys.rateLimited];
    for (const k of all) expect(hashTagOf(k), k).to.equal('r1');
    expect(hashTagOf(runKeys('envfleet', 'r2', true).record)).to.equal('r2');
  });

  it('gives the queues of one flow one tag and every other queue its own', () => {
    const tags = Object.fromEntries(PIPELINE.names.map(n => [n, PIPELINE.slotTagOf(n)]));
    expect(tags).to.deep.equal({
      'mine.judge': 'mine.dedup',
      'mine.topic': 'mine.dedup',
      'mine.dedup': 'mine.dedup',
      'skeleton.state': 'skeleton.state',
      'skeleton.operations': 'skeleton.operations',
      'skeleton.method': 'skeleton.assemble',
      'skeleton.assemble': 'skeleton.assemble',
      'check.config': 'check.config',
      'check.probe': 'check.probe',
      'check.verdict': 'check.verdict',
      'scenario.state': 'scenario.state',
      'scenario.task': 'scenario.task',
      'scenario.checklist': 'scenario.checklist',
      'scenario.check': 'scenario.check',
      'scenario.verify': 'scenario.verify',
      'rollout.run': 'rollout.group',
      'rollout.group': 'rollout.group',
    });
    // Every flow edge stays within one tag.
    for (const e of PIPELINE.edges()) {
      if (e.kind === 'flow-child' || e.kind === 'fan-in') expect(PIPELINE.slotTagOf(e.from), `${e.from} → ${e.to}`).to.equal(PIPELINE.slotTagOf(e.to));
    }
    expect(PIPELINE.queues['rollout.run'].slotTag).to.equal('rollout.group');
  });

  it('puts the tag in the queue prefix on a cluster only', () => {
    expect(queuePrefix('envfleet', 'rollout.group', { url: 'redis://127.0.0.1:6379' })).to.equal('envfleet');
    expect(queuePrefix('envfleet', 'rollout.group', cluster)).to.equal('envfleet:{rollout.group}');
    expect(hashTagOf(`${queuePrefix('envfleet', 'rollout.group', cluster)}:rollout.run:wait`)).to.equal('rollout.group');
  });
});

describe('the Redis Cluster connection', () => {
  it('gives ioredis the nodes of ENVFLEET_REDIS_CLUSTER_NODES as sockets take them (an IPv6 address without its brackets)', () => {
    const config = loadConfig({ ENVFLEET_REDIS_CLUSTER_NODES: '10.0.0.5:7000,redis-b.internal:7001,[::1]:7002' });
    const redis = createRedisConnection(config.redis, 'producer');
    try {
      expect(isCluster(redis)).to.equal(true);
      expect((redis as unknown as { startupNodes: unknown }).startupNodes).to.deep.equal([
        { host: '10.0.0.5', port: 7000 },
        { host: 'redis-b.internal', port: 7001 },
        { host: '::1', port: 7002 },
      ]);
    } finally {
      redis.disconnect();
    }
  });
});
