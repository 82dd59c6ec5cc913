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

/** Keeps the shared copies of the texts sent most recently, least recently used first out. */
export class SharedTexts {
  private readonly byText = new Map<string, SharedText>();
  private bytes = 0;

  constructor(
    private readonly capacity = KEEP_TEXTS,
    private readonly capacityBytes = KEEP_BYTES,
  ) {}

  of(text: string): SharedText {
    const hit = this.byText.get(text);
    if (hit) {
      this.byText.delete(text);
      this.byText.set(text, hit);
      return hit;
    }
    const encoded = Buffer.from(text, 'utf8');
    const bytes = new SharedArrayBuffer(encoded.length);
    Buffer.from(bytes).set(encoded);
    const shared: SharedText = { key: randomUUID(), bytes, length: encoded.length };
    this.byText.set(text, shared);
    this.bytes += encoded.length;
    while (this.byText.size > 1 && (this.byText.size > this.capacity || this.bytes > this.capacityBytes)) {
      const [oldest, dropped] = this.byText.entries().next().value!;
      this.byText.delete(oldest);
      this.bytes -= dropped.length;
    }
    return shared;
  }
}

/** The decoded texts of a thread, by key, most recent last (as many and as many bytes as SharedTexts keeps). */
export class SharedTextCache {
  private readonly byKey = new Map<string, { readonly text: string; readonly length: number }>();
  private bytes = 0;

  constructor(
    private readonly capacity = KEEP_TEXTS,
    private readonly capacityBytes = KEEP_BYTES,
  ) {}

  text(shared: SharedText): string {
    const hit = this.byKey.get(shared.key);
    if (hit !== undefined) {
      this.byKey.delete(shared.key);
      this.byKey.set(shared.key, hit);
      return hit.text;
    }
    const text = Buffer.from(shared.bytes, 0, shared.length).toString('utf8');
    this.byKey.set(shared.key, { text, length: shared.length });
    this.bytes += shared.length;
    while (this.byKey.size > 1 && (this.byKey.size > this.capacity || this.bytes > this.capacityBytes)) {
      const [oldest, dropped] = this.byKey.entries().next().value!;
      this.byKey.delete(oldest);
      this.bytes -= dropped.length;
    }
    return text;
  }
}
