import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { makeFolder, OutputFolderError } from '../../../src/util/make-dir.js';

/** What makeFolder threw (it must throw). */
async function refused(path: string): Promise<OutputFolderError> {
  try {
    await makeFolder(path, 'the output folder (export --out)');
  } catch (err) {
    expect(err).to.be.instanceOf(OutputFolderError);
    return err as OutputFolderError;
  }
  throw new Error(`makeFolder(${path}) did not fail`);
}

describe('makeFolder (src/util/make-dir.ts): mkdir -p that fails with the reason', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-mkdir-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('makes the missing folders of a path, and takes one that is there', async () => {
    const deep = join(dir, 'a', 'b', 'c');
    await makeFolder(deep, 'x');
    expect((await stat(deep)).isDirectory()).to.equal(true);
    await makeFolder(deep, 'x');
    await Promise.all([1, 2, 3].map(i => makeFolder(join(dir, 'same', 'again'), `x${i}`)));
  });

  it('under /proc it fails with ENOENT and says why, instead of spinning (Node 20 recursive mkdir loops there)', async function () {
    if (process.platform !== 'linux') this.skip();
    for (const path of ['/proc/envfleet-x', '/proc/envfleet-x/deeper']) {
      const err = await refused(path);
      expect(err.code).to.equal('OUTPUT_NOT_WRITABLE');
      expect(err.message).to.include(`cannot create the output folder (export --out) ${path}`).and.to.include('(ENOENT)').and.to.include('virtual file system');
    }
  });

  it('a file in the way is named as such', async () => {
    await writeFile(join(dir, 'file'), 'x');
    expect((await refused(join(dir, 'file'))).message).to.include('a file of that name is in the way (EEXIST)');
    expect((await refused(join(dir, 'file', 'below'))).message).to.include('a part of the path is a file, not a folder (ENOTDIR)');
  });

  it('a place the system refuses says so, with its code', async function () {
    if (process.platform !== 'linux') this.skip();
    const err = await refused('/sys/envfleet-x');
    expect(err.message).to.match(/\((EPERM|EACCES|EROFS)\)/).and.to.include('/sys/envfleet-x').and.to.include('Choose a folder on a disk you can write to');
  });
});
