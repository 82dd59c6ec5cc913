import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { ENV_SERVER_ERROR_CODES, ENV_SERVER_HTTP_STATUS, envServerCodeDocs } from '../../../src/env-server/errors.js';

const source = (path: string) => readFileSync(fileURLToPath(new URL(`../../../${path}`, import.meta.url)), 'utf8');

describe("the environment server's error table (docs/errors.md)", () => {
  const rows = envServerCodeDocs();
  const documented = new Set(rows.map(r => r.code.replaceAll('`', '')));

  it('has every env-server code, with its HTTP status, a meaning and what to do', () => {
    for (const code of Object.keys(ENV_SERVER_ERROR_CODES)) {
      const row = rows.find(r => r.code === code);
      expect(row, code).to.not.equal(undefined);
      expect(row!.shape, code).to.include(`HTTP ${ENV_SERVER_HTTP_STATUS[code as keyof typeof ENV_SERVER_HTTP_STATUS]}`);
    }
    for (const row of rows) for (const field of [row.shape, row.means, row.todo]) expect(field.length, row.code).to.be.greaterThan(0);
  });

  it('has every JSON-RPC code the MCP and OpenEnv surfaces send, and every OpenEnv error code', () => {
    const mcp = source('http/env-server/mcp.ts');
    const openenv = source('http/env-server/openenv.ts');
    const rpc = new Set([...`${mcp}\n${openenv}`.matchAll(/-32\d{3}/g)].map(m => m[0]));
    expect(rpc.size).to.be.greaterThan(5);
    for (const code of rpc) expect(documented.has(code), code).to.equal(true);
    const union = /readonly code: ((?:'[A-Z_]+'(?: \| )?)+)/.exec(openenv);
    expect(union, 'the OpenEnvError code union').to.not.equal(null);
    for (const [, code] of union![1]!.matchAll(/'([A-Z_]+)'/g)) expect(documented.has(code!), code).to.equal(true);
  });
});
