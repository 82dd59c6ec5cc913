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

/** Keeps the shared copies of the texts sent most recently, least recently used first out. */
export class SharedTexts {
  private readonly byText = new Map<string, SharedText>();

  constructor(private readonly capacity = 32) {}

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
    if (this.byText.size > this.capacity) this.byText.delete(this.byText.keys().next().value!);
    return shared;
  }
}

/** The decoded texts of a thread, by key, most recent last. */
export class SharedTextCache {
  private readonly byKey = new Map<string, string>();

  constructor(private readonly capacity = 32) {}

  text(shared: SharedText): string {
    const hit = this.byKey.get(shared.key);
    if (hit !== undefined) {
      this.byKey.delete(shared.key);
      this.byKey.set(shared.key, hit);
      return hit;
    }
    const text = Buffer.from(shared.bytes, 0, shared.length).toString('utf8');
    this.byKey.set(shared.key, text);
    if (this.byKey.size > this.capacity) this.byKey.delete(this.byKey.keys().next().value!);
    return text;
  }
}
