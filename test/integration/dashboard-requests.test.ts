import { request } from 'node:http';
import { Writable } from 'node:stream';
import { Queue } from 'bullmq';
import { expect } from 'chai';
import { RedisServerProcess } from '../../cli/private-redis.js';
import { startDashboard, type Dashboard } from '../../http/dashboard/server.js';
import { createLogger } from '../../src/logger.js';
import { dropPrefix, testConfig, until } from '../helpers/integration.js';

/** Requests a client got wrong: answered 4xx, never 500, and no stack in the log (no browser, no run needed). */
describe('dashboard: malformed requests', () => {
  const config = testConfig(null, { LOG_LEVEL: 'debug' });
  const logged: string[] = [];
  let dashboard: Dashboard;
  before(async () => {
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (logged.push(chunk.toString('utf8')), done()) });
    dashboard = await startDashboard(config, createLogger(config, sink), { port: 0, host: '127.0.0.1', token: 'tok-0123456789' });
  });
  after(async () => {
    await dashboard?.close();
    await dropPrefix(config.redis.prefix);
  });

  it('GET /runs/%ZZ is 400 with a message saying what is wrong, and logs no error', async () => {
    const res = await fetch(`${dashboard.url}/runs/%ZZ`, { headers: { authorization: 'Bearer tok-0123456789' } });
    expect(res.status).to.equal(400);
    expect(await res.text()).to.include('not valid percent-encoding').and.not.to.include('URIError');
    expect(logged.join('')).not.to.include('"level":50').and.not.to.include('URIError: ');
    expect((await fetch(`${dashboard.url}/runs/nosuch`, { headers: { authorization: 'Bearer tok-0123456789' } })).status).to.equal(404);
  });

  it('a token cookie that is not percent-encoding is no token (401), not a 500', async () => {
    const res = await fetch(`${dashboard.url}/`, { headers: { cookie: 'envfleet_token=%ZZ' } });
    expect(res.status).to.equal(401);
  });
});

