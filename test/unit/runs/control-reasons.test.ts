import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createRedisRunControl } from '../../../src/runs/control.js';
import { oneLineText } from '../../../src/util/text.js';
import { dropPrefix, REDIS_URL, requireRedis } from '../../helpers/integration.js';

describe('a run\'s pause and cancel reasons are kept as one printable line (real Redis)', () => {
  it('writes line breaks as spaces, control characters (an ANSI escape) and bidirectional overrides as U+FFFD, and keeps the rest (accents, CJK, emoji, markup for the page to escape)', async () => {
    await requireRedis();
    const redis = new Redis(REDIS_URL);
    const prefix = `envfleet-test-reasons-${randomUUID().slice(0, 8)}`;
    try {
      const control = createRedisRunControl(redis, prefix);
      await control.pause('r1', 'maintenance \u001b[31mRED\u001b[0m\nby ops\u202eevil é 日本 😀 <b>');
      expect((await control.get('r1')).reason).to.equal('maintenance \ufffd[31mRED\ufffd[0m by ops\ufffdevil é 日本 😀 <b>');
      await control.cancel('r2', 'done\r\n\u0007 \ud83d');
      expect((await control.get('r2')).reason).to.equal('done \ufffd \ufffd');
    } finally {
      await dropPrefix(prefix);
      redis.disconnect();
    }
  });

  it('cuts a reason past its length between whole characters', () => {
    expect(oneLineText(`${'a'.repeat(9)}😀`, 10)).to.equal('a'.repeat(9));
    expect(oneLineText('tab\there', 100)).to.equal('tab here');
  });
});
