import { isCluster, tag, type Redis } from '../redis/connection.js';
import { redisScript } from '../redis/scripts.js';

/** Histogram buckets (seconds) shared by every envfleet duration series. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/**
 * Durations observed in worker processes (job durations, model latency), kept in Redis so that the
 * dashboard of any machine can serve the fleet's histograms on /metrics. One hash per series and
 * label set: cumulative bucket counts, sum and count.
 */
export interface MetricsRecorder {
  observe(series: 'job' | 'model_request', labels: Readonly<Record<string, string>>, seconds: number): void;
}

export interface HistogramSnapshot {
  readonly labels: Record<string, string>;
  /** Cumulative counts per upper bound, then +Inf. */
  readonly buckets: readonly { le: string; count: number }[];
  readonly sum: number;
  readonly count: number;
}

const labelKey = (labels: Readonly<Record<string, string>>) =>
  Object.keys(labels)
    .sort()
    .map(k => `${k}=${labels[k]}`)
    .join(',');

/**
 * The observations of one series gathered since the last write, in one command: per-bucket counts
 * (`LABELS|b:LE`, not cumulative: one field per bucket hit, not one per bucket above the value) and
 * counts as HINCRBY, sums as HINCRBYFLOAT, and the series in the list of series. ARGV: series name,
 * then (field, increment) pairs; fields ending in `|sum` are sums.
 */
const OBSERVE = redisScript(
  'metrics_observe',
  `for i = 2, #ARGV, 2 do
  if string.sub(ARGV[i], -4) == '|sum' then redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
  else redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('SADD', KEYS[2], ARGV[1])
return 1`,
  2,
);

export interface MetricsOptions {
  /**
   * How long observations gather in the process before they are written, in one command per series
   * (default 250 ms). A worker observes every job and every model request: at a few hundred episodes
   * per second that was a script per observation on the hot connection; now it is a few per second.
   * A crash loses at most this window of observations (metrics are not part of a run's data).
   */
  readonly flushMs?: number;
}

/** On a Redis Cluster every metrics key shares the hash tag `{metrics}`: one script writes a series and the list of series. */
export function createRedisMetrics(redis: Redis, prefix: string, options: MetricsOptions = {}): MetricsRecorder & { read(series: string): Promise<HistogramSnapshot[]>; flush(): Promise<void> } {
  const root = `${prefix}:${tag(isCluster(redis), 'metrics')}`;
  const key = (series: string) => `${root}:${series}`;
  const flushMs = options.flushMs ?? 250;
  /** Increments not yet written: series → field → increment. */
  let gathered = new Map<string, Map<string, number>>();
  let timer: NodeJS.Timeout | null = null;
  const flush = async () => {
    if (timer) clearTimeout(timer);
    timer = null;
    const batch = gathered;
    gathered = new Map();
    await Promise.all(
      [...batch].map(([series, fields]) =>
        // Metrics never fail a job.
        OBSERVE(redis, [key(series), `${root}:series`], [series, ...[...fields].flatMap(([f, n]) => [f, String(n)])]).catch(() => undefined),
      ),
    );
  };
  return {
    observe(series, labels, seconds) {
      const lk = labelKey(labels);
      const le = DURATION_BUCKETS.find(b => seconds <= b) ?? '+Inf';
      let fields = gathered.get(series);
      if (!fields) gathered.set(series, (fields = new Map<string, number>()));
      const add = (field: string, n: number) => fields.set(field, (fields.get(field) ?? 0) + n);
      add(`${lk}|b:${le}`, 1);
      add(`${lk}|sum`, seconds);
      add(`${lk}|count`, 1);
      if (!timer) {
        timer = setTimeout(() => void flush(), flushMs);
        timer.unref();
      }
    },
    flush,
    async read(series) {
      const hash = await redis.hgetall(key(series));
      const byLabels = new Map<string, Map<string, number>>();
      for (const [field, value] of Object.entries(hash)) {
        const sep = field.lastIndexOf('|');
        const lk = field.slice(0, sep);
        const m = byLabels.get(lk) ?? new Map<string, number>();
        m.set(field.slice(sep + 1), Number(value));
        byLabels.set(lk, m);
      }
      // Cumulative counts: the per-bucket counts (`b:LE`) summed up to each bound, plus the cumulative fields
      // (`LE`) that series written before per-bucket counts hold.
      return [...byLabels].map(([lk, m]) => {
        let below = 0;
        const cumulative = (le: string) => {
          below += m.get(`b:${le}`) ?? 0;
          return below + (m.get(le) ?? 0);
        };
        return {
          labels: Object.fromEntries(lk ? lk.split(',').map(kv => kv.split('=') as [string, string]) : []),
          buckets: [...DURATION_BUCKETS.map(le => ({ le: String(le), count: cumulative(String(le)) })), { le: '+Inf', count: cumulative('+Inf') }],
          sum: m.get('sum') ?? 0,
          count: m.get('count') ?? 0,
        };
      });
    },
  };
}
