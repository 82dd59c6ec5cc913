import { execFile } from 'node:child_process';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';

const run = promisify(execFile);
const ROOT = new URL('../..', import.meta.url).pathname;

/**
 * An export file that cannot be written (a full disk, a file-size limit) is said with the file and what to do, and
 * leaves nothing under its name. A stranger's probe read "envfleet: EFBIG: file too large, write" and
 * "ENOSPC: no space left on device, write", naming no file. The limit here is the shell's `ulimit -f` (no root needed).
 */
describe('an export file past a file-size limit (ulimit -f)', function () {
  this.timeout(60_000);

  it('fails with OUTPUT_NOT_WRITABLE naming the file, and leaves no file under its name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-efbig-'));
    const script = `
      import { JsonlWriter } from './src/datasets/jsonl-writer.ts';
      const w = new JsonlWriter(process.argv[1] + '/sft-openai.jsonl');
      try {
        for (let i = 0; i < 2000; i++) await w.write({ messages: [{ role: 'user', content: 'données 日本語 🚀 '.repeat(20) }] });
        await w.close();
        console.log('written');
      } catch (err) {
        await w.abort();
        console.log(JSON.stringify({ code: err.code, message: err.message }));
      }`;
    // 64 blocks of 1 KiB: the records are ~600 KB.
    const { stdout } = await run('bash', ['-c', 'ulimit -f 64; exec "$0" --import tsx --input-type=module -e "$1" "$2"', process.execPath, script, dir], { cwd: ROOT });
    const out = JSON.parse(stdout.trim()) as { code: string; message: string };
    expect(out.code).to.equal('OUTPUT_NOT_WRITABLE');
    expect(out.message).to.include(join(dir, 'sft-openai.jsonl')).and.to.match(/\(EFBIG\)\. Raise the limit \(ulimit -f\), or write to a file system that takes larger files; nothing half-written is left/);
    expect(await readdir(dir)).to.deep.equal([]);
  });
});
