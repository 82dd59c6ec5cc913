// @ts-check
/**
 * The Python child process: forked by PythonSandboxRunner (python-runner.ts) under Node's permission
 * model (read-only access to Pyodide's package and to this folder, worker threads allowed, no child
 * processes, no writes), with code generation from strings off and an empty environment. It holds
 * the interpreter threads (python-interpreter.mjs), places sessions on them, enforces the deadlines
 * and the CPU budget, and recycles an interpreter that a deadline could not stop, that failed, or
 * whose heap hit its cap. Node built-ins only. It never touches the filesystem beyond loading code:
 * it reads the cached memory snapshot (the one file it may read there), and a snapshot it built goes
 * to the parent over IPC (base64), which writes it.
 *
 * Protocol (IPC, JSON serialization): the parent sends `{type: 'init', ...}` once, then requests
 * `{id, op, ...}`; the child answers `{id, ok: true, value}` or `{id, ok: false, error: {code, message}}`,
 * and sends `{type: 'snapshot', base64}` once when it built a snapshot, `{type: 'ready', ...}` when its
 * interpreters are up, and `{type: 'log', level, msg, data}` for the parent's logger.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { DEPTH_ADVICE, deeperThan, INITIAL_STATE_CAP_ADVICE, MAX_JSON_DEPTH, RESULT_CAP_ADVICE, RESULT_CAP_SETTING, STATE_CAP_ADVICE } from './python-harness.mjs';

const INTERPRETER = new URL('./python-interpreter.mjs', import.meta.url);
/** How often, in the second half of the grace after a deadline, an interrupt the buffer no longer holds is sent again. */
const REARM_MS = 100;
/** How many jobs of running environments may go before a queued creation (Interpreter.run). */
const MAX_OVERTAKEN = 32;
const send = (/** @type {any} */ msg) => /** @type {any} */ (process).send(msg);
const log = (/** @type {string} */ level, /** @type {string} */ msg, /** @type {Record<string, unknown>} */ data = {}) => send({ type: 'log', level, msg, data });

/**
 * @typedef {{ createDeadlineMs: number, callDeadlineMs: number, checkDeadlineMs: number, sessionCpuMs: number, maxResultBytes: number, maxStateBytes: number }} Limits
 * @typedef {{ code: string, message: string, byOther?: boolean, cotenant?: boolean }} Failure
 * @typedef {{ fn: string, args: (string | boolean)[], deadlineMs: number, resolve: (r: Answer) => void, overtaken?: number, admit?: () => string | null, forSid?: string, openId?: number }} Job
 * @typedef {{ text: string, us: number, exhausted: boolean, refusedBytes?: number, fatal: boolean, heapBytes: number, usedBytes?: number | null, garbageBytes?: number, collected?: boolean, freedBytes?: number, lost?: Failure, interrupted?: boolean, refused?: boolean }} Answer
 */

/** @type {{ indexURL: string, heapMb: number, interpreters: number, sessionsPerInterpreter: number, graceMs: number, recycleHeapMb: number, packages?: { module: string, file: string, isPackage: boolean, source: string }[] }} */
let settings;
/** @type {Uint8Array | undefined} */
let snapshot;
let nextSid = 0;
let nextInterp = 0;

/** One interpreter thread: a queue of jobs, run one at a time so that a deadline times the job that runs. */
class Interpreter {
  constructor() {
    this.n = ++nextInterp;
    this.interrupt = new SharedArrayBuffer(4);
    this.flag = new Int32Array(this.interrupt);
    /** @type {Set<string>} */
    this.sessions = new Set();
    /** @type {Job[]} */
    this.queue = [];
    /** @type {Job | null} */
    this.running = null;
    this.retiring = false;
    this.dead = false;
    this.heapBytes = 0;
    /** The bytes in use after its last creation or drop, from half its cap on (null: under half, or not known yet). @type {number | null} */
    this.usedBytes = null;
    /** Room held for a creation refused for want of it, until when (Date.now()). @type {{ bytes: number, until: number } | null} */
    this.reserved = null;
    /** What a collection may give back there, as its last reading says (python-interpreter.mjs, unexplained): collectFor. */
    this.garbageBytes = 0;
    /** A collection asked for by a creation that did not fit, until it answers (collectFor). @type {Promise<void> | null} */
    this.collecting = null;
    /** What that collection is expected to give back (the garbageBytes it was asked for on). */
    this.collectingBytes = 0;
    /** Collections of the cycle collector made on it (at drops and asked for), for stats. */
    this.collections = 0;
    /** Sessions stopped for holding the most when another's call found no room: how many, and what the last held. */
    this.holdersStopped = 0;
    this.lastHolderBytes = 0;
    /** What a collection must be expected to give back before one is asked for (raised after one that gave back little). */
    this.askFloor = 0;
    this.fsBytes = 0;
    this.jobSeq = 0;
    /** @type {NodeJS.Timeout | undefined} */ this.interruptTimer = undefined;
    /** @type {NodeJS.Timeout | undefined} */ this.killTimer = undefined;
    this.interrupted = false;
    this.wasReady = false;
    this.worker = new Worker(INTERPRETER, { workerData: { indexURL: settings.indexURL, heapMb: settings.heapMb, snapshot, interrupt: this.interrupt, packages: settings.packages }, env: {}, stdout: true, stderr: true });
    this.worker.stdout.resume();
    this.worker.stderr.resume();
    this.ready = new Promise((resolve, reject) => {
      const onMessage = (/** @type {any} */ m) => {
        if (m.ready) {
          this.wasReady = true;
          this.heapBytes = m.heapBytes;
          this.worker.off('error', reject);
          this.worker.on('message', answer => this.answered(answer));
          resolve(m);
        } else reject(new Error(`unexpected first message from the interpreter: ${JSON.stringify(m).slice(0, 200)}`));
      };
      this.worker.once('message', onMessage);
      this.worker.once('error', reject);
      this.worker.once('exit', code => reject(new Error(`the interpreter thread exited (code ${code}) before it was ready`)));
    });
    // Handled here too: a start that failed terminates its other threads, whose `ready` then rejects unobserved.
    this.ready.catch(() => undefined);
    this.worker.on('error', err => log('error', 'a Python interpreter thread failed', { interpreter: this.n, err: String(err) }));
    // A thread that ends on its own (a fatal error that escaped the message handler) ends its sessions:
    // ENV_DISPOSED, which rollouts treat as the end of the environment (SANDBOX_UNAVAILABLE is not).
    // The job it was running is taken for the cause.
    this.worker.on('exit', () => this.lost({ code: 'ENV_DISPOSED', message: 'the Python interpreter thread ended (a fatal error); the environment is gone' }, this.running ? sidOf(this.running) : null));
  }

  /**
   * @param {string} fn @param {(string | boolean)[]} args @param {number} deadlineMs
   * @param {() => string | null} [admit] asked when the job is about to start: a reason not to (it is answered `refused`)
   * @param {string} [forSid] the session a job of the harness's own is run for (a tamper report after its check or its
   * drop): should it take the interpreter down, that session is its cause, not one of the co-tenants
   * @param {number} [openId] the open request a creation is for (giveUp)
   * @returns {Promise<Answer>}
   */
  run(fn, args, deadlineMs, admit, forSid, openId) {
    // (A job given to an interpreter that is gone already was never its cause: taken down with it, as a co-tenant.)
    if (this.dead) return Promise.resolve(lostAnswer({ code: 'ENV_DISPOSED', message: 'the interpreter holding this environment was recycled', cotenant: true }));
    return new Promise(resolve => {
      const job = { fn, args, deadlineMs, resolve, ...(admit ? { admit } : {}), ...(forSid ? { forSid } : {}), ...(openId !== undefined ? { openId } : {}) };
      // The work of environments already running (their calls, states, checks, drops) goes before the creation of new
      // ones: one at a time, a burst of creations (an episode's environment starts while its first model call is made)
      // held every running episode's calls behind them (a τ-bench airline environment takes seconds to create; 64
      // episodes of it made no progress for minutes, a stranger's probe), and its memory is freed by episodes that end.
      // A creation is passed by at most MAX_OVERTAKEN jobs: an interpreter whose running environments keep it busy
      // still starts new ones (a served session's open would otherwise wait for ever).
      const firstCreate = fn === 'create' ? -1 : this.queue.findIndex(j => j.fn === 'create');
      if (firstCreate < 0 || (this.queue[firstCreate]?.overtaken ?? 0) >= MAX_OVERTAKEN) this.queue.push(job);
      else {
        for (const queued of this.queue) if (queued.fn === 'create') queued.overtaken = (queued.overtaken ?? 0) + 1;
        this.queue.splice(firstCreate, 0, job);
      }
      this.pump();
    });
  }

  /**
   * Answers a creation queued for the open `openId` (abandonOpen) as refused at once, without waiting for its turn: a
   * cancelled run's starts admitted and queued behind the running episodes' work learnt it only at their turn, all
   * together (a stranger's probe: 13–33 s after the cancel). @param {number} openId @param {string} why
   */
  giveUp(openId, why) {
    const i = this.queue.findIndex(j => j.fn === 'create' && j.openId === openId);
    if (i < 0) return;
    const [job] = this.queue.splice(i, 1);
    job?.resolve({ text: JSON.stringify({ err: 'SANDBOX_MEMORY_FULL', message: why }), us: 0, exhausted: false, fatal: false, heapBytes: this.heapBytes, refused: true });
  }

