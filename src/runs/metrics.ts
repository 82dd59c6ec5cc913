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

/** On a Redis Cluster every metrics key shares the hash tag `{metrics}`: one MULTI writes a series and the list of series. */
export function createRedisMetrics(redis: Redis, prefix: string): MetricsRecorder & { read(series: string): Promise<HistogramSnapshot[]> } {
  const root = `${prefix}:${tag(isCluster(redis), 'metrics')}`;
  const key = (series: string) => `${root}:${series}`;
  return {
    observe(series, labels, seconds) {
      const lk = labelKey(labels);
      const multi = redis.multi();
      for (const le of DURATION_BUCKETS) if (seconds <= le) multi.hincrby(key(series), `${lk}|${le}`, 1);
      multi.hincrby(key(series), `${lk}|+Inf`, 1);
      multi.hincrbyfloat(key(series), `${lk}|sum`, seconds);
      multi.hincrby(key(series), `${lk}|count`, 1);
      multi.sadd(`${root}:series`, series);
      multi.exec().catch(() => undefined); // metrics never fail a job
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
      return [...byLabels].map(([lk, m]) => ({
        labels: Object.fromEntries(lk ? lk.split(',').map(kv => kv.split('=') as [string, string]) : []),
        buckets: [...DURATION_BUCKETS.map(le => ({ le: String(le), count: m.get(String(le)) ?? 0 })), { le: '+Inf', count: m.get('+Inf') ?? 0 }],
        sum: m.get('sum') ?? 0,
        count: m.get('count') ?? 0,
      }));
    },
  };
}
