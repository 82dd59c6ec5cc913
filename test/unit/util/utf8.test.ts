import { expect } from 'chai';
import { firstInvalidUtf8, notUtf8Problem } from '../../../src/util/utf8.js';

/** What a file that is not UTF-8 is told: where, and what to do (a stranger's probe: a file cut in the middle of an emoji was told to be saved as UTF-8). */
describe('notUtf8Problem (src/util/utf8.ts)', () => {
  const problem = (bytes: Buffer) => notUtf8Problem(bytes, 0, firstInvalidUtf8(bytes));

  it('says a line that ends in the middle of a character was cut, with how many of its bytes are there', () => {
    const task = Buffer.from('{"task": "Réserve une table 🍽', 'utf8');
    const cut = task.subarray(0, task.length - 2); // the emoji's 4 bytes, 2 of them left
    expect(problem(cut)).to.equal('not UTF-8 text: the line ends in the middle of a character (byte 0xF0 at column 29 begins a character of 4 bytes, of which only 2 are there): the file was cut short, or the line cut by a tool that counts bytes; write it again whole');
    const cjk = Buffer.concat([Buffer.from('予約 '), Buffer.from('約').subarray(0, 2), Buffer.from('\n{"task": "next"}\n')]);
    expect(problem(cjk)).to.match(/^not UTF-8 text: the line ends in the middle of a character \(byte 0xE7 at column 4 begins a character of 3 bytes, of which only 2 are there\)/);
  });

  it('says a byte of another encoding is one, as before (Latin-1 / Windows-1252), also at the end of a line', () => {
    expect(problem(Buffer.from('caf\xe9 au lait', 'latin1'))).to.equal('not UTF-8 text: byte 0xE9 at column 4 (as Latin-1 / Windows-1252 writes accented letters); save the file as UTF-8');
    // A lone lead byte at a line's end is as likely a Latin-1 letter ("café"): said as one.
    expect(problem(Buffer.from('caf\xe9\nthé\n', 'latin1'))).to.equal('not UTF-8 text: byte 0xE9 at column 4 (as Latin-1 / Windows-1252 writes accented letters); save the file as UTF-8');
  });
});
