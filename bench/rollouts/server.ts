/**
 * The scripted model server of bench/rollouts.ts, in a process of its own so that answering
 * thousands of requests per second does not share an event loop with the fleet it serves.
 * Driven over IPC (see ServerCommand in ./common.ts): install the policy script for S turns and a
 * delay, hand over the timings of the requests answered since the last collection, exit.
 * Every SAMPLE_MS it pushes its own CPU time, so the parent can split the machine's CPU.
 *
 * The server keeps every request (with its body) in its log until reset; this process resets it
 * every second, after the entries were taken from `onLog`, so its memory stays flat.
 */
import { parseModelScript, startModelServer } from '../../src/model-server/index.js';
import { SAMPLE_MS, policyScript, type ServerCommand, type ServerMessage, type ServerRecord } from './common.js';

const send = (m: ServerMessage) => process.send?.(m);
let records: ServerRecord[] = [];

const server = await startModelServer({
  script: parseModelScript(policyScript(1, 0), '<bench policy>'),
  port: 0,
  onLog: e => {
    records.push([Date.parse(e.at), Date.now(), e.status, e.rule, `${e.method} ${e.path}`]);
  },
});

const cpuTimer = setInterval(() => {
  const u = process.cpuUsage();
  send({ type: 'cpu', t: Date.now(), cpuUs: u.user + u.system, rss: process.memoryUsage().rss });
}, SAMPLE_MS);
// The log (with every request body) would otherwise grow for the whole benchmark. The
// rules use no `times` or `responses` sequences, so resetting their counters changes nothing.
const resetTimer = setInterval(() => server.reset(), 1_000);

process.on('message', (raw: ServerCommand) => {
  switch (raw.type) {
    case 'script':
      server.setScript(parseModelScript(policyScript(raw.steps, raw.delayMs), '<bench policy>'));
      send({ type: 'script-ok' });
      break;
    case 'collect': {
      const out = records;
      records = [];
      server.reset();
      send({ type: 'records', records: out });
      break;
    }
    case 'exit':
      clearInterval(cpuTimer);
      clearInterval(resetTimer);
      void server.close().finally(() => process.exit(0));
      break;
  }
});
// The parent went away without saying goodbye: do not linger.
process.on('disconnect', () => process.exit(0));

send({ type: 'ready', url: server.url, pid: process.pid });
