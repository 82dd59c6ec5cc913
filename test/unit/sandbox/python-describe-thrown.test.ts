import { expect } from 'chai';
import { describeThrown } from '../../../src/sandbox/python/python-harness.mjs';

/** What the Python interpreter thread says of a value thrown out of Pyodide: the message of a fatal error. */
describe('describeThrown (what a fatal error out of Pyodide is called)', () => {
  it('names an Error by its name and message, accents and CJK kept', () => {
    expect(describeThrown(new RangeError('pile dépassée — 栈'))).to.equal('RangeError: pile dépassée — 栈');
  });

  it('names an object that is not an Error by its own name and message (Emscripten\'s ExitStatus), not "[object Object]"', () => {
    // The shape Emscripten's `class ExitStatus { name = "ExitStatus"; constructor(status) { this.message = …; this.status = status } }` throws.
    class ExitStatus {
      name = 'ExitStatus';
      message: string;
      status: number;
      constructor(status: number) {
        this.message = `Program terminated with exit(${status})`;
        this.status = status;
      }
    }
    expect(describeThrown(new ExitStatus(3))).to.equal('ExitStatus: Program terminated with exit(3)');
    expect(describeThrown({ message: 'no name' })).to.equal('Error: no name');
  });

  it('gives any other object its tag and cut JSON, a cyclic one its tag alone, a hostile one "unknown error"', () => {
    expect(describeThrown({ status: 7 })).to.equal('[object Object] {"status":7}');
    // Emscripten's filesystem error, as a careless environment's run once reached the interpreter thread with it.
    expect(describeThrown({ name: 'ErrnoError', errno: 2 })).to.equal('ErrnoError {"name":"ErrnoError","errno":2}');
    expect(describeThrown({ big: 'x'.repeat(1_000) })).to.have.length(16 + 300);
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(describeThrown(cyclic)).to.equal('[object Object]');
    const hostile = new Proxy({}, { get: () => { throw new Error('trap'); } });
    expect(describeThrown(hostile)).to.equal('unknown error');
  });

  it('turns anything else into its string', () => {
    expect(describeThrown('Aborted(OOM)')).to.equal('Aborted(OOM)');
    expect(describeThrown(42)).to.equal('42');
    expect(describeThrown(undefined)).to.equal('undefined');
  });
});
