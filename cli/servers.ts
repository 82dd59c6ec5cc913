import { loadConfig } from '../config/index.js';
import { startDashboard } from '../http/dashboard/server.js';
import { createLogger } from '../src/logger.js';
import { loadModelScript, startModelServer } from '../src/model-server/index.js';
import { fixturesPath } from '../src/util/package-root.js';

/** Stops `close` on SIGINT/SIGTERM and exits (0 when it closed cleanly). */
function closeOnSignal(close: () => Promise<void>): void {
  const stop = () => {
    close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

/** `envfleet model-server`: the scripted OpenAI-protocol server. */
export async function modelServerCommand(opts: { script?: string; port: number; host: string; apiKey?: string; logFile?: string }): Promise<void> {
  const scriptPath = opts.script ?? fixturesPath('demo');
  const script = await loadModelScript(scriptPath);
  const server = await startModelServer({
    script,
    port: opts.port,
    host: opts.host,
    ...(opts.apiKey ? { apiKey: opts.apiKey } : {}),
    ...(opts.logFile ? { logFile: opts.logFile } : {}),
  });
  process.stdout.write(`scripted model server listening at ${server.url} (${script.rules?.length ?? 0} rules from ${scriptPath})\n`);
  closeOnSignal(() => server.close());
}

/** `envfleet dashboard`. */
export async function dashboardCommand(opts: { port?: number; host?: string }): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config);
  const dashboard = await startDashboard(config, logger, { port: opts.port ?? config.dashboard.port, host: opts.host ?? config.dashboard.host, token: config.dashboard.token });
  process.stdout.write(`envfleet dashboard at ${dashboard.url} (${config.dashboard.token ? 'token required' : 'no token: loopback only'})\n`);
  closeOnSignal(() => dashboard.close());
}
