import { randomUUID } from 'node:crypto';

/**
 * A text many tasks send to the pool threads (a scenario's initial state, the same for every episode
 * of it), written once into shared memory: a task carries a reference to it instead of a copy, and
 * each thread decodes it once and keeps the string by its key. The memory is never written after it
 * is made, so every thread reads the same text.
 */
export interface SharedText {
  /** Unique to this text's memory: a thread that has decoded it keeps the string under this key. */
  readonly key: string;
  readonly bytes: SharedArrayBuffer;
  readonly length: number;
}

/** At most this many texts, and this many bytes of them, are kept (the newest always). */
const KEEP_TEXTS = 32;
const KEEP_BYTES = 64 * 1024 * 1024;

/** The most recently used entries, within a count and a byte bound (the newest always kept). */
class Recent<K, V> {
  private readonly entries = new Map<K, { readonly value: V; readonly bytes: number }>();
  private bytes = 0;

  constructor(
    private readonly capacity: number,
    private readonly capacityBytes: number,
  ) {}

  get(key: K): V | undefined {
    const hit = this.entries.get(key);
    if (hit === undefined) return undefined;
    this.entries.delete(key);
    this.entries.set(key, hit);
    return hit.value;
  }

  set(key: K, value: V, bytes: number): V {
    this.entries.set(key, { value, bytes });
    this.bytes += bytes;
    while (this.entries.size > 1 && (this.entries.size > this.capacity || this.bytes > this.capacityBytes)) {
      const [oldest, dropped] = this.entries.entries().next().value!;
      this.entries.delete(oldest);
      this.bytes -= dropped.bytes;
    }
    return value;
  }
}

/** Keeps the shared copies of the texts sent most recently, least recently used first out. */
export class SharedTexts {
  private readonly byText: Recent<string, SharedText>;

  constructor(capacity = KEEP_TEXTS, capacityBytes = KEEP_BYTES) {
    this.byText = new Recent(capacity, capacityBytes);
  }

  of(text: string): SharedText {
    const hit = this.byText.get(text);
    if (hit) return hit;
    const encoded = Buffer.from(text, 'utf8');
    const bytes = new SharedArrayBuffer(encoded.length);
    Buffer.from(bytes).set(encoded);
    return this.byText.set(text, { key: randomUUID(), bytes, length: encoded.length }, encoded.length);
  }
}

/** The decoded texts of a thread, by key, most recent last (as many and as many bytes as SharedTexts keeps). */
export class SharedTextCache {
  private readonly byKey: Recent<string, string>;

  constructor(capacity = KEEP_TEXTS, capacityBytes = KEEP_BYTES) {
    this.byKey = new Recent(capacity, capacityBytes);
  }

  text(shared: SharedText): string {
    return this.byKey.get(shared.key) ?? this.byKey.set(shared.key, Buffer.from(shared.bytes, 0, shared.length).toString('utf8'), shared.length);
  }
}
