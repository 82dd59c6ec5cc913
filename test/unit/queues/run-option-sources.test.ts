import { expect } from 'chai';
import { RUN_OPTION_SOURCES, loadConfig } from '../../../config/index.js';
import { runOptionsFrom } from '../../../queues/submit.js';

describe('RUN_OPTION_SOURCES: the flag or variable behind each option a run freezes', () => {
  it('names one for every option runOptionsFrom freezes (the sandbox stack is not a setting)', () => {
    const options = runOptionsFrom(loadConfig({}), { language: 'python' }) as unknown as Record<string, unknown>;
    const leaves: string[] = [];
    for (const [key, value] of Object.entries(options)) {
      if (key === 'limits') leaves.push(...Object.keys(value as object).map(k => `limits.${k}`));
      else leaves.push(key);
    }
    const unnamed = leaves.filter(path => path !== 'limits.stackBytes' && !(path in RUN_OPTION_SOURCES));
    expect(unnamed).to.deep.equal([]);
  });
});
