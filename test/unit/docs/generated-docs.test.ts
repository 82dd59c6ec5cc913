import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { STAGE_DOC_PATH, renderStageDoc } from '../../../scripts/gen-stage-docs.js';
import { STAGE_OUTPUTS } from '../../../src/synthesis/schemas.js';
import { SCENARIO_STAGE_OUTPUTS } from '../../../src/scenarios/schemas.js';

describe('docs/stages.md', () => {
  it('matches what scripts/gen-stage-docs.ts writes from the schemas (run it after changing a stage)', () => {
    expect(readFileSync(STAGE_DOC_PATH, 'utf8')).to.equal(renderStageDoc());
  });

  it('documents every synthesis stage output', () => {
    const doc = renderStageDoc();
    for (const stage of [...Object.keys(STAGE_OUTPUTS), ...Object.keys(SCENARIO_STAGE_OUTPUTS)]) expect(doc).to.include(`## \`${stage}\``);
  });
});
