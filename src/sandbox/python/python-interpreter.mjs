// @ts-check
/**
 * One Pyodide interpreter: a worker thread of the Python child process (python-child.mjs). Plain
 * JavaScript with node built-ins only, because the child runs under Node's permission model.
 *
 * Before Pyodide loads: `process.binding('constants')` is shimmed (Pyodide's NODEFS asks for it and
 * the permission model denies process.binding), the `ws` package (Emscripten's socket layer in
 * Node) is replaced in the require cache by a module that refuses every connection, and
 * WebAssembly.Memory.prototype.grow is capped at `heapMb`: past it the allocation fails inside
 * Python (MemoryError) and the thread reports `exhausted`.
 *
 * After it loads: `js` and `pyodide_js` are unregistered, the harness (python-harness.mjs) removes
 * pyodide's own Python modules and installs an import blocker, the session clock, random, uuid4 and
 * urandom. The thread then answers `{id, fn, args}` messages with `{id, text}`: the harness
 * function's answer, one string (handed over as a str, or as UTF-8 bytes when long and not ASCII: answerText).
 *
 * User-supplied packages (ENVFLEET_PYTHON_PACKAGES, read by the parent): their files are written into the
 * in-memory filesystem under /envfleet/packages (for tracebacks and `__file__` only), and every module is
 * compiled once, here, before any environment code runs; the table of code objects is held on this
 * JavaScript side and handed to the harness with each session (python-harness.mjs, "a fresh copy per
 * session"), never loaded from the filesystem.
 *
 * workerData: { indexURL, heapMb, snapshot?: Uint8Array, makeSnapshot?: boolean, interrupt: SharedArrayBuffer, packages?: PackageFile[] }
 */
import { constants as fsConstants } from 'node:fs';
import { createRequire, Module } from 'node:module';
import { constants as osConstants } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { answerText, cutChars, describeThrown, HARNESS_PY } from './python-harness.mjs';

/** A session's end runs the cycle collector at least every this many ends (and whenever the heap grew since it last ran). */
const COLLECT_EVERY = 8;

/** Modules imported before a snapshot is taken: what environments import most, so they are already in memory. */
const PRELOAD = 'import ast, copy, json, re, datetime, uuid, random, math, collections, typing, dataclasses, enum, decimal, hashlib, itertools, functools, string, heapq, bisect, statistics, fractions, time, types';

/** @typedef {{ module: string, file: string, isPackage: boolean, source: string }} PackageFile */
const data = /** @type {{ indexURL: string, heapMb: number, snapshot?: Uint8Array, makeSnapshot?: boolean, interrupt?: SharedArrayBuffer, packages?: PackageFile[] }} */ (workerData);
const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort);

// 1. process.binding: only the constants Pyodide's NODEFS reads.
/** @type {any} */ (process).binding = (/** @type {string} */ name) => {
  if (name === 'constants') return { fs: fsConstants, os: osConstants };
  throw new Error(`process.binding(${JSON.stringify(name)}) is not available in the Python sandbox`);
};

// 2. No sockets: Emscripten's SOCKFS opens TCP connections through the `ws` package in Node.
const requireFromPyodide = createRequire(`${data.indexURL}pyodide.asm.mjs`);
let wsPath = null;
try {
  wsPath = requireFromPyodide.resolve('ws');
} catch {
  // Not installed: nothing to stub, and Emscripten cannot open sockets without it.
}
if (wsPath) {
  const refuse = function WebSocketRefused() {
    throw new Error('the network is not available in the Python sandbox');
  };
  refuse.Server = refuse;
  refuse.WebSocket = refuse;
  const stub = new Module(wsPath);
  stub.filename = wsPath;
  stub.exports = refuse;
  stub.loaded = true;
  requireFromPyodide.cache[wsPath] = stub;
}