/** A request with the headers a browser (or an attacker's page) sends, Host included (fetch cannot set it). */
function send(url: string, path: string, method: string, headers: Record<string, string>, body = ''): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method, headers }, res => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('dashboard on loopback without a token: requests of other sites', () => {
  const config = testConfig(null);
  let dashboard: Dashboard;
  before(async () => {
    dashboard = await startDashboard(config, createLogger(config, new Writable({ write: (_c, _e, done) => done() })), { port: 0, host: '127.0.0.1', token: null });
  });
  after(async () => {
    await dashboard?.close();
    await dropPrefix(config.redis.prefix);
  });

  it('answers only requests addressed to a loopback name (DNS rebinding), and refuses cross-site writes (any page could add jobs)', async () => {
    const port = new URL(dashboard.url).port;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]) expect((await send(dashboard.url, '/', 'GET', { host })).status, host).to.equal(200);
    const rebound = await send(dashboard.url, '/', 'GET', { host: `attacker.example:${port}` });
    expect(rebound.status).to.equal(403);
    expect(rebound.text).to.include('ENVFLEET_DASHBOARD_TOKEN');
    const add = '/queues/api/queues/mine.judge/add';
    const job = JSON.stringify({ name: 'x', data: { runId: 'évil 😈' } });
    for (const headers of [{ origin: 'http://attacker.example', 'content-type': 'text/plain' }, { 'sec-fetch-site': 'cross-site', 'content-type': 'application/x-www-form-urlencoded' }, { origin: 'null', 'content-type': 'text/plain' }]) {
      const refused = await send(dashboard.url, add, 'POST', { host: `127.0.0.1:${port}`, ...headers }, job);
      expect(refused.status, JSON.stringify(headers)).to.equal(403);
      expect(refused.text).to.include('from another site');
    }
    // The dashboard's own page (same Origin) and a tool (no Origin) are let through to bull-board.
    const own = await send(dashboard.url, '/queues/api/queues?activeQueue=mine.judge', 'GET', { host: `127.0.0.1:${port}`, origin: dashboard.url });
    expect(own.status).to.equal(200);
    const tool = await send(dashboard.url, '/queues/api/queues/mine.judge/pause', 'PUT', { host: `127.0.0.1:${port}` });
    expect(tool.status).to.not.equal(403);
    await send(dashboard.url, '/queues/api/queues/mine.judge/resume', 'PUT', { host: `127.0.0.1:${port}`, origin: dashboard.url });
    // Removing jobs a run still counts as outstanding is refused (a paused run whose parked jobs were cleaned stayed
    // "running" for ever); completed and failed jobs may be cleaned.
    const own2 = { host: `127.0.0.1:${port}`, origin: dashboard.url };
    for (const path of ['clean/delayed', 'clean/wait', 'empty', 'obliterate', 'EMPTY', 'Clean/Wait', 'some-parent/remove-unprocessed-children']) {
      const r = await send(dashboard.url, `/queues/api/queues/check.probe/${path}`, 'PUT', own2);
      expect(r.status, path).to.equal(403);
      expect(r.text).to.include('envfleet cancel --run NAME');
    }
    for (const path of ['clean/completed', 'clean/failed']) expect((await send(dashboard.url, `/queues/api/queues/check.probe/${path}`, 'PUT', own2)).status, path).to.equal(200);
    const upper = await send(dashboard.url, '/queues/API/queues/check.probe/obliterate', 'PUT', own2);
    expect(upper.status).to.equal(403);
    // One waiting job: removing it is refused (its run waits for it), as it is by bull-board's path with any case.
    const queue = new Queue('check.probe', { connection: { url: config.redis.url }, prefix: config.redis.prefix });
    try {
      const job = await queue.add('x', { runId: 'r', envId: 'é' });
      for (const action of ['clean', 'CLEAN']) {
        const r = await send(dashboard.url, `/queues/api/queues/check.probe/${encodeURIComponent(job.id!)}/${action}`, 'PUT', own2);
        expect(r.status, action).to.equal(403);
        expect(r.text).to.include(`removing waiting job ${job.id}`);
      }
      expect(await job.getState()).to.equal('waiting');
      expect((await send(dashboard.url, '/queues/api/queues/check.probe/%E0%A4/clean', 'PUT', own2)).status).to.not.equal(500);
      await job.remove();
    } finally {
      await queue.close();
    }
  });
});

describe('dashboard while Redis is away', function () {
  this.timeout(60_000);
  let redisServer: RedisServerProcess | undefined;
  let dashboard: Dashboard | undefined;
  const lines: string[] = [];
  after(async () => {
    await dashboard?.close();
    await redisServer?.stop();
  });

  it('answers /healthz and the pages 503 at once (they gave no answer for minutes), and says queue errors at most every 30 s', async () => {
    redisServer = await RedisServerProcess.start({ args: [] });
    const config = testConfig(null, { REDIS_URL: redisServer.url, LOG_LEVEL: 'warn' });
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString('utf8')), done()) });
    dashboard = await startDashboard(config, createLogger(config, sink), { port: 0, host: '127.0.0.1', token: null });
    expect((await fetch(`${dashboard.url}/healthz`)).status).to.equal(200);
    await redisServer.kill();
    for (const path of ['/healthz', '/', '/runs/r', '/metrics']) {
      const res = await fetch(`${dashboard.url}${path}`, { signal: AbortSignal.timeout(15_000) });
      expect(res.status, path).to.equal(503);
    }
    // The queues' connections keep failing to reconnect (one error each time, several a second): said once.
    const queueErrors = () => lines.filter(l => l.includes('dashboard queue error')).length;
    await until(() => Promise.resolve(queueErrors() > 0), 'a queue error to be logged');
    // (a few more reconnection attempts of each connection: 200 ms to 2 s apart)
    await new Promise(resolve => setTimeout(resolve, 5_000));
    expect(queueErrors()).to.equal(1);
  });
});
