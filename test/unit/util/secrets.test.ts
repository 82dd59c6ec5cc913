import { Writable } from 'node:stream';
import { expect } from 'chai';
import { loadConfig } from '../../../config/index.js';
import { createLogger } from '../../../src/logger.js';
import { createSecretMask } from '../../../src/util/secrets.js';

describe('secret values masked where text leaves the process', () => {
  it('masks every occurrence of each secret, the longest first; short values and plain words are left alone', () => {
    const mask = createSecretMask(['sk-ÅBC-秘密-123456', 'sk-ÅBC-1', null, undefined, 'abc', 'password']);
    expect(mask('key sk-ÅBC-秘密-123456 or sk-ÅBC-1? abc')).to.equal('key [redacted] or [redacted]? abc');
    // A Redis password that is a word would otherwise garble envfleet's own messages.
    expect(mask('This Redis needs a password')).to.equal('This Redis needs a password');
    expect(createSecretMask([])('sk-anything')).to.equal('sk-anything');
  });

  it('the logger masks the configured key in an error and its causes, nested fields included, and cuts a huge body', () => {
    const key = 'sk-live-ÄÖ-0123456789abcdef';
    const config = loadConfig({}, { overrides: { OPENAI_API_KEY: key, ENVFLEET_SERVE_TOKEN: 'serve-token-0042', LOG_LEVEL: 'info' } });
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const logger = createLogger(config, sink);
    const page = `<html><title>502 Bad Gateway</title><body>${'<p>nginx 🚧</p>'.repeat(3_000)}</body></html>`;
    const cause = Object.assign(new Error(`400 bad request for key ${key}\n${page}`), { error: { message: `key ${key} refused`, param: ['serve-token-0042'], deep: { a: { b: { c: { d: `still ${key}` } } } } } });
    logger.warn({ err: new Error('the endpoint refused the request', { cause }) }, 'job failed');
    const line = lines.join('');
    expect(line).to.not.include(key);
    expect(line).to.not.include('serve-token-0042');
    expect(line).to.include('[redacted]');
    expect(line.length, 'the 45 KB page is cut').to.be.lessThan(20_000);
    const record = JSON.parse(line) as { err: { message: string; stack: string; cause?: unknown } };
    expect(record.err.message).to.include('the endpoint refused the request');
    expect(record.err.message).to.include('more chars)');
  });

  it("writes an error that holds itself deep down (ioredis's Cluster errors keep themselves in previousErrors): the log line says so instead of throwing", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const logger = createLogger(loadConfig({}, { overrides: { LOG_LEVEL: 'info' } }), sink);
    const err = Object.assign(new Error('Too many Cluster redirections. Last error: CLUSTERDOWN — 集群'), { previousErrors: [] as unknown[], n: 10n });
    const deep = { a: { b: { c: { d: { e: err } } } } };
    err.previousErrors.push(err, deep);
    expect(() => logger.warn({ err }, 'heartbeat failed')).to.not.throw();
    expect(() => logger.warn({ err: Object.assign(new Error('outer'), { detail: deep }) }, 'heartbeat failed')).to.not.throw();
    expect(lines).to.have.length(2);
    for (const line of lines) expect(JSON.parse(line)).to.have.property('msg', 'heartbeat failed');
    expect(lines.join('')).to.include('[Circular]').and.include('CLUSTERDOWN — 集群');
  });
});
