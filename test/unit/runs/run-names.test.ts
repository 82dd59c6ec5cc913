import { expect } from 'chai';
import { checkRunName, runNameProblem } from '../../../src/runs/ids.js';

describe('run names (src/runs/ids.ts)', () => {
  it('takes ASCII letters, digits and _ . -', () => {
    for (const name of ['demo', 'Run_2.v-1', 'a'.repeat(100)]) expect(runNameProblem(name), name).to.equal(null);
  });

  it('refuses other letters saying they must be ASCII, with a name that would do', () => {
    expect(runNameProblem('démo')).to.include('ASCII letters (A-Z, a-z)').and.to.include('for example "demo"');
    // A name mostly in another script keeps too little in ASCII: the suggestion adds a short digest of it (stable, apart).
    expect(runNameProblem('演示')).to.include('ASCII letters').and.to.match(/for example "run-[0-9a-f]{6}"/);
    expect(runNameProblem('运行🚀é')).to.match(/for example "e-[0-9a-f]{6}"/);
    expect(runNameProblem('运行🚀é')).to.not.equal(runNameProblem('运行🚀è'));
    expect(runNameProblem('my run')).to.include('for example "my-run"');
    expect(runNameProblem('a'.repeat(101))).to.include('1 to 100 characters');
    expect(() => checkRunName('démo')).to.throw(/run name "démo" may only contain ASCII letters/).with.property('code', 'INVALID_REQUEST');
  });

  it('refuses "." and "..", which name a folder and its parent in the paths a run name goes into (the demo emptied demo-output/. whole)', () => {
    for (const name of ['.', '..']) {
      expect(runNameProblem(name), name).to.include('names a folder itself or its parent').and.to.include('for example "run-1"');
      expect(() => checkRunName(name)).to.throw().with.property('code', 'INVALID_REQUEST');
    }
    for (const name of ['...', '.a', 'a..', '.-']) expect(runNameProblem(name), name).to.equal(null);
  });
});
