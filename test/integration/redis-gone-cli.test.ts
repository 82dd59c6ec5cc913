import { execFile } from 'node:child_process';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { ENVFLEET_BIN, REDIS_URL, requireRedis } from '../helpers/integration.js';

const run = promisify(execFile);

/**
 * A command whose Redis goes away in the middle of it (a stranger's probe: `kill -9` of Redis during an export printed
 * ioredis's MaxRetriesPerRequestError with its stack, as a bug of envfleet's). Here a proxy in front of the test's Redis
 * passes the command's start-up checks and cuts every connection at its first command naming the run's keys, then
 * refuses new ones: Redis gone after the start, every time.
 */
describe('a command whose Redis goes away after its start (a cutting proxy in front of the real Redis)', function () {
  this.timeout(60_000);
  let proxy: Server;
  const sockets = new Set<Socket>();
  before(requireRedis);
  after(() => {
    for (const s of sockets) s.destroy();
    proxy?.close();
  });

  it('says REDIS_UNAVAILABLE and what to do, in one line, without a stack trace', async () => {
    const prefix = `gone-${process.pid}`;
    const target = new URL(REDIS_URL);
    let cut = false;
    proxy = createServer(client => {
      if (cut) {
        client.destroy();
        return;
      }
      sockets.add(client);
      const upstream = createConnection(Number(target.port || 6379), target.hostname);
      sockets.add(upstream);
      client.on('data', (d: Buffer) => {
        if (d.includes(prefix)) {
          cut = true;
          proxy.close();
          for (const s of sockets) s.destroy();
          return;
        }
        upstream.write(d);
      });
      upstream.on('data', (d: Buffer) => client.write(d));
      client.on('error', () => undefined);
      upstream.on('error', () => undefined);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve));
    const url = `redis://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const failed = await run(process.execPath, [ENVFLEET_BIN, 'status', '--run', 'anything'], { env: { ...process.env, REDIS_URL: url, ENVFLEET_REDIS_PREFIX: prefix, ENVFLEET_REDIS_STARTUP_WAIT_MS: '2000', LOG_LEVEL: 'silent' } }).then(
      () => null,
      (err: unknown) => err as { code: number; stderr: string },
    );
    expect(cut, 'the command reached the run\'s keys').to.equal(true);
    expect(failed?.code).to.equal(1);
    expect(failed?.stderr).to.match(/^envfleet: \[REDIS_UNAVAILABLE\] Redis stopped answering while the command ran \(.+\); the command stopped there\. Check that Redis runs \(envfleet doctor\), then run the command again\n$/);
  });
});
