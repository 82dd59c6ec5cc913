import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { ARCHITECTURE_DOC_PATH, generatedDocs, renderStageDoc } from '../../../scripts/gen-docs.js';
import { PIPELINE_STAGES } from '../../../queues/pipeline.js';
import { SCENARIO_STAGE_OUTPUTS } from '../../../src/scenarios/schemas.js';
import { STAGE_OUTPUTS } from '../../../src/synthesis/schemas.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

describe('generated docs', () => {
  for (const { path, content } of generatedDocs()) {
    it(`${path.slice(ROOT.length)} matches what scripts/gen-docs.ts writes (run it after changing a stage or an error code)`, () => {
      expect(readFileSync(path, 'utf8') === content, `${path.slice(ROOT.length)} is stale: run npx tsx scripts/gen-docs.ts`).to.equal(true);
    });
  }

  it('documents every pipeline stage and every model stage output', () => {
    const doc = renderStageDoc();
    for (const stage of PIPELINE_STAGES) expect(doc).to.include(`| \`${stage}\` |`);
    for (const stage of [...Object.keys(STAGE_OUTPUTS), ...Object.keys(SCENARIO_STAGE_OUTPUTS)]) expect(doc).to.include(`### \`${stage}\``);
  });
});

describe('docs/architecture.md', () => {
  const doc = readFileSync(ARCHITECTURE_DOC_PATH, 'utf8');

  it('names, on each hop of its walkthrough, a file that exists and functions that are in it', () => {
    const walkthrough = doc.slice(doc.indexOf('## One item, end to end'), doc.indexOf('## Failures'));
    let checked = 0;
    for (const line of walkthrough.split('\n').filter(l => /^\d+\. /.test(l))) {
      // Each `path.ts` names the file of the `identifiers` that follow it, up to the next path.
      let file: string | null = null;
      for (const [, token] of line.matchAll(/`([^`]+)`/g)) {
        if (/^[\w-]+(\/[\w.-]+)+\.(ts|js)$/.test(token!)) {
          file = token!;
          expect(existsSync(`${ROOT}${file}`), `${file} (in: ${line.slice(0, 60)}…)`).to.equal(true);
        } else if (file && /^[A-Za-z_]\w*$/.test(token!) && /[a-z]/.test(token!) && !token!.includes('.')) {
          const source = readFileSync(`${ROOT}${file}`, 'utf8');
          expect(new RegExp(`\\b${token!}\\b`).test(source), `${token} in ${file}`).to.equal(true);
          checked += 1;
        }
      }
    }
    expect(checked).to.be.greaterThan(30);
  });

  it('points at the test that adds a stage to a declared pipeline', () => {
    expect(existsSync(`${ROOT}test/integration/pipeline.test.ts`)).to.equal(true);
    expect(doc).to.include('test/integration/pipeline.test.ts');
  });
});