// 3. The memory cap: every WebAssembly memory of this thread (Pyodide's heap) grows up to heapMb.
const PAGE = 65536;
const capPages = Math.floor((data.heapMb * 1024 * 1024) / PAGE);
let exhausted = false;
/** The largest growth (bytes) refused during the current job: how much room the allocation that met the cap asked for. */
let refusedBytes = 0;
/** @type {{ prototype: { grow: (this: unknown, delta: number) => number } }} */
const WasmMemory = /** @type {any} */ (globalThis).WebAssembly.Memory;
const realGrow = WasmMemory.prototype.grow;
WasmMemory.prototype.grow = function grow(/** @type {number} */ delta) {
  const pages = /** @type {{ buffer: ArrayBuffer }} */ (/** @type {unknown} */ (this)).buffer.byteLength / PAGE;
  if (pages + delta > capPages) {
    exhausted = true;
    refusedBytes = Math.max(refusedBytes, delta * PAGE);
    throw new RangeError(`the Python sandbox's memory cap (${data.heapMb} MiB) is reached`);
  }
  return realGrow.call(this, delta);
};

const { loadPyodide } = await import(`${data.indexURL}pyodide.mjs`);
/** @type {any} */
const options = {
  indexURL: data.indexURL,
  env: { PYTHONHASHSEED: '0' },
  jsglobals: Object.create(null),
  // While Pyodide starts; replaced below, before any environment code runs.
  stdout: () => undefined,
  stderr: () => undefined,
  checkAPIVersion: true,
};
if (data.makeSnapshot) options._makeSnapshot = true;
else if (data.snapshot) options._loadSnapshot = data.snapshot;
const started = performance.now();
const pyodide = await loadPyodide(options);
const loadMs = performance.now() - started;