  pump() {
    if (this.running || this.dead) return;
    let job = this.queue.shift();
    // A creation admitted when it was asked for may no longer fit when its turn comes (the creations queued before it
    // filled the heap): asked again now, it is answered without running (a burst of 64 τ-bench creations was admitted
    // on an empty interpreter, and the last 31 were each tried for seconds and failed, while the running episodes waited).
    for (let refused = job?.admit?.(); job && refused; refused = job?.admit?.()) {
      job.resolve({ text: JSON.stringify({ err: 'SANDBOX_MEMORY_FULL', message: refused }), us: 0, exhausted: false, fatal: false, heapBytes: this.heapBytes, refused: true });
      job = this.queue.shift();
    }
    if (!job) return;
    this.running = job;
    this.interrupted = false;
    Atomics.store(this.flag, 0, 0);
    // At the deadline: SIGINT (KeyboardInterrupt in Python). If the code swallows it (a bare except
    // around a loop) or sits in C, the thread is terminated after the grace period.
    this.interruptTimer = setTimeout(() => {
      this.interrupted = true;
      Atomics.store(this.flag, 0, 2);
      const killAt = performance.now() + settings.graceMs;
      // Pyodide's check of the buffer (_Py_CheckEmscriptenSignals_Helper in pyodide.asm.mjs) reads it, then writes 0
      // whatever it read: a write of ours landing in between is erased and nothing is raised. A tight loop checks all
      // the time, so a plain `while True: pass` ran on about 1 time in 10 (in Pyodide alone too), and its interpreter
      // was terminated with every co-tenant's session. So from half the grace on, an interrupt the buffer no longer
      // holds is written again every REARM_MS. Not earlier: an interrupt that did land gets that long to unwind and
      // answer before a second one can reach the harness's cleanup. A loop that swallows KeyboardInterrupt swallows
      // each one, and the grace still ends it. (To check again with another Pyodide.)
      const again = () => {
        const left = killAt - performance.now();
        if (left <= 0) {
          this.kill();
          return;
        }
        if (Atomics.load(this.flag, 0) === 0) Atomics.store(this.flag, 0, 2);
        this.killTimer = setTimeout(again, Math.min(REARM_MS, left));
      };
      this.killTimer = setTimeout(again, settings.graceMs / 2);
    }, job.deadlineMs);
    this.worker.postMessage({ id: ++this.jobSeq, fn: job.fn, args: job.args });
  }

  /** @param {any} answer */
  answered(answer) {
    clearTimeout(this.interruptTimer);
    clearTimeout(this.killTimer);
    const job = this.running;
    this.running = null;
    this.heapBytes = answer.heapBytes;
    if (answer.usedBytes !== undefined) this.usedBytes = answer.usedBytes;
    if (answer.garbageBytes !== undefined) this.garbageBytes = answer.garbageBytes;
    if (answer.collected) this.collections += 1;
    // (an end's collection: what is unexplained is counted afresh, and an ask is weighed as the first after it)
    if (answer.collected && job?.fn === 'drop') this.askFloor = 0;
    if (answer.fatal) {
      this.retiring = true;
      log('error', 'a Python interpreter failed fatally; it is replaced and its other sessions end (ENV_DISPOSED)', { interpreter: this.n, answer: String(answer.text).slice(0, 700) });
    }
    // A heap never shrinks: past the threshold (a memory bomb ends there) the interpreter is replaced once it is idle.
    // Files in the in-memory filesystem live outside the heap: they count toward the threshold too.
    this.fsBytes = answer.fsBytes ?? 0;
    if (answer.heapBytes + this.fsBytes > settings.recycleHeapMb * 1024 * 1024) this.retiring = true;
    // An interrupt that arrived after the code returned turns nothing into an error; one that was
    // answered as KeyboardInterrupt is DEADLINE_EXCEEDED already. Whether one was sent tells that apart from a
    // KeyboardInterrupt the code raised itself (answerEnvelope).
    answer.interrupted = this.interrupted;
    job?.resolve(answer);
    // (after the resolve: the drop's caller has taken the session off first)
    if (job?.fn === 'drop' || job?.fn === 'collect') roomMayBeFree();
    if (answer.fatal) this.kill(job ? sidOf(job) : null);
    // A creation that found no room: the next job starts once its caller has learnt from it (the awaiting code runs
    // first), so that a creation queued behind it is asked with what was learnt.
    else if (job?.fn === 'create' && answer.exhausted) setTimeout(() => this.pump(), 0);
    else this.pump();
    this.maybeRetire();
  }

  /**
   * Terminates the thread: the running job ends with DEADLINE_EXCEEDED, every other session on it is lost.
   * @param {string | null} [culprit] the session whose job took the interpreter down, when it has answered already
   */
  kill(culprit = null) {
    if (this.dead) return;
    // (Said only for a job still running at its grace's end: a fatal error answered already, with an interrupt sent
    // before it, has its own line, and this one beside it misled a stranger.)
    if (this.interrupted && this.running) log('warn', 'a Python call ran past its deadline and did not stop at the interrupt: its interpreter is terminated and replaced, and its other sessions end (ENV_DISPOSED)', { interpreter: this.n, sessions: this.sessions.size, job: this.running.fn, deadlineMs: this.running.deadlineMs });
    const job = this.running;
    this.running = null;
    if (job) job.resolve(lostAnswer(this.interrupted ? { code: 'DEADLINE_EXCEEDED', message: `the call ran past its deadline, did not stop at the interrupt (a loop that catches KeyboardInterrupt, or a long C-level operation) and its interpreter was terminated` } : { code: 'ENV_DISPOSED', message: 'the Python interpreter failed and was replaced' }));
    this.lost({ code: 'ENV_DISPOSED', message: 'the interpreter holding this environment was recycled (another environment on it had to be stopped)' }, job ? sidOf(job) : culprit);
    void this.worker.terminate();
  }

  /**
   * Ends every session and job on the interpreter with `why`. The session `culprit` took it down (a fatal error, a
   * call that ignored the interrupt, a tampering found after its drop or its check): its jobs and itself end with `why`
   * as their own failure; every other one was taken down with it (`cotenant`: a server does not score it).
   * @param {Failure} why @param {string | null} [culprit]
   */
  lost(why, culprit = null) {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.interruptTimer);
    clearTimeout(this.killTimer);
    const taken = { ...why, cotenant: true };
    /** @param {string | null} sid */
    const failure = sid => (sid !== null && sid === culprit ? why : taken);
    if (this.running) this.running.resolve(lostAnswer(failure(sidOf(this.running))));
    this.running = null;
    for (const job of this.queue.splice(0)) job.resolve(lostAnswer(failure(sidOf(job))));
    for (const sid of this.sessions) {
      const s = sessions.get(sid);
      if (s) s.lost = failure(sid);
    }
    // One that never became ready is not replaced: that would loop (the start-up reports it instead).
    if (this.wasReady) replace(this);
    else log('error', 'a Python interpreter thread ended before it was ready; it is not replaced', { interpreter: this.n });
  }

  maybeRetire() {
    if (this.retiring && !this.dead && this.sessions.size === 0 && !this.running && this.queue.length === 0) {
      log('info', 'recycling a Python interpreter', { interpreter: this.n, heapMb: Math.round(this.heapBytes / 1048576) });
      this.dead = true;
      void this.worker.terminate();
      replace(this);
    }
  }
}

/** The interpreter functions whose first argument is a session's id. */
const SESSION_FNS = new Set(['create', 'call', 'state', 'initial', 'finish', 'checks_context', 'check', 'drop']);
/** The session a job is for, or null (a footprint measure, clearing the folders, a tamper report for none). @param {{ fn: string, args: unknown[], forSid?: string }} job */
function sidOf(job) {
  if (job.forSid) return job.forSid;
  return SESSION_FNS.has(job.fn) && typeof job.args[0] === 'string' ? job.args[0] : null;
}

/** @param {Failure} failure @returns {Answer} */
function lostAnswer(failure) {
  return { text: JSON.stringify({ err: failure.code, message: failure.message }), us: 0, exhausted: false, fatal: false, heapBytes: 0, lost: failure };
}

/** @type {Interpreter[]} */
let interpreters = [];

/** @param {Interpreter} old */
function replace(old) {
  const i = interpreters.indexOf(old);
  if (i < 0) return;
  const fresh = new Interpreter();
  interpreters[i] = fresh;
  fresh.ready.then(roomMayBeFree, err => log('error', 'a replacement Python interpreter did not start', { err: String(err) }));
}

/** The interpreter with the fewest sessions that is ready and not retiring. */
async function pick(needBytes = 0, endBytes = 0) {
  const live = interpreters.filter(p => !p.retiring && !p.dead);
  live.sort((a, b) => a.sessions.size - b.sessions.size);
  const p = live.find(i => hasRoom(i, needBytes, '', endBytes)) ?? live[0] ?? interpreters[0];
  if (!p) throw new Error('no interpreter');
  await p.ready;
  return p;
}

/**
 * Whether a new environment that may need `needBytes` fits beside the environments on `p`, as far as its last reading
 * says, with room kept for the end of one of them or of itself (`endBytes`: endRoom): one alone always does (its own
 * limits decide), and so does any under half its cap.
 * @param {Interpreter} p @param {number} needBytes @param {string} [sid] the creation's own session, not counted as another
 * @param {number} [endBytes] what the new one's own end may take (endNeed)
 * @param {number} [freedBytes] taken off the reading (what a collection may give back: collectFor)
 */
function hasRoom(p, needBytes, sid = '', endBytes = 0, freedBytes = 0) {
  if (p.sessions.size - (p.sessions.has(sid) ? 1 : 0) === 0 || p.usedBytes === null) return true;
  // Room held for a larger creation refused lately, so that a flow of small ones does not keep it out for ever.
  const held = p.reserved && p.reserved.until > Date.now() && needBytes < p.reserved.bytes ? p.reserved.bytes : 0;
  return p.usedBytes - freedBytes + needBytes + held + Math.max(endRoom(p, sid), endBytes) <= settings.heapMb * 1048576;
}

/**
 * A creation of `needBytes` (and an end of `endBytes`) that does not fit on `p` asks for a collection of the cycles that
 * ended sessions left there when what a collection may give back (the interpreter's garbageBytes: what is in use beyond
 * what its live sessions' creations took) would make it fit: the collection to await before asking again (null: none
 * would help). One at a time; creations waiting for room are woken when it answers; one that gave back less leaves
 * nothing more to ask for until that amount grows again. The interpreter collects at an end only once that amount is
 * large (python-interpreter.mjs): without this, a creation that needed less of it waited, or was refused, while the
 * others stayed open. On an interpreter being retired too: it is replaced only once its sessions end, and one whose heap
 * passed the recycle threshold beside sessions that stay open still takes creations when every interpreter is retiring.
 * @param {Interpreter} p @param {number} needBytes @param {number} endBytes @returns {Promise<void> | null}
 */
