import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '../../config/index.js';
import { runOptionsFrom } from '../../queues/submit.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import { ENVFLEET_BIN, REDIS_URL } from '../helpers/integration.js';

const run = promisify(execFile);

/**
 * What a stranger typing at the command line gets for a mistake: an exit code of 1 and a message that
 * says what is wrong, where and what to do (never a stack), and nothing created on the way. Runs the
 * build in dist/ (npm run build first), on a key prefix of its own.
 */
describe('envfleet: mistakes at the command line (build in dist/)', function () {
  const prefix = `envfleet-test-cli-${randomUUID().slice(0, 8)}`;
  let dir: string;
  let redis: Redis;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-cli-inputs-'));
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  async function envfleet(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(process.execPath, [ENVFLEET_BIN, ...args], { env: { ...process.env, REDIS_URL, ENVFLEET_REDIS_PREFIX: prefix, ...env } });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }

  it('sink --run with a run that does not exist fails as export does, before creating the output folder or any Redis key', async () => {
    const out = join(dir, 'sink-out');
    const { code, stderr } = await envfleet(['sink', '--run', 'nosuch', '--out', out, '--follow']);
    expect(code).to.equal(1);
    expect(stderr).to.include('run "nosuch" does not exist').and.to.include('envfleet runs');
    // Its code first, as the logs and docs/errors.md name it.
    expect(stderr).to.match(/^envfleet: \[INVALID_REQUEST\] run "nosuch"/);
    expect(stderr).not.to.match(/\n\s+at /);
    expect(await readdir(dir)).not.to.include('sink-out');
    expect(await redis.keys(`${prefix}*`)).to.deep.equal([]);
  });

  it('status, pause, resume, cancel and budget with a name no run can have say what a run name is, not that it does not exist', async () => {
    for (const args of [['status', '--run', 'a b'], ['pause', '--run', 'a b'], ['resume', '--run', ''], ['cancel', '--run', '运行🚀é'], ['budget', '--run', 'a b', '--tokens', '5']]) {
      const { code, stderr } = await envfleet(args);
      expect(code, args.join(' ')).to.equal(1);
      expect(stderr, args.join(' ')).to.include('may only contain ASCII letters').and.to.include('for example').and.not.to.include('does not exist');
    }
  });

  it('sink --follow stopped with Ctrl-C says how many trajectories it wrote and how to go on, and exits 0', async () => {
    const made = await envfleet(['synth', '--run', 'follow', '--descriptions', 'fixtures/demo/python-descriptions.jsonl', '--no-wait']);
    expect(made.code, made.stderr).to.equal(0);
    const out = join(dir, 'follow-out');
    const sink = spawn(process.execPath, [ENVFLEET_BIN, 'sink', '--run', 'follow', '--out', out, '--follow'], { env: { ...process.env, REDIS_URL, ENVFLEET_REDIS_PREFIX: prefix } });
    let stdout = '';
    sink.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    const exited = new Promise<number | null>(resolve => sink.once('exit', code => resolve(code)));
    // Following once it holds the run's sink lock.
    for (let i = 0; i < 600 && !(await redis.exists(`${prefix}:run:follow:sink-lock`)); i++) await new Promise(r => setTimeout(r, 50));
    sink.kill('SIGINT');
    expect(await exited).to.equal(0);
    expect(stdout).to.include(`sink stopped: 0 trajectories written to ${out}/trajectories this time`).and.to.include('run the same command again');
  });

  it('number options take plain decimals only, whole numbers where a count is meant, and say which option and why', async () => {
    const refused: [string[], string, RegExp][] = [
      [['budget', '--run', 'x', '--tokens', '1.5'], '--tokens <n>', /whole number ≥ 0/],
      [['budget', '--run', 'x', '--tokens', '0x10'], '--tokens <n>', /whole number ≥ 0/],
      [['budget', '--run', 'x', '--usd', '0x10'], '--usd <x>', /a number ≥ 0 in decimal digits/],
      [['budget', '--run', 'x', '--usd', '1e3'], '--usd <x>', /decimal digits/],
      [['budget', '--run', 'x', '--usd', '-3'], '--usd <x>', /decimal digits/],
      [['rollouts', '--run', 'x', '--samples', '0x4'], '--samples <k>', /whole number ≥ 1/],
      [['rollouts', '--run', 'x', '--samples', ' 4'], '--samples <k>', /whole number ≥ 1/],
      [['export', '--run', 'x', '--out', dir, '--min-reward', '0x1'], '--min-reward <x>', /from 0 to 1/],
      [['serve', '--run', 'x', '--port', '8e3'], '--port <n>', /port number/],
    ];
    for (const [args, option, why] of refused) {
      const { code, stderr } = await envfleet(args);
      expect(code, args.join(' ')).to.equal(1);
      expect(stderr, args.join(' ')).to.include(`option '${option}' argument '${args.at(-1)}' is invalid`).and.to.match(why);
    }
  });

  it('export refuses --filter solved with --min-reward (alternatives, as the README gives them: with both, --min-reward changed nothing)', async () => {
    const { code, stderr } = await envfleet(['export', '--run', 'x', '--out', dir, '--filter', 'solved', '--min-reward', '0.5']);
    expect(code).to.equal(1);
    expect(stderr).to.include('give --filter solved or --min-reward X, not both').and.not.to.match(/\n\s+at /);
  });

  it('scenarios refuses --tries without --verify-with (it would do nothing, and be frozen with the settings)', async () => {
    const { code, stderr } = await envfleet(['scenarios', '--run', 'x', '--tries', '5', '--no-wait']);
    expect(code).to.equal(1);
    expect(stderr).to.include('--tries sets how many reference rollouts --verify-with MODEL gets per scenario').and.not.to.match(/\n\s+at /);
    expect(await redis.keys(`${prefix}:run:x*`)).to.deep.equal([]);
  });

  it('pause and cancel refuse --budget-usd / --budget-tokens (only resume raises a budget) and do not list them', async () => {
    for (const action of ['pause', 'cancel']) {
      for (const option of ['--budget-usd', '--budget-tokens']) {
        const { code, stderr } = await envfleet([action, '--run', 'x', option, '5']);
        expect(code, `${action} ${option}`).to.equal(1);
        expect(stderr).to.include(`unknown option '${option}'`);
      }
      expect((await envfleet([action, '--help'])).stdout).not.to.include('--budget');
    }
    const resume = (await envfleet(['resume', '--help'])).stdout;
    expect(resume).to.include('--budget-usd').and.to.include('--budget-tokens');
  });

  it('export --out where no folder can be made fails at once with the folder and the reason (it spun at 100 % CPU under /proc)', async function () {
    if (process.platform !== 'linux') this.skip();
    await createRedisRunStore(redis, prefix).createRun({ id: 'out-test', createdAt: new Date().toISOString(), input: 'descriptions', options: runOptionsFrom(loadConfig({})) });
    for (const [out, why] of [['/proc/envfleet-x', /virtual file system.*\(ENOENT\)/], ['/sys/envfleet-x', /\((EPERM|EACCES|EROFS)\)/]] as const) {
      const { code, stderr } = await envfleet(['export', '--run', 'out-test', '--out', out]);
      expect(code, out).to.equal(1);
      expect(stderr).to.include(`cannot create the output folder (export --out) ${out}`).and.to.match(why);
      expect(stderr).not.to.match(/\n\s+at /);
    }
  });

  it('an input file that is not UTF-8 is refused or its lines reported, with the encoding to save it in; its text never reaches a run as U+FFFD', async () => {
    const { writeFile } = await import('node:fs/promises');
    const tasks = [{ task: 'Réserver une chambre à l’hôtel 🏨' }, { task: '预订酒店房间' }].map(t => JSON.stringify(t)).join('\n');
    // Windows Notepad's "Unicode": UTF-16LE with a byte-order mark.
    const utf16 = join(dir, 'tasks-utf16.jsonl');
    await writeFile(utf16, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(tasks, 'utf16le')]));
    const a = await envfleet(['synth', '--run', 'utf16', '--tasks', utf16, '--no-wait']);
    expect(a.code).to.equal(1);
    expect(a.stderr).to.include(`${utf16}: the file is UTF-16LE text; save it as UTF-8`);
    // Latin-1: "é" as the one byte 0xE9, on the first line only; the second line is good UTF-8.
    const latin1 = join(dir, 'tasks-latin1.jsonl');
    await writeFile(latin1, Buffer.concat([Buffer.from('{"task": "R'), Buffer.from([0xe9]), Buffer.from('server une chambre"}\n{"task": "预订酒店房间"}\n')]));
    const b = await envfleet(['synth', '--run', 'latin1', '--tasks', latin1, '--no-wait']);
    expect(b.code, b.stderr).to.equal(0);
    expect(b.stdout + b.stderr).to.match(/line 1 skipped: not UTF-8 text: byte 0xE9 at column 12 .*Latin-1.*save the file as UTF-8/);
    // Only the good line was submitted.
    expect(b.stdout).to.include('run latin1: created; 1 input items');
    // A state file for envfleet sandbox run: the whole file is refused, with the line.
    const state = join(dir, 'state-latin1.json');
    await writeFile(state, Buffer.concat([Buffer.from('{\n  "note": "caf'), Buffer.from([0xe9]), Buffer.from('"\n}\n')]));
    const c = await envfleet(['sandbox', 'run', 'fixtures/reference/hotel-env.bundle.json', '--state', state, '--calls', utf16]);
    expect(c.code).to.equal(1);
    expect(c.stderr).to.include(`${state} line 2: not UTF-8 text: byte 0xE9 at column 15`);
    expect(c.stderr).not.to.match(/\n\s+at /);
  });

  it('--version (and -V) prints the version of package.json', async () => {
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const { code, stdout } = await envfleet([flag]);
      expect(code, flag).to.equal(0);
      expect(stdout.trim()).to.equal(version);
    }
  });

  it('model-server --script with a path that does not exist says so, without a stack', async () => {
    const { code, stderr } = await envfleet(['model-server', '--script', join(dir, 'nope'), '--port', '0']);
    expect(code).to.equal(1);
    expect(stderr).to.include(`Invalid model script ${join(dir, 'nope')}: cannot read file`).and.to.include('pass --script');
    expect(stderr).not.to.match(/\n\s+at /);
  });
});
