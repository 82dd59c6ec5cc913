import { expect } from 'chai';
import { loadExportScenarioSource } from '../../../src/env-server/file-source.js';
import { readJsonRecords } from '../../../src/importers/json-records.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import { readDescriptionsFile, readTasksFile } from '../../../src/synthesis/inputs.js';
import { rejection } from '../../helpers/assert.js';

describe("a file argument of '-' where standard input is not read", () => {
  // A stranger's probe: synth, scenarios, serve and import said "-: cannot read the file (ENOENT)", where envfleet sandbox
  // run and check read standard input from '-'.
  const HINT = "standard input (-) is read only by envfleet sandbox run and check: give the file's path";

  it('synth --tasks / --descriptions say so', async () => {
    expect(String(await rejection(readTasksFile('-')))).to.include('-: cannot read the file (ENOENT)').and.include(HINT);
    expect(String(await rejection(readDescriptionsFile('-')))).to.include(HINT);
  });

  it('serve --environments / --scenarios say so', async () => {
    const err = await rejection(loadExportScenarioSource({ environments: '-', scenarios: '-' }, DEFAULT_SANDBOX_LIMITS));
    expect(String(err)).to.include(HINT).and.include('envfleet export --run NAME --out DIR');
  });

  it('import --envs says so', async () => {
    const err = await rejection((async () => {
      for await (const _ of readJsonRecords('-', new Set())) void _;
    })());
    expect(String(err)).to.include(HINT);
  });

  it('a file that is missing under another name says nothing of standard input', async () => {
    expect(String(await rejection(readTasksFile('/nonexistent/tâches.jsonl')))).to.include('cannot read the file (ENOENT)').and.not.include('standard input');
  });
});
