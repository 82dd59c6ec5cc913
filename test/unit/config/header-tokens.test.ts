import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { validateServeOptions } from '../../../cli/serve.js';
import { ConfigError, loadConfig } from '../../../config/index.js';

/**
 * The tokens of `envfleet serve` and the dashboard travel in `Authorization: Bearer TOKEN`. A header is bytes a
 * server reads as Latin-1, so a token with an accent or an emoji is refused by the server whatever the client
 * does: such a token is a configuration mistake, said at start-up rather than as "a valid token is required" on
 * every request.
 */
describe('tokens sent in an HTTP header: printable ASCII only', () => {
  it('a UTF-8 token sent in a header does not arrive as written (why the rule exists)', async () => {
    let received: string | undefined;
    const server = createServer((req, res) => {
      received = req.headers.authorization;
      res.end();
    });
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const token = 'tökén-🔑-secret';
      // What a client that encodes the header as UTF-8 sends (curl does); Node's fetch refuses to send it at all.
      await fetch(`http://127.0.0.1:${port}/`, { headers: { authorization: Buffer.from(`Bearer ${token}`, 'utf8').toString('latin1') } });
      expect(received).to.not.equal(`Bearer ${token}`);
    } finally {
      server.close();
    }
  });

  const configProblem = (name: string, value: string): string => {
    try {
      loadConfig({ [name]: value });
      return '';
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      return (err as Error).message;
    }
  };

  it('ENVFLEET_SERVE_TOKEN and ENVFLEET_DASHBOARD_TOKEN with an accent or an emoji are refused, naming the variable and not the value', () => {
    for (const [name, value] of [
      ['ENVFLEET_SERVE_TOKEN', 'tökén-secret'],
      ['ENVFLEET_SERVE_TOKEN', 'secret-🔑-token'],
      ['ENVFLEET_DASHBOARD_TOKEN', 'dashboard-tökén-0123456789'],
    ] as const) {
      const problem = configProblem(name, value);
      expect(problem, `${name}=${value}`).to.contain(name).and.to.match(/ASCII/).and.to.match(/Authorization: Bearer/);
      expect(problem).not.to.contain(value);
    }
  });

  it('printable ASCII tokens, punctuation included, are accepted', () => {
    expect(configProblem('ENVFLEET_SERVE_TOKEN', 'a-random_token.~!$%')).to.equal('');
    expect(configProblem('ENVFLEET_DASHBOARD_TOKEN', 'a-random-string-of-16+/=chars')).to.equal('');
  });

  it('serve --token with an accent is refused with the rule', () => {
    const base = { run: 'r1', port: 0, host: '0.0.0.0', maxSessions: 4, idleTimeout: 0 };
    expect(() => validateServeOptions({ ...base, token: 'tökén-secret' })).to.throw(ConfigError, /--token: use only ASCII/);
    expect(() => validateServeOptions({ ...base, token: 'plain-ascii-token' })).not.to.throw();
  });
});