function collectFor(p, needBytes, endBytes) {
  if (p.dead) return null;
  if (p.collecting) return hasRoom(p, needBytes, '', endBytes, p.collectingBytes) ? p.collecting : null;
  if (p.garbageBytes <= p.askFloor || !hasRoom(p, needBytes, '', endBytes, p.garbageBytes)) return null;
  // (asked for once: the drops' answers meanwhile say it again, and collectingBytes stands for it)
  p.collectingBytes = p.garbageBytes;
  p.garbageBytes = 0;
  const collectionsAtAsk = p.collections;
  p.collecting = (async () => {
    const a = await p.run('collect', [], dropDeadlineMs(p));
    if (a.lost) return;
    // One that gave back less than half of what was expected, by its own readings (what was in use beyond what explains
    // it was live sessions' growth, not garbage), is followed by another only once as much again, twice it and at least
    // 8 MiB, is unexplained (counted afresh from it), or after an end's collection; one that gave back, as soon as one
    // helps. (One cut short by a limit changes nothing; nor does one after an end's collection made meanwhile, which
    // left it little to give back: its estimate was made before that one.)
    if (a.collected && typeof a.freedBytes === 'number' && p.collections === collectionsAtAsk + 1) p.askFloor = a.freedBytes < p.collectingBytes / 2 ? Math.max(8 * 1048576, 2 * p.collectingBytes) : 0;
    const r = envelope(a.text);
    const report = 'err' in r ? await tamperReport(p, '') : r.ok;
    if (report !== null && report !== 'own') tamperCheck(p, report, null);
  })()
    .catch(err => log('error', 'a collection for a waiting creation failed', { err: String(err) }))
    .finally(() => {
      p.collecting = null;
      p.collectingBytes = 0;
      roomMayBeFree();
    });
  return p.collecting;
}

/**
 * The room the end of a running environment may take for a moment (its final state written as JSON, its checks' copies
 * of both states: τ-bench's gold-hash check copies and hashes a 3 MB database), kept free when new ones are admitted:
 * endEstimate of its initial state, or what an end of the same code that found no room taught. One at a time (an
 * interpreter runs one job at a time), so the largest of the running ones. Without it, creations filled the heap and
 * the running episodes' final states and checks met it, each try seconds long (a stranger's re-probe of τ-bench airline).
 * @param {Interpreter} p @param {string} [sid] a session not counted (a creation's own)
 */
function endRoom(p, sid = '') {
  let most = 0;
  for (const id of p.sessions) {
    const s = id === sid ? undefined : sessions.get(id);
    if (s) most = Math.max(most, endNeed(s.codeKey, s.endBytes));
  }
  return most;
}

/** About what one value of a state (a dict, an int, a short string) takes as a Python object, beyond its text (endEstimate). */
const BYTES_PER_VALUE = 64;

/**
 * What the end of an environment may take for a moment, from its initial state: JSON of `stateBytes` made of about
 * `values` values (the harness counts them at its creation). Its final state is copied (for the checks) and encoded
 * while the live one is still held, and each check copies both states again (a check that sorts a list in place must
 * not change the next one's): two copies, each its text and BYTES_PER_VALUE for each value's Python object (a dict, an
 * int, a short string), and six times the text (the JSON written and its UTF-8; a check that makes a text of the
 * state, as τ-bench's hash does: a str of up to four bytes a character, and its UTF-8). 40,000 records of 3.3 MB: about
 * 57 MB (21 MB was not enough to write their final state, 47 to hash them); a 4.6 MB string: about 37 MB.
 * @param {number} stateBytes @param {number} values
 */
const endEstimate = (stateBytes, values) => Math.min((settings.heapMb * 1048576) / 2, 2 * (stateBytes + BYTES_PER_VALUE * values) + 6 * stateBytes);

/**
 * What the end of an environment of code `codeKey` estimated at `estimate` (endEstimate) may take, as learnt too; at
 * most half the heap (a count of values inflated by commas inside strings, or an end that failed for its own reasons,
 * must not leave an interpreter to one environment at a time).
 * @param {string} codeKey @param {number} estimate
 */
const endNeed = (codeKey, estimate) => Math.min((settings.heapMb * 1048576) / 2, Math.max(estimate, learnedEndNeeds.get(codeKey) ?? 0));

/**
 * What the ends of environments (a final state, a check) that found no room beside others needed at least, by their
 * code: as learnedNeeds for creations.
 * @type {Map<string, number>}
 */
const learnedEndNeeds = new Map();
/** The end (endEstimate) of the environment of each code created last (a few hundred kept): its next one's is weighed with it. @type {Map<string, number>} */
const createdEnds = new Map();

/** How long room stays held for a creation refused for want of it (it comes back within its job's waits, at most 30 s). */
const RESERVE_MS = 60_000;

/** The longest a creation waits here for room (open's roomWaitMs is bounded by it). */
const MAX_ROOM_WAIT_MS = 10 * 60_000;
/**
 * Creations waiting for room (open's roomWaitMs), each woken when room may have been freed: an environment's drop has
 * run (the interpreter's reading of its heap is then new), or a replaced interpreter is ready. Woken in the order they
 * came (a Set keeps it), each asks again, and one that still does not fit waits again. Before, a refused creation went
 * back to its job's queue at once, waited there with a backoff that doubled to 30 s while room was freed meanwhile, and
 * its episode ran again from the start: τ-bench airline at 64 episodes per worker took 3 times as long as at 8 (753 s
 * against 228 s, a stranger's re-probe), most of its creations refused about 20 times each.
 * @type {Set<() => void>}
 */
const roomWaiters = new Set();
/** A creation waiting for room asks again this often, woken or not (room held for another creation expires unseen). */
const ROOM_ASK_EVERY_MS = 5_000;
/** Waits until room may be free, or it is time to ask again (true; at `until` too, for a last ask), or `until` has passed (false). @param {number} until */
function roomFreed(until) {
  const left = until - Date.now();
  if (left <= 0) return Promise.resolve(false);
  return new Promise(resolve => {
    const wake = () => {
      clearTimeout(timer);
      roomWaiters.delete(wake);
      resolve(true);
    };
    const timer = setTimeout(() => {
      roomWaiters.delete(wake);
      resolve(true);
    }, Math.min(left, ROOM_ASK_EVERY_MS));
    roomWaiters.add(wake);
  });
}
/** How often, while environment starts wait for room, the log says so. */
const WAITING_LOG_EVERY_MS = 30_000;
/** @type {NodeJS.Timeout | undefined} */
let waitingLog;
let waitingLoggedAt = 0;
/**
 * A start waits for room: said in the log at once when none was said lately, then every WAITING_LOG_EVERY_MS while some
 * wait (a stranger saw episodes stalled for 2 minutes with nothing in the log), with what fills the interpreters.
 * Called at every wait: a crowd woken and queued on an interpreter leaves no one waiting for a moment.
 */
function noteWaiting() {
  if (waitingLog) return;
  const say = () => {
    // (counted after this turn: the start that called this is about to be added)
    const waiting = roomWaiters.size;
    if (waiting === 0) {
      waitingLog = undefined;
      return;
    }
    waitingLoggedAt = Date.now();
    log('info', "environment starts wait for room in the Python interpreters' memory (ENVFLEET_PYTHON_HEAP_MB, shared by the environments on each): they are created as running ones end; fewer at once per process: ENVFLEET_ROLLOUT_CONCURRENCY, more room: ENVFLEET_PYTHON_HEAP_MB, ENVFLEET_PYTHON_INTERPRETERS", {
      waiting,
      heapMb: settings.heapMb,
      interpreters: interpreters.filter(p => !p.dead).map(p => ({ n: p.n, environments: p.sessions.size, usedMb: p.usedBytes === null ? null : Math.round(p.usedBytes / 1048576) })),
    });
    waitingLog = setTimeout(say, WAITING_LOG_EVERY_MS);
  };
  waitingLog = setTimeout(say, Math.max(0, waitingLoggedAt + WAITING_LOG_EVERY_MS - Date.now()));
}

/** Wakes every creation waiting for room. */
function roomMayBeFree() {
  for (const wake of [...roomWaiters]) wake();
}
/**
 * Opens whose caller gave up on them (its run cancelled, its worker stopping), by their request's id: one that waits for
 * room, or would, answers at once instead. Forgotten as the open answers; a few hundred kept (one given up just as it
 * was answered is never asked about).
 * @type {Set<number>}
 */
const abandonedOpens = new Set();
/** @param {number} id */
function abandonOpen(id) {
  if (abandonedOpens.size >= 500) abandonedOpens.delete(/** @type {number} */ (abandonedOpens.values().next().value));
  abandonedOpens.add(id);
  // (queued to be created: answered now; waiting for room: woken, it sees it, and the others ask again for nothing)
  for (const p of interpreters) p.giveUp(id, 'the start was not made');
  roomMayBeFree();
}

/**
 * Creations that ran their interpreter out of memory fatally beside other environments, by their code and state (a
 * few hundred kept): the first time taken for a full interpreter, the next for their own (MEMORY_EXCEEDED), and
 * meanwhile created only where half the heap is free.
 * @type {Map<string, number>}
 */
const fatalCreations = new Map();
/** A creation's code and state (its code's key, codeKeyOf, and its state). @param {any} msg @param {string} codeKey */
const creationKey = (msg, codeKey) => createHash('sha256').update(codeKey).update('\0').update(String(msg.stateJson)).digest('hex');

/**
 * What creating an environment from `stateJson` may take for a moment (its state parsed into Python objects, its
 * constructor's work): eight times the JSON's bytes, at least a sixteenth of the cap. A guess on purpose: it keeps a
 * creation from being tried where it would fill the heap (τ-bench airline's creations, tried in an interpreter full of
 * running episodes' environments, failed one after another, fatally at times, and took the running ones with them).
 * @param {string} stateJson
 */
const creationNeed = (stateJson, key = '', source = '', codeKey = '') =>
  Math.max(fatalCreations.has(key) ? (settings.heapMb * 1048576) / 2 : (settings.heapMb * 1048576) / 16, 8 * (Buffer.byteLength(stateJson) + Buffer.byteLength(source)), learnedNeeds.get(codeKey) ?? 0);

/** An environment's code, whatever its state: what a learnt need is kept by (τ-bench's 50 tasks share one class). @param {any} msg */
const codeKeyOf = msg => createHash('sha256').update(String(msg.className)).update('\0').update(String(msg.source)).digest('hex');

