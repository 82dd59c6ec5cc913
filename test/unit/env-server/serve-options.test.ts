import { expect } from 'chai';
import { validateServeOptions, type ServeOptions } from '../../../cli/serve.js';
import { pathToken } from '../../../http/env-server/path-token.js';

const base: ServeOptions = { run: 'r1', port: 0, host: '127.0.0.1', maxSessions: 4, idleTimeout: 0 };
const problemOf = (opts: ServeOptions): string => {
  try {
    validateServeOptions(opts);
    return '';
  } catch (err) {
    return (err as Error).message;
  }
};

describe('envfleet serve settings and the token in the path', () => {
  it('takes exactly one of --run and the two export files, saying what is missing', () => {
    expect(problemOf(base)).to.equal('');
    expect(problemOf({ ...base, run: undefined, environments: 'e.jsonl', scenarios: 's.jsonl' })).to.equal('');
    expect(problemOf({ ...base, run: undefined })).to.match(/say what to serve: --run NAME .* --environments/);
    expect(problemOf({ ...base, environments: 'e.jsonl', scenarios: 's.jsonl' })).to.match(/not both/);
    expect(problemOf({ ...base, run: undefined, environments: 'e.jsonl' })).to.match(/missing: --scenarios/);
    expect(problemOf({ ...base, run: undefined, scenarios: 's.jsonl' })).to.match(/missing: --environments/);
  });

  it('checks --advertise-url and --result-ttl', () => {
    expect(problemOf({ ...base, advertiseUrl: 'http://10.0.0.5:8090' })).to.equal('');
    for (const bad of ['10.0.0.5:8090', 'ftp://h:1', 'http://h:1/prefix', 'http://user:pw@h:1', 'not a url']) {
      expect(problemOf({ ...base, advertiseUrl: bad }), bad).to.match(/--advertise-url .* is not a base URL/);
    }
    expect(problemOf({ ...base, resultTtl: 0 })).to.match(/--result-ttl must be seconds/);
    expect(problemOf({ ...base, resultTtl: 1.5 })).to.match(/--result-ttl must be seconds/);
  });

  it('reads BASE/t/TOKEN/… as BASE/… with the token, URL-decoded (multi-byte too), and nothing else', () => {
    expect(pathToken('/t/abc12345/seed_session')).to.deep.equal({ token: 'abc12345', rest: '/seed_session' });
    expect(pathToken('/t/abc12345/ws?x=1')).to.deep.equal({ token: 'abc12345', rest: '/ws?x=1' });
    expect(pathToken('/t/abc12345')).to.deep.equal({ token: 'abc12345', rest: '/' });
    expect(pathToken(`/t/${encodeURIComponent('tök/én-漢字🚗')}/sessions/x/mcp`)).to.deep.equal({ token: 'tök/én-漢字🚗', rest: '/sessions/x/mcp' });
    expect(pathToken('/t/%E0%A4%A/verify'), 'a broken escape is no token').to.equal(null);
    expect(pathToken('/tools/t/abc/verify')).to.equal(null);
    expect(pathToken('/t//verify')).to.equal(null);
  });
});
