import { isCluster, tag, type Redis } from '../redis/connection.js';

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
 * One observation in one command: its bucket's count (`LABELS|b:LE`, not cumulative: one write, not one per
 * bucket above the value), the sum, the count, and the series in the list of series.
 */
const OBSERVE = `redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBYFLOAT', KEYS[1], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[1], ARGV[4], 1)
redis.call('SADD', KEYS[2], ARGV[5])
return 1`;

/** On a Redis Cluster every metrics key shares the hash tag `{metrics}`: one script writes a series and the list of series. */
export function createRedisMetrics(redis: Redis, prefix: string): MetricsRecorder & { read(series: string): Promise<HistogramSnapshot[]> } {
  const root = `${prefix}:${tag(isCluster(redis), 'metrics')}`;
  const key = (series: string) => `${root}:${series}`;
  return {
    observe(series, labels, seconds) {
      const lk = labelKey(labels);
      const le = DURATION_BUCKETS.find(b => seconds <= b) ?? '+Inf';
      // Metrics never fail a job.
      redis.eval(OBSERVE, 2, key(series), `${root}:series`, `${lk}|b:${le}`, `${lk}|sum`, String(seconds), `${lk}|count`, series).catch(() => undefined);
    },
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