/**
 * What creations that found no room beside others needed at least, by their code (any state: each task of a τ-bench
 * domain has its own, and learning per state let each of the 50 be tried once more): the room that was left
 * when they failed, and a sixteenth of the cap more (a few hundred kept). A guess from the JSON alone misses an
 * environment whose data is in its source (τ-bench's 3 MB database, with a state of {}): each of its creations was
 * tried, took seconds and failed, while the episodes already running waited behind it (a stranger's re-probe: no
 * trajectory in 13 minutes). Learnt once, the next ones wait without being tried.
 * @type {Map<string, number>}
 */
const learnedNeeds = new Map();
/** @param {string} key @param {number | null | undefined} usedAtFailure @param {Map<string, number>} [into] */
function learnNeed(key, usedAtFailure, into = learnedNeeds) {
  const cap = settings.heapMb * 1048576;
  const need = usedAtFailure == null ? cap / 2 : Math.min(cap, cap - usedAtFailure + cap / 16);
  if (into.size >= 500 && !into.has(key)) into.delete(/** @type {string} */ (into.keys().next().value));
  into.set(key, Math.max(into.get(key) ?? 0, need));
}

/**
 * @typedef {{ sid: string, interp: Interpreter, limits: Limits, cpuUs: number, lost: Failure | null, ended: boolean, codeKey: string, endBytes: number, created?: boolean }} Session
 * @type {Map<string, Session>}
 */
const sessions = new Map();

/** @param {string} text */
function envelope(text) {
  return JSON.parse(text);
}

/**
 * The answer's envelope, where an error is the deadline's only when an interrupt was sent: a KeyboardInterrupt the code
 * raised itself (none was sent) is the error the harness would give any other exception there (`own`, with the
 * harness's message: _fail in python-harness.mjs), not DEADLINE_EXCEEDED, which would end the session.
 * @param {Answer} a
 */
function answerEnvelope(a) {
  const r = envelope(a.text);
  if (r && r.err === 'DEADLINE_EXCEEDED' && a.interrupted === false && !a.lost && typeof r.own === 'string') {
    return { err: r.own, message: `${String(r.raised)} (the code raised it itself, within its deadline)` };
  }
  return r;
}

/** The JSON text inside `{"ok":...}` as the harness wrote it (passed on as text: never re-serialized, so big integers stay exact), or null for an error envelope. @param {string} text */
function okText(text) {
  return text.startsWith('{"ok":') ? text.slice(6, -1) : null;
}

/** After MEMORY_EXCEEDED: the setting that bounds it, and what to do. */
const memoryAdvice = () => ` (a Python interpreter's memory is ENVFLEET_PYTHON_HEAP_MB=${settings.heapMb} MB, shared by the environments on it: keep less in memory per call, in the state or in module- or class-level lists, or raise it)`;
/** The error for a JSON text past MAX_JSON_DEPTH. @param {string} what */
const tooDeep = what => ({ code: 'STATE_INVALID', message: `${what} nests containers more than ${MAX_JSON_DEPTH} levels deep${DEPTH_ADVICE}` });

/**
 * What a call, a snapshot or checks of a session ended before them are told: the failure that ended it, as the
 * failure it was where that was a limit or an error of its own (the call that met a deadline said "ran past its
 * deadline"; every later call said it again, as if it had).
 * @param {Failure} why
 */
const lostMessage = why => {
  if (why.code === 'ENV_DISPOSED') return why.message;
  // (stopped for another environment's call: none of its own met a limit, and its message says why it was stopped)
  if (why.byOther) return why.message;
  // (src/sandbox/errors.ts disposedAfter's words: at most 300 characters of the message, never half of one)
  const m = String(why.message);
  const cut = m.length <= 300 ? m : `${m.slice(0, /[\uD800-\uDBFF]/.test(m.charAt(299)) ? 299 : 300)}…`;
  return `the environment was thrown away after an earlier call hit a limit (${why.code}: ${cut})`;
};

/**
 * The mark of an environment lost with its interpreter, which another environment took down (`cotenant`): a server
 * does not score such an episode. Never on an environment ended by its own limit, nor on the one whose call took the
 * interpreter down.
 * @param {Failure} why
 */
const lostWith = why => (why.cotenant ? { lostWith: 'interpreter' } : {});

/** @param {Session} s @param {Failure} why */
function endSession(s, why) {
  s.ended = true;
  s.lost = why;
  s.interp.sessions.delete(s.sid);
  void drop(s.interp, s.sid);
}

/**
 * Forgets a session in its interpreter. An interpreter whose shared state was tampered with (its
 * import blocker removed, the clock or uuid4 replaced, a name of a stdlib module, of builtins or of the
 * harness rebound, added or removed: Python code can do that) is terminated and replaced at once; its
 * other sessions end with ENV_DISPOSED.
 * @param {Interpreter} interp @param {string} sid
 */
async function drop(interp, sid) {
  // The writable folders (/tmp, home) are shared by the interpreter's sessions: emptied when its last one ends.
  // Decided and queued now, right behind the drop: decided once the drop had answered, a session opened meanwhile
  // (the next episode, opened as soon as this one finished) was counted, the folders were not emptied, and it
  // started from the files the ended one wrote.
  // Retiring or not: when every interpreter is retiring, the next session is still given to one of them.
  const last = !interp.dead && interp.sessions.size === 0;
  const dropped = interp.run('drop', [sid], dropDeadlineMs(interp));
  const cleared = last ? interp.run('clear_fs', [], 5000) : undefined;
  const a = await dropped;
  if (!a.lost) {
    const r = envelope(a.text);
    // A limit that escaped the drop cut its report short: it is made again as a job of its own.
    const report = 'err' in r ? await tamperReport(interp, sid) : r.ok;
    if (report !== null && report !== 'own') tamperCheck(interp, report, sid);
  }
  if (cleared) await cleared;
  interp.maybeRetire();
}

/**
 * A drop's deadline: a second, and 20 ms more per MB of the interpreter's heap (10 s for 512 MB). A drop may run the cycle collector
 * (python-interpreter.mjs decides), whose walk of a heap full of running environments takes seconds in C, where no
 * interrupt reaches it: with a second it was stopped at the grace's end, and the interpreter with every running
 * environment on it (a stranger's re-probe of τ-bench airline, 512 MB: 11 times in 12 minutes).
 * @param {Interpreter} interp
 */
const dropDeadlineMs = interp => Math.max(1000, Math.round(interp.heapBytes / 1048576) * 20);

/**
 * The interpreter's tamper report, as a job of its own: the list of what changed; null when the interpreter was lost
 * meanwhile. A report that could not be made is a change: it ran to its deadline on something the environment planted
 * (sys.modules rebound to a dict whose iteration never ends), and kept, that interpreter would hold every co-tenant up
 * at each report after.
 * 'own': the interpreter was taken down by the report itself, made for session `forSid` (something its code planted
 * made it run past its deadline and the interrupt).
 * @param {Interpreter} interp @param {string} forSid @returns {Promise<unknown[] | null | 'own'>}
 */
async function tamperReport(interp, forSid) {
  const t = await interp.run('tamper_report', [], 1000, undefined, forSid);
  if (t.lost) return t.lost.cotenant ? null : 'own';
  const r = envelope(t.text);
  return Array.isArray(r) ? r : [`the tamper check could not be made (${r.err}: ${r.message})`];
}

/** @param {Interpreter} interp @param {unknown} changed what the harness found changed ([]: nothing) @param {string | null} culprit the session whose drop or check found it */
function tamperCheck(interp, changed, culprit) {
  if (!Array.isArray(changed) || changed.length === 0 || interp.dead) return false;
  log('warn', 'Python code tampered with its interpreter\'s shared modules; the interpreter is replaced and its other sessions end', { interpreter: interp.n, changed });
  interp.lost({ code: 'ENV_DISPOSED', message: 'the interpreter holding this environment was replaced: another environment on it tampered with shared modules' }, culprit);
  void interp.worker.terminate();
  return true;
}

/**
 * The deadline of reading a session's state (a turn's, the final one): the create deadline when it is the longer. It is
 * the work that builds the initial state (counting, encoding and copying up to the state cap: ≈ 1 s for 8 MiB here),
 * not a tool call's: with the call deadline, a state under the cap could not be finished and the episode got no reward.
 * @param {{ callDeadlineMs: number, createDeadlineMs: number }} limits
 */
function stateDeadlineMs(limits) {
  return Math.max(limits.callDeadlineMs, limits.createDeadlineMs);
}

/** Objects counted per session when the heap is full (harness footprints: ~1 µs each, at most once per full heap). */
const FOOTPRINT_BUDGET = 200_000;

/**
 * The harness's footprint of each session of `interp` ([bytes, measured whole]), measured once when a call, a creation
 * or a final state met the cap; null when it could not be measured.
 * @param {Interpreter} interp @param {number} deadlineMs
 * @returns {Promise<Record<string, [number, boolean]> | null>}
 */
async function footprints(interp, deadlineMs) {
  const a = await interp.run('footprints', [String(FOOTPRINT_BUDGET)], Math.max(1000, deadlineMs));
  if (a.lost || a.fatal) return null;
  const r = envelope(a.text);
  if ('err' in r || typeof r.ok !== 'object' || r.ok === null) return null;
  return /** @type {Record<string, [number, boolean]>} */ (r.ok);
}

/**
 * The other session of s's interpreter holding the most memory, when it holds more than s, a quarter of the heap or
 * more, and at least the room the refused growth asked for (`needed`): freeing it would have let the call through. Null
 * when there is none, or when s's own measure stopped short (s may hold more than it counted).
 * The harness's footprints are measured after s's call unwound; sessions already stopped whose drop has not run yet
 * (queued behind this call) still hold their memory and count: `session` is then already lost, and no other is stopped.
 * @param {Session} s @param {Record<string, [number, boolean]>} measured @param {number} needed
 * @returns {{ session: Session | null, bytes: number, callerBytes: number } | null}
 */
