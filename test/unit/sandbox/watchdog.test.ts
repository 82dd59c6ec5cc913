import { expect } from 'chai';
import { createWatchBoard, graceMs, leaveWatch, WatchKeeper, type WatchBoard } from '../../../src/sandbox/watchdog.js';

/** Writes a slot as a pool thread would: its owner, its heartbeat, its last arm and the session it works for. */
function write(board: WatchBoard, slot: number, v: { thread: number; beat: number; armedAt: number; armedMs: number; session: number }): void {
  new Int32Array(board.owners)[slot] = v.thread;
  new Float64Array(board.times).set([v.beat, v.armedAt, v.armedMs, v.session], slot * 4);
}

describe('the sandbox watchdog (WatchKeeper)', () => {
  it('takes a thread for stuck only when it armed after its last heartbeat and nothing changed for the deadline and its grace, by its own clock', () => {
    const board = createWatchBoard();
    const keeper = new WatchKeeper(board, 250);
    write(board, 0, { thread: 7, beat: 1_000, armedAt: 1_050, armedMs: 300, session: 42 });
    expect(keeper.stuck(0)).to.deep.equal([]);
    let t = 0;
    for (; t < 300 + graceMs(300); t += 250) expect(keeper.stuck(t), `at ${t} ms`).to.deep.equal([]);
    const [stuck] = keeper.stuck(t + 250);
    expect(stuck).to.deep.include({ threadId: 7, armedMs: 300, session: 42 });
  });

  it('never takes an idle thread (a heartbeat after its last arm), however old its stamps', () => {
    const board = createWatchBoard();
    const keeper = new WatchKeeper(board, 250);
    write(board, 3, { thread: 9, beat: 2_000, armedAt: 1_000, armedMs: 300, session: 5 });
    for (let t = 0; t < 60_000; t += 250) expect(keeper.stuck(t)).to.deep.equal([]);
  });

  it('starts counting again after a round that came late (the whole process was stopped: its threads could not beat)', () => {
    // A reviewer's probe: SIGSTOP of a worker for 3-4 s, then SIGCONT; the watchdog ran before the threads' heartbeat
    // timers and terminated idle threads, blaming the session that used one last.
    const board = createWatchBoard();
    const keeper = new WatchKeeper(board, 250);
    write(board, 0, { thread: 7, beat: 1_000, armedAt: 1_050, armedMs: 300, session: 42 });
    expect(keeper.stuck(0)).to.deep.equal([]);
    expect(keeper.stuck(250)).to.deep.equal([]);
    // 4 s without a round, then rounds again: the count starts at the late round.
    expect(keeper.stuck(4_250)).to.deep.equal([]);
    let t = 4_500;
    for (; t <= 4_250 + 300 + graceMs(300); t += 250) expect(keeper.stuck(t), `at ${t} ms`).to.deep.equal([]);
    expect(keeper.stuck(t)).to.have.length(1);
  });

  it('empties a slot as it frees it: the next thread to claim it is not judged by the last one\'s arm', () => {
    const board = createWatchBoard();
    write(board, 0, { thread: 7, beat: 1_000, armedAt: 1_050, armedMs: 300, session: 42 });
    leaveWatch(board, 7);
    expect(new Int32Array(board.owners)[0]).to.equal(0);
    expect([...new Float64Array(board.times).subarray(0, 4)]).to.deep.equal([0, 0, 0, 0]);
    const keeper = new WatchKeeper(board, 250);
    new Int32Array(board.owners)[0] = 8;
    for (let t = 0; t < 10_000; t += 250) expect(keeper.stuck(t)).to.deep.equal([]);
  });
});