if (data.makeSnapshot) {
  pyodide.runPython(PRELOAD);
  const snapshot = pyodide.makeMemorySnapshot();
  port.postMessage({ snapshot, loadMs }, [snapshot.buffer]);
} else {
  if (!data.snapshot) pyodide.runPython(PRELOAD);
  for (const name of ['js', 'pyodide_js']) {
    try {
      pyodide.unregisterJsModule(name);
    } catch {
      // Not registered in this build.
    }
  }
  if (data.interrupt) pyodide.setInterruptBuffer(new Int32Array(data.interrupt));
  // Standard input is at its end, as for a process started with stdin from /dev/null (input() raises EOFError, a read
  // gives ''). Pyodide's default reads the thread's fd 0 through Node's fs, which the permission model refuses: the
  // interpreter failed fatally and its co-tenants' sessions ended.
  pyodide.setStdin({ stdin: () => null });
  // What environments print is dropped as it is written, every byte, newline or not. Pyodide's batched writer (what a
  // stdout callback selects) kept each byte in a JavaScript array of the interpreter until a newline: a progress line
  // (print(f"\r{i}/{n}", end="")) grew that array outside the WebAssembly cap, across sessions, until the child
  // process ran out of memory and every session of every interpreter ended.
  const discard = { write: (/** @type {Uint8Array} */ buffer) => buffer.length };
  pyodide.setStdout(discard);
  pyodide.setStderr(discard);
  const ns = pyodide.globals.get('dict')();
  const packages = data.packages ?? [];
  const packageNames = [...new Set(packages.map(f => f.module.split('.')[0]))];
  ns.set('_PACKAGE_NAMES_JSON', JSON.stringify(packageNames));
  pyodide.runPython(HARNESS_PY, { globals: ns });
  // The packages: files into the in-memory filesystem (read-only mode; what runs is the compiled table,
  // never these files), then every module compiled, before any environment code runs.
  /** @type {any} (undefined, not null: Pyodide hands a JavaScript null to Python as jsnull, undefined as None) */
  let packageTable = undefined;
  let packagesMs = 0;
  if (packages.length) {
    const t = performance.now();
    const pfs = /** @type {any} */ (pyodide).FS;
    for (const f of packages) {
      const path = `/envfleet/packages/${f.file}`;
      pfs.mkdirTree(path.slice(0, path.lastIndexOf('/')));
      pfs.writeFile(path, f.source);
      pfs.chmod(path, 0o444);
    }
    packageTable = ns.get('build_packages')(JSON.stringify(packages));
    // Every package module imported once before any session, so the standard modules they load are watched.
    ns.get('preload_packages')(packageTable);
    packagesMs = performance.now() - t;
  }
  /** @type {Record<string, any>} */
  const fns = {};
  for (const name of ['create', 'call', 'state', 'initial', 'finish', 'checks_context', 'check', 'drop', 'collect', 'tamper_report', 'recover', 'footprints']) fns[name] = ns.get(name);
  // Environment sources already checked and compiled, by class name and source: a rollout opens a session
  // per episode on the same source, and a large one (BFCL's classes with their long-context data, 250 KB;
  // τ-bench's embedded database) takes a second or more to parse, check and compile. The code objects are
  // held here, on the JavaScript side, where Python code cannot reach them (a cache in the harness's own
  // globals could be filled by one session with code that a later session of another environment would
  // run). Code objects are immutable; each session still executes the code in a module of its own. At
  // most CODE_CACHE_MAX sources and CODE_CACHE_CHARS characters of them, the oldest dropped first.
  const CODE_CACHE_MAX = 16;
  const CODE_CACHE_CHARS = 32 << 20;
  /** @type {Map<string, { code: any, chars: number }>} */
  const codeCache = new Map();
  let codeCacheChars = 0;
  const compileEnv = ns.get('compile_env');
  const createEnv = fns['create'];
  fns['create'] = (/** @type {string} */ sid, /** @type {string} */ className, /** @type {string} */ source, /** @type {string} */ config, /** @type {string} */ tools, /** @type {string} */ seed, /** @type {string} */ maxStateBytes) => {
    const key = `${className}\u0000${source}`;
    let hit = codeCache.get(key);
    if (hit) {
      codeCache.delete(key);
      codeCache.set(key, hit);
    } else {
      // (the cache's code objects, and what evicting one gives back, are not a session's: taken into base)
      const cacheBefore = bytesInUse();
      const code = compileEnv(className, source);
      if (typeof code === 'string') return code;
      hit = { code, chars: source.length };
      codeCache.set(key, hit);
      codeCacheChars += hit.chars;
      for (const [k, old] of codeCache) {
        if (codeCache.size <= CODE_CACHE_MAX && codeCacheChars <= CODE_CACHE_CHARS) break;
        if (old === hit) continue;
        codeCache.delete(k);
        codeCacheChars -= old.chars;
        old.code.destroy();
      }
      const cacheAfter = cacheBefore === null ? null : bytesInUse();
      if (cacheBefore !== null && cacheAfter !== null) base += cacheAfter - cacheBefore;
    }
    // What the creation left in use (two readings, under half the cap too: its end may come past it), counted as
    // explained while it lives (unexplained, below).
    const before = bytesInUse();
    try {
      return createEnv(sid, className, hit.code, config, tools, seed, packageTable, maxStateBytes);
    } finally {
      const after = before === null ? null : bytesInUse();
      if (before !== null && after !== null) {
        forget(sid);
        createdBytes.set(sid, Math.max(0, after - before));
        liveCreated += Math.max(0, after - before);
      }
      // (the reading sent with the answer: from half the cap on, as for any job)
      usedNow = after !== null && heapBytes() >= capBytes / 2 ? after : undefined;
    }
  };
  const checksContext = fns['checks_context'];
  fns['checks_context'] = (/** @type {string} */ sid, /** @type {string} */ finalJson, /** @type {string} */ initialJson, /** @type {string} */ episodeJson) =>
    checksContext(sid, finalJson, initialJson, episodeJson, packageTable);
  const PythonError = pyodide.ffi.PythonError;
  const heapBytes = () => /** @type {any} */ (pyodide)._module?.HEAPU8?.byteLength ?? 0;
  const capBytes = data.heapMb * 1024 * 1024;
  /** The reading of the bytes in use a job took at its end (create, drop, collect), sent with its answer. @type {number | undefined} */
  let usedNow;
  /** Whether the job ran the cycle collector to its end (sent with its answer: the child counts collections). */
  let collectedNow = false;
  /** What an asked collection gave back, by readings before and after it (sent with its answer). @type {number | undefined} */
  let freedNow;
  // A session's end collects the cycles it left (python-harness.mjs, _drop). A full collection costs about as much as
  // the objects the live sessions hold (~30 ms beside a co-tenant of 150,000 containers, 1.3–2.3 s beside 20–50
  // τ-bench airline databases; about 1 ms with none, what was there at load being frozen out of it: gc.freeze at the
  // harness's end), so it is made only when it may give memory back:
  // - while the heap is under half the cap: when it grew since the last collection, and at every COLLECT_EVERY-th end;
  // - from half the cap on: when the heap grew (in the ending session); else, once it is dropped, when what is in use
  //   beyond what it is explained by (unexplained: what was in use at the last collection besides the sessions live
  //   then, what each live session's creation took, with its share of what they grew by until then, and the cache's
  //   compiled sources) is more than an eighth of the room left under the cap (at least 8 MiB), in a session of its
  //   own. That is what ended sessions left in cycles (a module-level list, held by its module's functions and
  //   globals; a class-level memo of 16 MB per session reached the 192 MB cap in 11 sessions without it), and what
  //   live ones grew by since the last collection. Bytes in use: what malloc has handed out (mallinfo's uordblks, a
  //   2 ms reading: it walks the heap), read before and after each creation and each compilation, and at each end
  //   from half the cap on.
  // Not at every end past half the cap, as until 2026-12-07: most environments' memory is freed by reference counts as
  // their instance goes (τ-bench's database: 14 MB a session, all given back without the collector), and 64 τ-bench
  // airline episodes at once took 1.6 times as long as 8, their ends 1.3–2.3 s each. A creation that does not fit while
  // the unexplained bytes would make room asks for a collection itself (collect, python-child.mjs).
  const mod = /** @type {any} */ (pyodide)._module;
  const infoAt = typeof mod?._mallinfo === 'function' && typeof mod?._malloc === 'function' ? mod._malloc(64) : 0;
  /** The bytes malloc has handed out and not had back (mallinfo().uordblks); null where the build does not say. */
  const bytesInUse = () => {
    if (!infoAt) return null;
    try {
      mod._mallinfo(infoAt);
      const used = mod.HEAPU32[(infoAt >> 2) + 7];
      return typeof used === 'number' ? used : null;
    } catch {
      return null; // the collection then falls back to every COLLECT_EVERY-th end
    }
  };
  const dropSession = fns['drop'];
  const collectNow = fns['collect'];
  let heapAtCollect = heapBytes();
  let dropsSinceCollect = 0;
  /** What each live session's creation left in use, by session, and their sum. @type {Map<string, number>} */
  const createdBytes = new Map();
  let liveCreated = 0;
  // The room the harness keeps for measuring sessions (12 MiB, held for good) is taken now, not inside the first
  // creation's readings: counted as that session's, it was unexplained once the session ended.
  ns.get('_keep_walk_room')();
  /**
   * What was in use at the last collection (or at load) besides what the sessions live then took to create and had
   * grown by (afterCollection), with the cache's compiled sources since; lowered by a reading under what explains it.
   */
  let base = bytesInUse() ?? 0;
  /**
   * What is in use beyond what is explained (see above), given a reading `used`. A reading under what is explained
   * (live sessions that grew by calls before a collection, then ended: base took their growth in) lowers base: else
   * that credit hid as much garbage left after it.
   * @param {number} used
   */
  const unexplained = used => {
    base = Math.min(base, used - liveCreated);
    return used - base - liveCreated;
  };
  /**
   * After a collection that ran to its end: the new marks. What is in use beyond base and the live sessions' creations
   * then is what those sessions grew by in their calls: it is spread over them by what each took to create, not taken
   * into base (taken into base, a grown session's end, freeing its growth, read as less than explained, and hid as much
   * garbage left after it: a stranger's review). A session's share may be wrong (it errs toward a collection more).
   * @param {unknown} text the harness's answer
   */
  const afterCollection = text => {
    if (typeof text !== 'string' || !text.endsWith(',"collected":true}')) return;
    collectedNow = true;
    heapAtCollect = heapBytes();
    dropsSinceCollect = 0;
    const used = bytesInUse();
    if (used === null) return;
    const grown = used - liveCreated - base;
    if (grown > 0 && createdBytes.size > 0 && liveCreated > 0) {
      const scale = (liveCreated + grown) / liveCreated;
      // (whole bytes, and their sum taken again: fractions left liveCreated a crumb above 0 with no session live, and
      // that crumb took a share of every later growth, owned by no session: a stranger's review)
      liveCreated = 0;
      for (const [sid, bytes] of createdBytes) {
        const share = Math.round(bytes * scale);
        createdBytes.set(sid, share);
        liveCreated += share;
      }
    }
    // (with no live session, or none grown: all of it, freshly collected, is the mark)
    base = used - liveCreated;
    usedNow = heapAtCollect >= capBytes / 2 ? used : undefined;
  };
  /**
   * The drop's tamper report with the one of the collection after it (what a __del__ it ran changed): both lists.
   * @param {unknown} dropText @param {unknown} collectText
   */
  const withReport = (dropText, collectText) => {
    if (typeof collectText !== 'string') return dropText;
    if (typeof dropText !== 'string') return collectText;
    try {
      const [a, b] = [JSON.parse(dropText), JSON.parse(collectText)];
      if (!Array.isArray(a?.ok) || !Array.isArray(b?.ok)) return 'err' in a ? dropText : collectText;
      const seen = new Set(a.ok.map((/** @type {unknown} */ f) => JSON.stringify(f)));
      const ok = [...a.ok, ...b.ok.filter((/** @type {unknown} */ f) => !seen.has(JSON.stringify(f)))];
      return JSON.stringify(b.collected === true ? { ok, collected: true } : { ok });
    } catch {
      return collectText;
    }
  };
  const forget = (/** @type {string} */ sid) => {
    liveCreated -= createdBytes.get(sid) ?? 0;
    createdBytes.delete(sid);
    if (createdBytes.size === 0) liveCreated = 0;
  };
  fns['drop'] = (/** @type {string} */ sid) => {
    dropsSinceCollect += 1;
    // Before the drop, from what it knows then: in the session (a __del__ of its garbage sees its clock and streams).
    const collect = heapBytes() > heapAtCollect || (heapBytes() < capBytes / 2 && dropsSinceCollect >= COLLECT_EVERY);
    forget(sid);
    let text;
    try {
      text = dropSession(sid, collect);
    } finally {
      if (collect) afterCollection(text);
    }
    // After it, from half the cap on, unless the drop collected or tried to: by what it left (a reading with the session
    // gone: its own growth by calls, freed with its instance, is not counted, and what it left in cycles is), in a
    // session of its own as an asked one is. (Not after a collection cut short by the drop's deadline: a second one
    // then ran in C past it, where no interrupt reaches, and the grace's end took the interpreter with every running
    // environment: a stranger's review.)
    if (!collect && heapBytes() >= capBytes / 2) {
      const used = bytesInUse();
      if (used !== null && unexplained(used) > Math.max(8 * 1024 * 1024, (capBytes - used) / 8)) {
        let report;
        try {
          report = collectNow();
        } finally {
          afterCollection(report);
        }
        // (its tamper report joins the drop's: a __del__ run by the collection may have changed what the drop's did not see)
        text = withReport(text, report);
      }
      if (!collectedNow) usedNow = used ?? undefined;
    }
    return text;
  };
  fns['collect'] = () => {
    let text;
    const before = bytesInUse();
    try {
      text = collectNow();
      return text;
    } finally {
      afterCollection(text);
      if (!collectedNow) usedNow = heapBytes() >= capBytes / 2 ? (bytesInUse() ?? undefined) : undefined;
      // (what it gave back, by its own readings: the child weighs the next ask by it)
      else if (before !== null) {
        const after = bytesInUse();
        if (after !== null) freedNow = before - after;
      }
    }
  };
  // The in-memory filesystem keeps file contents in JavaScript arrays, outside the capped heap: its
  // bytes (all of it but /dev and /proc, less what was there at load) count toward the recycle
  // threshold, and the writable folders are emptied when the interpreter's last session ends.
  const FS = /** @type {any} */ (pyodide).FS;
  const fsBytesUnder = (/** @type {string} */ path, depth = 0) => {
    let total = 0;
    let names;
    try {
      names = FS.readdir(path);
    } catch {
      return 0;
    }
    for (const name of names) {
      if (name === '.' || name === '..') continue;
      const child = path === '/' ? `/${name}` : `${path}/${name}`;
      if (child === '/dev' || child === '/proc') continue;
      try {
        const st = FS.lstat(child);
        if (FS.isDir(st.mode)) {
          if (depth < 64) total += fsBytesUnder(child, depth + 1);
        } else total += st.size;
      } catch {
        // Vanished or unreadable.
      }
    }
    return total;
  };
  const WRITABLE = ['/tmp', '/home/pyodide'];
  // Everything else read-only (Emscripten's filesystem holds its nodes to their mode bits): a file written at the
  // root or under /lib was never emptied and a later session of the scenario started from it, and the standard
  // library's files (python_stdlib.zip, read lazily by later imports) could be rewritten. As on a machine where
  // the process may write only its temporary and home folders, such a write is a PermissionError.
  const lockFs = (/** @type {string} */ path, depth = 0) => {
    if (WRITABLE.includes(path)) return;
    const st = FS.lstat(path);
    if (FS.isDir(st.mode)) {
      if (path === '/dev' || path === '/proc') {
        lockDirs(path); // no new files there (/dev/shm, /proc/self included); the devices keep their modes
        return;
      }
      for (const name of FS.readdir(path)) {
        if (name !== '.' && name !== '..' && depth < 64) lockFs(path === '/' ? `/${name}` : `${path}/${name}`, depth + 1);
      }
      FS.chmod(path, 0o555);
    } else if (FS.isFile(st.mode)) FS.chmod(path, st.mode & 0o7555 & ~0o222);
  };
  /** Every folder under path (path included) read-only; files untouched. */
  function lockDirs(/** @type {string} */ path, depth = 0) {
    try {
      if (!FS.isDir(FS.lstat(path).mode)) return;
      for (const name of FS.readdir(path)) if (name !== '.' && name !== '..' && depth < 16) lockDirs(`${path}/${name}`, depth + 1);
      FS.chmod(path, 0o555);
    } catch {
      // A node that cannot be read or changed (a device's own folder): left as it is.
    }
  }
  lockFs('/');
  const fsBase = fsBytesUnder('/');
  const fsBytes = () => Math.max(0, fsBytesUnder('/') - fsBase);
  const clearFs = () => {
    const rm = (/** @type {string} */ path) => {
      const st = FS.lstat(path);
      if (FS.isDir(st.mode)) {
        for (const name of FS.readdir(path)) if (name !== '.' && name !== '..') rm(`${path}/${name}`);
        FS.rmdir(path);
      } else FS.unlink(path);
    };
    for (const dir of WRITABLE) {
      /** @type {string[]} */
      let names;
      try {
        names = FS.readdir(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        if (name === '.' || name === '..') continue;
        try {
          rm(`${dir}/${name}`);
        } catch {
          // Best effort.
        }
      }
    }
    return '{"ok":true}';
  };
  fns['clear_fs'] = clearFs;
  let fsCheckedAt = 0;
  let lastFsBytes = 0;
  port.on('message', (/** @type {{ id: number, fn: string, args: string[] }} */ msg) => {
    exhausted = false;
    refusedBytes = 0;
    usedNow = undefined;
    collectedNow = false;
    freedNow = undefined;
    const t0 = performance.now();
    let text;
    let fatal = null;
    try {
      // A str, or a long answer that is not ASCII as its UTF-8 (python-harness.mjs, "answers"): Pyodide copies such a str one character at a time.
      text = answerText(fns[msg.fn](...msg.args));
    } catch (err) {
      // Once Pyodide has fatally failed, its API (pyodide.ffi included) throws on every access: only
      // what was captured at load is used here, and every test is guarded.
      let isPython;
      let type = '';
      try {
        isPython = err instanceof PythonError;
        if (isPython) type = String(/** @type {{ type: string }} */ (/** @type {unknown} */ (err)).type);
      } catch {
        isPython = false;
      }
      if (isPython && (type === 'KeyboardInterrupt' || type === 'RecursionError' || type === 'MemoryError')) {
        // A limit that landed outside the harness's own handlers (an interrupt between the tool's return
        // and the harness's): the interpreter is sound once no session is left current with its package
        // modules in sys.modules (recover); should that fail too, it is replaced.
        try {
          fns['recover']();
        } catch (recoverErr) {
          fatal = `the harness could not recover after ${type}: ${cutChars(describeThrown(recoverErr), 300)}`;
        }
        text = type === 'KeyboardInterrupt'
          ? JSON.stringify({ err: 'DEADLINE_EXCEEDED', message: 'the call ran past its deadline and was interrupted' })
          : type === 'RecursionError'
            ? JSON.stringify({ err: 'STACK_OVERFLOW', message: 'the call recursed too deeply (RecursionError in the sandbox harness)' })
            : JSON.stringify({ err: 'MEMORY_EXCEEDED', message: 'MemoryError in the sandbox harness' });
      } else if (isPython) {
        // Any other exception out of the harness means its own state was changed under it (environment
        // code reaching the harness's dicts by built-up attribute names): the interpreter is replaced
        // rather than trusted with the next session.
        fatal = `${type} in the sandbox harness`;
        text = JSON.stringify({ err: 'ENV_DISPOSED', message: `the sandbox harness failed (${type}); its interpreter is replaced` });
      } else {
        // A JavaScript error out of Pyodide (a fatal error, a trap): the interpreter may be broken;
        // the child replaces this thread and its other sessions end with ENV_DISPOSED.
        const what = describeThrown(err);
        fatal = what;
        const code = /call stack|stack overflow|recursion/i.test(what) ? 'STACK_OVERFLOW' : exhausted ? 'MEMORY_EXCEEDED' : 'ENV_DISPOSED';
        text = JSON.stringify({ err: code, message: `the Python interpreter failed fatally and is replaced: ${cutChars(what, 500)}` });
      }
    }
    // The walk costs ~2 ms: done at most every 250 ms, and after every drop (a session's end).
    if (fatal === null && (msg.fn === 'drop' || msg.fn === 'clear_fs' || performance.now() - fsCheckedAt > 250)) {
      fsCheckedAt = performance.now();
      try {
        lastFsBytes = fsBytes();
      } catch {
        // The filesystem is unreadable: counted as before.
      }
    }
    const fs = lastFsBytes;
    // After a creation or a drop, from half the cap on: the bytes in use (a 2 ms reading), which the child weighs a new
    // environment against before it creates one on this interpreter (null: under half the cap, room enough). After any
    // job that found no room too: what was left then is what the child learns such work needs.
    // (the reading the job took at its end, when it took one: create, drop, collect)
    const usedBytes = fatal === null && (msg.fn === 'create' || msg.fn === 'drop' || msg.fn === 'collect' || exhausted) ? (usedNow !== undefined && !exhausted ? usedNow : heapBytes() >= capBytes / 2 ? bytesInUse() : null) : undefined;
    // With it, what a collection may give back (the child asks for one when that would make a creation fit).
    const garbageBytes = typeof usedBytes === 'number' ? Math.max(0, unexplained(usedBytes)) : undefined;
    port.postMessage({ id: msg.id, text, us: Math.round((performance.now() - t0) * 1000), exhausted, refusedBytes, fatal: fatal !== null, heapBytes: heapBytes(), fsBytes: fs, usedBytes, garbageBytes, collected: collectedNow, freedBytes: freedNow });
  });
  port.postMessage({ ready: true, loadMs, packagesMs, heapBytes: heapBytes(), fromSnapshot: Boolean(data.snapshot) });
}