function heavierCoTenant(s, measured, needed) {
  const own = measured[s.sid];
  if (own && !own[1]) return null;
  const callerBytes = own ? own[0] : 0;
  // What a call allocates and drops (a list built to the cap) is gone by the measure: another session is taken for the
  // cause only when it holds a quarter of the heap or more, not for the few KB a quiet one holds.
  const heldEnough = Math.max((settings.heapMb * 1048576) / 4, needed);
  /** @type {{ session: Session | null, bytes: number, callerBytes: number } | null} */
  let best = null;
  for (const [sid, m] of Object.entries(measured)) {
    if (sid === s.sid || !Array.isArray(m) || typeof m[0] !== 'number') continue;
    const b = m[0];
    if (b > callerBytes && b >= heldEnough && (!best || b > best.bytes)) best = { session: sessions.get(sid) ?? null, bytes: b, callerBytes };
  }
  return best;
}

/**
 * What the other sessions of `interp` hold, when together they hold more than session `sid` and at least half of the
 * heap: the interpreter is full of many environments (a serve process's sessions, each of a few MB), none of which
 * heavierCoTenant would stop, and not of this one. A call that meets the cap then is the interpreter's load
 * (SANDBOX_MEMORY_FULL: an episode waits it out, a server evicts the session unscored), not the environment's own
 * MEMORY_EXCEEDED. (A creation or an end that meets it: crowdedBy, endBeside.)
 * Only where the others' memory, freed, would have made the room the refused growth asked for (`needed`): an
 * environment asking for more than that (a bytearray of the whole heap) is its own MEMORY_EXCEEDED however crowded the
 * interpreter is; and not when this session's own footprint could not be measured whole (it may be the big one).
 * @param {string} sid @param {Record<string, [number, boolean]>} measured @param {number} needed
 * @returns {{ others: number, own: number, sessions: number } | null}
 */
function crowded(sid, measured, needed) {
  let others = 0;
  let n = 0;
  for (const [other, m] of Object.entries(measured)) {
    if (other === sid || !Array.isArray(m) || typeof m[0] !== 'number') continue;
    others += m[0];
    n += 1;
  }
  const mine = measured[sid];
  if (Array.isArray(mine) && !mine[1]) return null;
  const own = Array.isArray(mine) ? mine[0] : 0;
  return others > own && others >= needed && others >= (settings.heapMb * 1048576) / 2 ? { others, own, sessions: n } : null;
}

/**
 * SANDBOX_MEMORY_FULL's message when a creation or a final state (answer `a`) met the cap in a heap full of other
 * environments, null when it is its own: by the measure of the others (crowded), when it says so; its own when the
 * measure saw each of the others whole and says not (a creation or an end that hoards in module- or class-level lists
 * beside a few small environments: a reviewer's finding); and where the others could not be measured whole (the walk
 * stops at FOOTPRINT_BUDGET objects of each, so a heap full of environments of many small objects measured under half:
 * 8 environments of 200,000 lists each, and such a creation and such a final state were their own MEMORY_EXCEEDED, an
 * episode recorded as environment-error), or not at all (past its deadline: 30 τ-bench databases), by endBeside's rule,
 * as for checks.
 * @param {Interpreter} interp @param {string} sid @param {number} deadlineMs @param {Answer} a @param {string} what
 */
async function crowdedBy(interp, sid, deadlineMs, a, what) {
  if (!a.exhausted || a.fatal || a.lost || othersOn(interp, sid) === 0) return null;
  // (A session whose final state was written, or a context of checks, is not measured: what it keeps are its states,
  // bounded by the state cap, which cannot be what filled the heap; walking them, 3 MB of records, would pass the budget.)
  const measured = await footprints(interp, deadlineMs);
  const c = measured && crowded(sid, measured, a.refusedBytes ?? 0);
  if (c) return crowdedMessage(what, c);
  const whole = measured && Object.entries(measured).every(([other, m]) => other === sid || (Array.isArray(m) && m[1] === true));
  if (whole) return null;
  const b = endBeside(interp, sid, a);
  return b && `${besideMessage(what, b)}, too many objects to measure`;
}

/**
 * SANDBOX_MEMORY_FULL's message for an interpreter full of many environments (`crowded`); what this one holds is said
 * where it was measured (a call's session: a creation's or a final state's is not).
 * @param {string} what @param {{ others: number, own: number, sessions: number }} c
 */
const crowdedMessage = (what, c) =>
  `the Python interpreter's memory (ENVFLEET_PYTHON_HEAP_MB=${settings.heapMb}, shared by the environments on it) had no room ${what}: its ${c.sessions} other environments held about ${(c.others / 1048576).toFixed(1)} MB${c.own > 0 ? ` against this one's ${(c.own / 1048576).toFixed(1)} MB` : ''}`;

/** Ends with an error when the environment was lost or the answer is a limit (which disposes it). */
const ENDS = new Set(['DEADLINE_EXCEEDED', 'MEMORY_EXCEEDED', 'CPU_BUDGET_EXCEEDED', 'STACK_OVERFLOW', 'SANDBOX_MEMORY_FULL']);

