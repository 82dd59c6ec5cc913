import { Writable } from 'node:stream';
import { expect } from 'chai';
import { startDashboard, type Dashboard } from '../../http/dashboard/server.js';
import { createLogger } from '../../src/logger.js';
import { dropPrefix, testConfig } from '../helpers/integration.js';

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