/** @param {any} msg @returns {Promise<{ error?: Failure, value?: unknown }>} */
async function handle(msg) {
  switch (msg.op) {
    case 'open': {
      if (deeperThan(msg.stateJson, MAX_JSON_DEPTH)) return { error: tooDeep('the initial state') };
      // (the source hashed once: τ-bench's is 3 MB)
      const codeKey = codeKeyOf(msg);
      const key = creationKey(msg, codeKey);
      const need = creationNeed(msg.stateJson, key, msg.source, codeKey);
      // (its end as its state given, a guess: the state as created may hold more, as τ-bench's database)
      const givenEnd = endEstimate(Buffer.byteLength(msg.stateJson), 1);
      // What it may take now, as learnt meanwhile by a creation of the same code that found no room; and what its own end
      // may take, as the one of its code created last, or as its state given. (A start asked for before a creation of its
      // code taught more was picked an interpreter by its first guess, and refused there again while another had room.)
      const needNow = () => Math.max(need, learnedNeeds.get(codeKey) ?? 0);
      const endNow = () => endNeed(codeKey, createdEnds.get(codeKey) ?? givenEnd);
      // A creation that does not fit waits here for room, up to roomWaitMs (a rollout's: ROOM_WAIT_MS), instead of going
      // back to its job's queue at once; a served session's open (0) is answered at once.
      const askedAt = Date.now();
      const waitUntil = askedAt + Math.max(0, Math.min(MAX_ROOM_WAIT_MS, Number(msg.roomWaitMs) || 0));
      let waited = false;
      let abandoned = false;
      /** Waits for room until waitUntil: whether to ask again (room may be free); false once its caller gave up (abandonOpen). */
      const waitAgain = async () => {
        if (abandonedOpens.has(msg.id)) abandoned = true;
        if (abandoned || Date.now() >= waitUntil) return false;
        noteWaiting();
        waited = true;
        const woken = await roomFreed(waitUntil);
        if (abandonedOpens.has(msg.id)) abandoned = true;
        return woken && !abandoned;
      };
      /**
       * A refusal's message, with how long it was held here first: since it was asked for (a stranger read "waited 28 s"
       * on a start asked for 129 s before: the time it was queued on the interpreter, admitted, and asked again at its
       * turn, was not counted). @param {string} message
       */
      const afterWait = message => {
        if (abandoned) return `${message}; its caller gave up waiting for room`;
        const s = Math.round((Date.now() - askedAt) / 1000);
        return waited && s >= 1 ? `${message}; it was held ${s} s waiting for room first (at most ${Math.round((waitUntil - askedAt) / 1000)} s)` : message;
      };
      /**
       * Whether a collection of what dropped sessions left in cycles on `interp` made room enough to ask again (collectFor):
       * awaited whether or not the start may wait for room (a served session's is then not refused for garbage).
       * @param {Interpreter} interp
       */
      const collected = async interp => {
        if (abandonedOpens.has(msg.id)) return false;
        const collecting = collectFor(interp, needNow(), endNow());
        if (!collecting) return false;
        await collecting;
        return !abandonedOpens.has(msg.id);
      };
      for (;;) {
        const interp = await pick(needNow(), endNow());
        // (given up while it was being picked an interpreter: the abandon can arrive with the open itself)
        if (abandonedOpens.has(msg.id)) {
          abandoned = true;
          return { error: { code: 'SANDBOX_MEMORY_FULL', message: afterWait('the start was not made') } };
        }
        /**
         * Why a creation of `need` does not fit on the interpreter now (null: it does): every interpreter is about full of
         * running environments, so this one waits for room (its job comes back, no attempt used) instead of being created
         * where it would fail, and maybe take the others down with it. Asked when it is asked for, and again when its turn comes.
         * @param {string} [own] its session, once added
         */
        const noRoom = (own = '') => {
          const [needs, ending] = [needNow(), endNow()];
          if (hasRoom(interp, needs, own, ending)) return null;
          if (!interp.reserved || interp.reserved.until <= Date.now() || interp.reserved.bytes <= needs) interp.reserved = { bytes: needs, until: Date.now() + RESERVE_MS };
          const mb = (/** @type {number} */ n) => (n / 1048576).toFixed(1);
          // (the environments there, apart from the ones admitted and queued to be created: a stranger read "its 63 other
          // environments" from 13 starts refused at once, some of them queued)
          const others = othersOn(interp, own);
          const queued = [...interp.sessions].filter(id => id !== own && sessions.has(id) && !sessions.get(id)?.created).length;
          const ends = Math.max(endRoom(interp, own), ending);
          return `the Python interpreter's memory (ENVFLEET_PYTHON_HEAP_MB=${settings.heapMb}, shared by the environments on it) had no room to create the environment: its ${others} other environments${queued ? ` (and ${queued} queued to be created)` : ''} held about ${mb(interp.usedBytes ?? 0)} MB, and creating this one may take about ${mb(needs)} MB${ends >= 1048576 ? `, with about ${mb(ends)} MB kept for an environment's end (its final state and checks)` : ''} (it waits until some end; fewer at once per process: ENVFLEET_ROLLOUT_CONCURRENCY, or more room: ENVFLEET_PYTHON_HEAP_MB, ENVFLEET_PYTHON_INTERPRETERS)`;
        };
        const refusedNow = noRoom();
        if (refusedNow) {
          if ((await collected(interp)) || (await waitAgain())) continue;
          return { error: { code: 'SANDBOX_MEMORY_FULL', message: afterWait(refusedNow) } };
        }
        const sid = `s${++nextSid}`;
        /** @type {Session} */
        // (its end as its state given until created, then as created: endRoom)
        const s = { sid, interp, limits: msg.limits, cpuUs: 0, lost: null, ended: false, codeKey, endBytes: createdEnds.get(codeKey) ?? givenEnd };
        interp.sessions.add(sid);
        sessions.set(sid, s);
        // Admitted: room held for it is no longer.
        if (interp.reserved && interp.reserved.bytes <= need) interp.reserved = null;
        const a = await interp.run('create', [sid, msg.className, msg.source, msg.stateJson, JSON.stringify(msg.tools), msg.seed, String(msg.limits.maxStateBytes)], msg.limits.createDeadlineMs, () => (abandonedOpens.has(msg.id) ? 'the start was not made' : noRoom(sid)), undefined, msg.id);
        if (a.refused) {
          // Never created: nothing to drop.
          sessions.delete(sid);
          interp.sessions.delete(sid);
          if ((await collected(interp)) || (await waitAgain())) continue;
          return { error: { code: 'SANDBOX_MEMORY_FULL', message: afterWait(envelope(a.text).message) } };
        }
        const r = answerEnvelope(a);
        if ('err' in r || a.exhausted) {
          const others = [...interp.sessions].filter(other => other !== sid).length;
          // Learnt at once, before anything else runs on the interpreter (its next job waits for this: answered()), so a
          // creation of the same code queued behind this one is asked with it.
          if (a.exhausted && !a.fatal && !a.lost && others > 0) learnNeed(codeKey, a.usedBytes ?? interp.usedBytes);
          sessions.delete(sid);
          interp.sessions.delete(sid);
          const full = await crowdedBy(interp, sid, msg.limits.createDeadlineMs, a, 'to create the environment');
          if (!a.lost) void drop(interp, sid);
          if (full) {
            // Tried, and it found the heap full of the others: it waits here too (what it needs is learnt: it is asked
            // again against that), rather than going back to its job at once. (A collection is asked for when it is asked
            // again and still does not fit: its refusal now says what it met. Asked here, a served start that may not
            // wait went on to be asked again, and the room it was refused then stayed held for it, its caller gone: a
            // smaller start after it was refused.)
            if (await waitAgain()) continue;
            return { error: { code: 'SANDBOX_MEMORY_FULL', message: afterWait(full) } };
          }
          const fatalBefore = fatalCreations.get(key) ?? 0;
          if (a.exhausted && a.fatal && others > 0) {
            if (fatalCreations.size >= 500) fatalCreations.delete(/** @type {string} */ (fatalCreations.keys().next().value));
            fatalCreations.set(key, fatalBefore + 1);
          }
          if (a.exhausted && a.fatal && others > 0 && fatalBefore === 0) {
            // Out of memory fatally while others held theirs (nothing can be measured now: the interpreter is being
            // replaced): the first time taken for a full interpreter, not this environment's fault; it waits and is tried
            // again where half the heap is free. A second time it is its own (MEMORY_EXCEEDED below): a creation that takes
            // its interpreter down must not do so beside others for the hour of a job's waits.
            return { error: { code: 'SANDBOX_MEMORY_FULL', message: `the Python interpreter ran out of memory (ENVFLEET_PYTHON_HEAP_MB=${settings.heapMb}) creating the environment beside ${others} other environments, and was replaced${memoryAdvice()}` } };
          }
          const code = a.exhausted ? 'MEMORY_EXCEEDED' : r.err;
          // (The deadline's message says "the call": here it is the creation, with its own deadline.)
          const message = a.exhausted
            ? `the interpreter ran out of memory while creating the environment${memoryAdvice()}`
            : code === 'MEMORY_EXCEEDED'
              ? `${r.message}${memoryAdvice()}`
              : code === 'DEADLINE_EXCEEDED'
                ? `${String(r.message).replace(/^the call\b/, 'creating the environment (its source and constructor)')} (its deadline is ${msg.limits.createDeadlineMs} ms: ENVFLEET_SANDBOX_CREATE_DEADLINE_MS)`
                : r.message;
          return { error: { code, message, ...(a.lost ? lostWith(a.lost) : {}) } };
        }
        if (r.ok > msg.limits.maxStateBytes) {
          endSession(s, { code: 'ENV_DISPOSED', message: 'closed' });
          sessions.delete(sid);
          return { error: { code: 'STATE_TOO_LARGE', message: `the initial state is ${r.ok} bytes of JSON, more than the state cap of ${msg.limits.maxStateBytes}${INITIAL_STATE_CAP_ADVICE}` } };
        }
        s.created = true;
        s.endBytes = endEstimate(Number(r.ok), Number(r.values) || 1);
        if (createdEnds.size >= 500 && !createdEnds.has(codeKey)) createdEnds.delete(/** @type {string} */ (createdEnds.keys().next().value));
        createdEnds.set(codeKey, s.endBytes);
        return { value: { sid, createUs: a.us } };
      }
    }
    case 'call': {
      const s = sessions.get(msg.sid);
      if (!s) return { error: { code: 'SANDBOX_UNAVAILABLE', message: 'no such session (it was closed)' } };
      if (s.lost) return { value: { result: { success: false, error: lostMessage(s.lost) }, runtimeError: 'ENV_DISPOSED', ...lostWith(s.lost), us: 0 } };
      const budgetLeftMs = s.limits.sessionCpuMs - s.cpuUs / 1000;
      const byBudget = budgetLeftMs < s.limits.callDeadlineMs;
      // A holder stopped after this call was queued is dropped after it ran (jobs other than creations run in order):
      // it held its memory while the call met the cap, even when its drop has freed it before this call's measure.
      const stoppedBefore = s.interp.holdersStopped;
      const a = await s.interp.run('call', [s.sid, msg.tool, msg.argsJson, String(s.limits.maxResultBytes)], Math.max(1, Math.min(s.limits.callDeadlineMs, budgetLeftMs)));
      s.cpuUs += a.us;
      const resultJson = a.exhausted ? null : okText(a.text);
      if (resultJson !== null) {
        const bytes = Buffer.byteLength(resultJson);
        if (bytes > s.limits.maxResultBytes) {
          return { value: { result: { success: false, error: `the result is ${bytes} bytes of JSON, more than the result cap of ${s.limits.maxResultBytes}${RESULT_CAP_ADVICE}` }, runtimeError: 'RESULT_TOO_LARGE', us: a.us } };
        }
        return { value: { resultJson, us: a.us } };
      }
      let r = answerEnvelope(a);
      if (a.exhausted && !a.fatal && !('err' in r && r.err === 'MEMORY_EXCEEDED')) r = { err: 'MEMORY_EXCEEDED', message: 'the interpreter hit its memory cap during the call' };
      // The interpreter's heap is shared by its sessions: the call that finds it full is not always the one that filled
      // it (a co-tenant that keeps everything it is given, call after call). The one holding the most is stopped; the
      // call that met it goes back to its caller as SANDBOX_MEMORY_FULL, which an episode waits out (as with QuickJS's
      // shared thread), instead of being recorded as its environment's failure.
      // Only where the heap refused to grow (not a MemoryError raised without an allocation, nor bytearray(10**10)'s
      // OverflowError), and only a holder that alone holds the room the refused growth asked for.
      if ('err' in r && r.err === 'MEMORY_EXCEEDED' && a.exhausted && !a.fatal && !a.lost) {
        // One measure answers both: a co-tenant to stop, or an interpreter crowded by many.
        const measured = await footprints(s.interp, s.limits.callDeadlineMs);
        const holder = measured && heavierCoTenant(s, measured, a.refusedBytes ?? 0);
        if (holder) {
          const mb = (/** @type {number} */ b) => (b / 1048576).toFixed(1);
          // (One stopped already, by an earlier call that found no room, frees its memory once its drop has run.)
          const stopping = holder.session !== null && !holder.session.lost;
          if (holder.session && stopping) {
            s.interp.holdersStopped += 1;
            s.interp.lastHolderBytes = holder.bytes;
          }
          if (holder.session && stopping) endSession(holder.session, { code: 'MEMORY_EXCEEDED', byOther: true, message: `this environment held about ${mb(holder.bytes)} MB, the most of its Python interpreter's ${settings.heapMb} MB (ENVFLEET_PYTHON_HEAP_MB, shared by the environments on it), when a call of another environment found no room: it was stopped (does it keep what every call gives it, in its state or in a module- or class-level list?)` });
          if (stopping) log('warn', 'a Python environment holding most of its interpreter\'s memory was stopped (MEMORY_EXCEEDED); the call that found no room goes back as SANDBOX_MEMORY_FULL', { heldMb: Number(mb(holder.bytes)), callerMb: Number(mb(holder.callerBytes)), heapMb: settings.heapMb });
          r = { err: 'SANDBOX_MEMORY_FULL', message: `the Python interpreter's memory (ENVFLEET_PYTHON_HEAP_MB=${settings.heapMb}, shared by the environments on it) had no room for the call: another environment held about ${mb(holder.bytes)} MB against this one's ${mb(holder.callerBytes)} MB, and was stopped` };
        } else if (s.interp.holdersStopped > stoppedBefore && s.interp.lastHolderBytes >= (a.refusedBytes ?? 0) && (!measured || !measured[s.sid] || (measured[s.sid]?.[0] ?? 0) < s.interp.lastHolderBytes)) {
          // (The measure ran behind that holder's drop: it is no longer in it. CI's loaded machine made that order once.)
          const mb = (/** @type {number} */ b) => (b / 1048576).toFixed(1);
          r = { err: 'SANDBOX_MEMORY_FULL', message: `the Python interpreter's memory (ENVFLEET_PYTHON_HEAP_MB=${settings.heapMb}, shared by the environments on it) had no room for the call: another environment held about ${mb(s.interp.lastHolderBytes)} MB, and was stopped` };
        } else {
          const crowd = measured && crowded(s.sid, measured, a.refusedBytes ?? 0);
          if (crowd) r = { err: 'SANDBOX_MEMORY_FULL', message: crowdedMessage('for the call', crowd) };
        }
      }
      if ('err' in r && r.err === 'DEADLINE_EXCEEDED' && byBudget) r = { err: 'CPU_BUDGET_EXCEEDED', message: `the session used up its CPU budget of ${s.limits.sessionCpuMs} ms (ENVFLEET_SANDBOX_SESSION_CPU_MS)` };
      else if ('err' in r && r.err === 'DEADLINE_EXCEEDED') r = { err: r.err, message: `${r.message} (its deadline is ${s.limits.callDeadlineMs} ms: ENVFLEET_SANDBOX_DEADLINE_MS)` };
      else if ('err' in r && r.err === 'MEMORY_EXCEEDED' && !String(r.message).includes('ENVFLEET_PYTHON_HEAP_MB')) r = { err: r.err, message: `${r.message}${memoryAdvice()}` };
      if ('err' in r) {
        // A call that took the interpreter down (a.fatal) ends its session as its own failure, as one that met a limit;
        // one lost with an interpreter another environment took down keeps that mark.
        if (ENDS.has(r.err) || a.lost || a.fatal) endSession(s, a.lost?.cotenant ? a.lost : { code: r.err, message: r.message });
        // The error is the result the agent sees ({success: false, error}): the result cap holds for it too, as
        // in QuickJS (an exception whose message holds the whole database would otherwise reach the transcript).
        const bytes = Buffer.byteLength(String(r.message));
        if (bytes > s.limits.maxResultBytes && !ENDS.has(r.err) && !a.lost) {
          // Never half a character: a cut between the two halves of a surrogate pair drops the first half.
          const message = String(r.message);
          const start = message.slice(0, /[\uD800-\uDBFF]/.test(message.charAt(199)) ? 199 : 200);
          return { value: { result: { success: false, error: `the error (${r.err}) is ${bytes} bytes, more than the result cap of ${s.limits.maxResultBytes}${RESULT_CAP_SETTING}; it began: ${start}` }, runtimeError: 'RESULT_TOO_LARGE', us: a.us } };
        }
        return { value: { result: { success: false, error: r.message }, runtimeError: r.err, ...(a.lost ? lostWith(a.lost) : {}), us: a.us } };
      }
      return { value: { result: r.ok, us: a.us } };
    }
    case 'initial': {
      // The initial state as the session's checks see it (the constructed instance's, as create wrote it), for checks
      // run elsewhere. The harness hands back the text it kept: no code of the environment runs.
      const s = sessions.get(msg.sid);
      if (!s) return { error: { code: 'SANDBOX_UNAVAILABLE', message: 'no such session (it was closed)' } };
      if (s.lost) return { error: { code: 'ENV_DISPOSED', message: lostMessage(s.lost), ...lostWith(s.lost) } };
      return stateAnswer(await s.interp.run('initial', [s.sid], stateDeadlineMs(s.limits)), s.limits);
    }
    case 'state': {
      const s = sessions.get(msg.sid);
      if (!s) return { error: { code: 'SANDBOX_UNAVAILABLE', message: 'no such session (it was closed)' } };
      if (s.lost) return { error: { code: 'ENV_DISPOSED', message: lostMessage(s.lost), ...lostWith(s.lost) } };
      const a = await s.interp.run('state', [s.sid, String(s.limits.maxStateBytes)], stateDeadlineMs(s.limits));
      const answer = stateAnswer(a, s.limits);
      // A read that ran to its deadline ends the session, as a call that does: the interpreter and its co-tenants are
      // held up once (up to the create deadline), not at every read a client or a turn asks for again.
      if (answer.error?.code === 'DEADLINE_EXCEEDED') endSession(s, answer.error);
      return answer;
    }
    case 'finish': {
      const s = sessions.get(msg.sid);
      if (!s) return { error: { code: 'SANDBOX_UNAVAILABLE', message: 'no such session (it was closed)' } };
      sessions.delete(msg.sid);
      if (s.lost) {
        s.interp.sessions.delete(s.sid);
        return { value: { stateJson: null, stateError: { code: 'ENV_DISPOSED', message: lostMessage(s.lost), ...lostWith(s.lost) }, checks: null } };
      }
      const a = await s.interp.run('finish', [s.sid, String(s.limits.maxStateBytes)], stateDeadlineMs(s.limits));
      let st = stateAnswer(a, s.limits);
      if (st.error && a.lost) st = { error: { ...st.error, ...lostWith(a.lost) } };
      if (st.error && a.exhausted && !a.fatal && !a.lost) {
        // Learnt for the environments of its code admitted from now on (endRoom), at once: before the measure below,
        // for which creations queued meanwhile would otherwise be asked with what was known before.
        if ([...s.interp.sessions].some(other => other !== s.sid)) learnNeed(s.codeKey, a.usedBytes ?? s.interp.usedBytes, learnedEndNeeds);
        const full = await crowdedBy(s.interp, s.sid, stateDeadlineMs(s.limits), a, 'to write the final state');
        if (full) st = { error: { code: 'SANDBOX_MEMORY_FULL', message: full } };
      }
      let checks = null;
      if (st.value !== undefined && msg.checks.length && !a.lost) checks = await runChecks(s.interp, s.sid, msg.checks, s.limits, s.codeKey);
      s.interp.sessions.delete(s.sid);
      void drop(s.interp, s.sid);
      return { value: { stateJson: st.value ?? null, stateError: st.error ?? null, checks } };
    }
    case 'close': {
      const s = sessions.get(msg.sid);
      if (!s) return { value: null };
      sessions.delete(msg.sid);
      s.interp.sessions.delete(s.sid);
      await drop(s.interp, s.sid);
      return { value: null };
    }
    case 'checks': {
      // The episode is {messages, turn_states: [state, ...]}: its turn states sit two levels down.
      const deep = deeperThan(msg.finalStateJson, MAX_JSON_DEPTH) ? tooDeep('the final state given to the checks')
        : deeperThan(msg.initialStateJson, MAX_JSON_DEPTH) ? tooDeep('the initial state given to the checks')
          : msg.episodeJson && deeperThan(msg.episodeJson, MAX_JSON_DEPTH + 2) ? tooDeep('the episode given to the checks (a turn state, or a message)')
            : null;
      if (deep) return { value: { results: msg.checks.map((/** @type {any} */ c) => ({ item: c.item, passed: false, error: deep.message, errorCode: deep.code })), reward: 0, solved: false } };
      const interp = await pick();
      const sid = `c${++nextSid}`;
      interp.sessions.add(sid);
      try {
        const a = await interp.run('checks_context', [sid, msg.finalStateJson, msg.initialStateJson, msg.episodeJson ?? ''], msg.limits.checkDeadlineMs);
        let r = answerEnvelope(a);
        // Both states parsed beside other environments (τ-bench's: 3 MB of JSON each) may not fit: their load, not a
        // failure of the checks (each would count as false), and no code of the scenario's ran yet.
        const beside = endBeside(interp, sid, a);
        if ('err' in r && beside) r = { err: 'SANDBOX_MEMORY_FULL', message: besideMessage('to read the states for the checks', beside) };
        if ('err' in r) return { value: { results: msg.checks.map((/** @type {any} */ c) => ({ item: c.item, passed: false, error: r.message, errorCode: r.err, ...(a.lost ? lostWith(a.lost) : {}) })), reward: 0, solved: false } };
        return { value: await runChecks(interp, sid, msg.checks, msg.limits) };
      } finally {
        interp.sessions.delete(sid);
        void drop(interp, sid);
      }
    }
    default:
      return { error: { code: 'SANDBOX_UNAVAILABLE', message: `unknown request ${String(msg.op)}` } };
  }
}

/** @param {Answer} a @param {Limits} limits */
function stateAnswer(a, limits) {
  const json = okText(a.text);
  if (json === null) {
    const r = answerEnvelope(a);
    return { error: { code: r.err, message: r.message } };
  }
  if (Buffer.byteLength(json) > limits.maxStateBytes) return { error: { code: 'STATE_TOO_LARGE', message: `the state is ${Buffer.byteLength(json)} bytes of JSON, more than the state cap of ${limits.maxStateBytes}${STATE_CAP_ADVICE}` } };
  return { value: json };
}

/**
 * Whether the work of a session's end (a check, the states read for checks) that met the heap's cap (`a`) did so beside
 * other environments, asking for less than half the heap, with half the heap or more still in use once it had unwound:
 * then it is taken for their load (SANDBOX_MEMORY_FULL), not for a check that failed. Not measured (the harness's
 * footprints): with 30 τ-bench databases on the interpreter the measure ran past the check's deadline, found nothing,
 * and three good episodes' gold-hash checks counted false (a stranger's re-probe). What such an end keeps is its
 * states, bounded by the state cap; a check that grows without end is bounded by CROWDED_CHECK_WAITS, and one that took
 * more than half the heap itself leaves less than half in use when it unwinds.
 * @param {Interpreter} interp @param {string} sid @param {Answer} a
 * @returns {{ others: number, usedBytes: number | null } | null}
 */
function endBeside(interp, sid, a) {
  if (!a.exhausted || a.fatal || a.lost || (a.refusedBytes ?? 0) >= (settings.heapMb * 1048576) / 2) return null;
  const others = othersOn(interp, sid);
  return others > 0 ? { others, usedBytes: a.usedBytes ?? interp.usedBytes } : null;
}

/**
 * The environments on `interp` other than `sid` that hold memory: created ones, and the states read for checks (a
 * `checks` context); not those admitted and still queued to be created (a start alone on an interpreter, with a burst
 * queued behind it, was judged beside others: a reviewer's finding).
 * @param {Interpreter} interp @param {string} sid
 */
const othersOn = (interp, sid) => [...interp.sessions].filter(id => id !== sid && (sessions.get(id)?.created ?? !sessions.has(id))).length;

/** What the interpreter held when an end met the heap beside others (endBeside). @param {{ others: number, usedBytes: number | null }} b */
const besideText = b => `it holds ${b.others} other environment${b.others === 1 ? '' : 's'}${b.usedBytes == null ? '' : `, about ${(b.usedBytes / 1048576).toFixed(1)} MB in use`}`;

/** SANDBOX_MEMORY_FULL's message for an end that met the heap beside others (endBeside). @param {string} what @param {{ others: number, usedBytes: number | null }} b */
const besideMessage = (what, b) => `the Python interpreter's memory (ENVFLEET_PYTHON_HEAP_MB=${settings.heapMb}, shared by the environments on it) had no room ${what}: ${besideText(b)}`;

/** How many times a check (by its source) that met a heap full of other environments is taken for their load (runChecks). */
const CROWDED_CHECK_WAITS = 3;
/** Checks that met a heap full of other environments, by a hash of their source: how many times (a few hundred kept). @type {Map<string, number>} */
const crowdedChecks = new Map();

/**
 * Each check is its own job, so each has its own deadline.
 * @param {Interpreter} interp @param {string} sid @param {{item: string, check: string, episode?: boolean}[]} checks @param {Limits} limits
 * @param {string} [codeKey] the code of the environment whose end these checks are (what a check that found no room needed is learnt for it)
 */
async function runChecks(interp, sid, checks, limits, codeKey) {
  const results = [];
  for (const [i, c] of checks.entries()) {
    const a = await interp.run('check', [sid, c.check, c.episode === true], limits.checkDeadlineMs);
    let r = answerEnvelope(a);
    // A check that found the heap full of other environments (τ-bench's gold-hash check copies and hashes a 3 MB
    // database) is the interpreter's load, not a check that failed: SANDBOX_MEMORY_FULL, which an episode waits out and
    // scores again, as a call or a final state that met it. Counted as failed, it gave the episode a reward of 0 that a
    // run with fewer episodes at once would not have given (a stranger's re-probe of τ-bench airline: 2 such rewards).
    const beside = 'err' in r ? endBeside(interp, sid, a) : null;
    if (beside) {
      if (codeKey) learnNeed(codeKey, a.usedBytes ?? interp.usedBytes, learnedEndNeeds);
      // A check that grows without end (a careless loop) also meets the heap beside others, asking only for its last
      // small piece: the same check is taken for the interpreter's load at most CROWDED_CHECK_WAITS times, then for its
      // own MEMORY_EXCEEDED, so that it does not come back for the hour of a job's waits.
      const key = createHash('sha256').update(c.check).digest('hex');
      const before = crowdedChecks.get(key) ?? 0;
      if (crowdedChecks.size >= 500 && !crowdedChecks.has(key)) crowdedChecks.delete(/** @type {string} */ (crowdedChecks.keys().next().value));
      crowdedChecks.set(key, before + 1);
      r = before < CROWDED_CHECK_WAITS
        ? { err: 'SANDBOX_MEMORY_FULL', message: besideMessage(`for the check "${c.item}"`, beside) }
        : { err: 'MEMORY_EXCEEDED', message: `the check ran out of memory beside other environments ${before + 1} times (this time ${besideText(beside)}), so it is taken for its own: does it keep building a list or a string without end?${memoryAdvice()}` };
    }
    // A check that lost its interpreter to another environment is marked (lostWith: no score is its measure); one
    // that took the interpreter down itself fails, and so do the checks after it (marked as not run, not as lost).
    if ('err' in r) results.push({ item: c.item, passed: false, error: r.message, errorCode: r.err, ...(a.lost ? lostWith(a.lost) : {}) });
    else results.push({ item: c.item, passed: r.ok === true });
    /** @param {string} why */
    const notRun = (why, code = 'ENV_DISPOSED') => {
      for (const rest of checks.slice(i + 1)) results.push({ item: rest.item, passed: false, error: `not run: the check "${c.item}" before it ${why}`, errorCode: code });
    };
    // (The checks after it would meet the same heap; all of them are run again once there is room.)
    if ('err' in r && r.err === 'SANDBOX_MEMORY_FULL') {
      notRun('found no room in the interpreter (SANDBOX_MEMORY_FULL)', 'SANDBOX_MEMORY_FULL');
      break;
    }
    // (A fatal answer is the check's own: its interpreter is being replaced, and the checks after it would meet it gone.)
    if ((a.lost && !a.lost.cotenant) || a.fatal) {
      notRun(`took the interpreter down (${'err' in r ? r.err : 'ENV_DISPOSED'})`);
      break;
    }
    // A check that rebinds a shared name (json.dumps, say) would change the checks after it and other sessions.
    if (!a.lost) {
      const report = await tamperReport(interp, sid);
      if (report === 'own') {
        // What the check planted held the report past its deadline and the interrupt: the interpreter was terminated
        // for it, so the check fails, whatever it answered (before, the report was not known to be its: every session,
        // its own too, was marked lost with the interpreter, and the check's answer stood).
        results[results.length - 1] = { item: c.item, passed: false, error: 'the check left the interpreter in a state its tamper check could not get through (it ran past its deadline and the interrupt); its interpreter was replaced', errorCode: 'CHECK_THREW' };
        notRun('took the interpreter down (its tamper check did not end)');
        break;
      }
      if (report !== null && tamperCheck(interp, report, sid)) {
        results[results.length - 1] = { item: c.item, passed: false, error: 'the check tampered with shared modules; its interpreter was replaced', errorCode: 'CHECK_THREW' };
        notRun('tampered with shared modules (its interpreter was replaced)');
        break;
      }
    }
  }
  const passed = results.filter(r => r.passed).length;
  return { results, reward: results.length ? passed / results.length : 0, solved: results.length > 0 && passed === results.length };
}

/** Builds a snapshot in a throw-away interpreter; null when it cannot. */
async function buildSnapshot() {
  const started = performance.now();
  const w = new Worker(INTERPRETER, { workerData: { indexURL: settings.indexURL, heapMb: settings.heapMb, makeSnapshot: true }, env: {}, stdout: true, stderr: true });
  w.stdout.resume();
  w.stderr.resume();
  try {
    const m = await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
      w.once('exit', code => reject(new Error(`the snapshot thread exited with code ${code}`)));
    });
    return { bytes: /** @type {Uint8Array} */ (m.snapshot), ms: performance.now() - started };
  } catch (err) {
    log('warn', 'building the Python memory snapshot failed; interpreters start cold', { err: String(err) });
    return null;
  } finally {
    void w.terminate();
  }
}

/**
 * A cached snapshot file: the snapshot, then a 48-byte trailer (8 bytes "EFSNAP01", the snapshot's
 * length as a 64-bit little-endian integer, its SHA-256), written by the parent (python-runner.ts).
 * @param {string} file @returns {Uint8Array}
 */
function readSnapshotFile(file) {
  const buf = readFileSync(file);
  if (buf.byteLength < 48) throw new Error(`the file is ${buf.byteLength} bytes: too short for a snapshot`);
  const body = buf.byteLength - 48;
  const trailer = buf.subarray(body);
  if (trailer.subarray(0, 8).toString('latin1') !== 'EFSNAP01') throw new Error('the file has no snapshot trailer (an older format or a damaged file)');
  if (trailer.readBigUInt64LE(8) !== BigInt(body)) throw new Error(`the file's length (${body} bytes before the trailer) is not the recorded ${trailer.readBigUInt64LE(8)}`);
  const digest = createHash('sha256').update(buf.subarray(0, body)).digest();
  if (!digest.equals(trailer.subarray(16, 48))) throw new Error('the file\'s checksum does not match: it is damaged');
  // A copy at offset 0: a Buffer may be a view at an unaligned offset, which Pyodide's loader refuses.
  return new Uint8Array(buf.subarray(0, body));
}

/** Starts the interpreters; resolves with what `ready` reports. */
async function startInterpreters() {
  interpreters = Array.from({ length: settings.interpreters }, () => new Interpreter());
  const started = performance.now();
  try {
    const infos = await Promise.all(interpreters.map(p => p.ready));
    return { startMs: performance.now() - started, infos };
  } catch (err) {
    for (const p of interpreters) {
      p.dead = true;
      void p.worker.terminate();
    }
    interpreters = [];
    throw err;
  }
}

process.on('message', (/** @type {any} */ msg) => {
  if (msg.type === 'init') {
    settings = msg.settings;
    let fromCache = false;
    if (msg.snapshotFile) {
      try {
        snapshot = readSnapshotFile(msg.snapshotFile);
        fromCache = true;
      } catch (err) {
        log('warn', 'the cached Python memory snapshot is unusable; building a new one', { err: String(err) });
        send({ type: 'snapshotInvalid' });
      }
    }
    void (async () => {
      try {
        const build = async () => {
          if (!snapshot && msg.buildSnapshot) {
            const built = await buildSnapshot();
            if (built) {
              snapshot = built.bytes;
              send({ type: 'snapshot', base64: Buffer.from(built.bytes.buffer, built.bytes.byteOffset, built.bytes.byteLength).toString('base64'), ms: built.ms });
            }
          }
        };
        await build();
        let up;
        try {
          up = await startInterpreters();
        } catch (err) {
          if (!fromCache) throw err;
          // A cached snapshot that passed its checksum but does not start (another build of Node or
          // Pyodide wrote it, say): it is dropped, and the start is tried once more without it.
          log('warn', 'the interpreters did not start from the cached Python memory snapshot; it is replaced', { err: String(err) });
          send({ type: 'snapshotInvalid' });
          snapshot = undefined;
          fromCache = false;
          await build();
          up = await startInterpreters();
        }
        send({ type: 'ready', fromSnapshot: Boolean(snapshot), startMs: up.startMs, loadMs: up.infos.map(i => i.loadMs), packagesMs: up.infos.map(i => i.packagesMs), heapBytes: up.infos.map(i => i.heapBytes) });
      } catch (err) {
        send({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
      }
    })();
    return;
  }
  if (msg.op === 'stats') {
    send({ id: msg.id, ok: true, value: { interpreters: interpreters.map(p => ({ n: p.n, sessions: p.sessions.size, heapBytes: p.heapBytes, fsBytes: p.fsBytes, retiring: p.retiring, collections: p.collections, usedBytes: p.usedBytes, garbageBytes: p.garbageBytes })), rssBytes: process.memoryUsage().rss, waitingForRoom: roomWaiters.size } });
    return;
  }
  if (msg.op === 'abandon') {
    // (no answer: the open it names answers, at once if it waits for room)
    abandonOpen(msg.of);
    return;
  }
  handle(msg).finally(() => msg.op === 'open' && abandonedOpens.delete(msg.id)).then(
    r => send(r.error ? { id: msg.id, ok: false, error: r.error } : { id: msg.id, ok: true, value: r.value }),
    err => send({ id: msg.id, ok: false, error: { code: 'SANDBOX_UNAVAILABLE', message: `the Python sandbox failed: ${err instanceof Error ? err.message : String(err)}` } }),
  );
});
process.on('disconnect', () => process.exit(0));
