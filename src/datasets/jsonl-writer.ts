import { createWriteStream, type WriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import { OutputFileError } from '../util/make-dir.js';
import { stringifyJson } from '../util/raw-json.js';
import { withoutLoneSurrogates } from '../util/text.js';

/**
 * Writes a JSON Lines file one record at a time (memory stays flat however many records), into
 * `PATH.partial`, renamed to PATH by `close()`: a file under its real name is always complete. A RawJson inside a
 * record is written as its text (stringifyJson), which must be one line. A lone surrogate is written as U+FFFD
 * (withoutLoneSurrogates): every line is text a trainer's loader can encode.
 */
export class JsonlWriter {
  private readonly stream: WriteStream;
  private failure: Error | null = null;
  private count = 0;

  constructor(readonly path: string) {
    this.stream = createWriteStream(`${path}.partial`, { encoding: 'utf8' });
    // Said with the file and what to do (a full disk, a file-size limit), not as the system's bare ENOSPC.
    this.stream.on('error', err => {
      this.failure = new OutputFileError(path, err);
    });
  }

  async write(record: unknown): Promise<void> {
    if (this.failure) throw this.failure;
    this.count += 1;
    if (!this.stream.write(`${withoutLoneSurrogates(stringifyJson(record) ?? 'null')}\n`)) await this.settled(once(this.stream, 'drain'));
  }

  /** Waits for a stream event; the stream's error instead is said as this file's (OutputFileError). */
  private async settled(event: Promise<unknown>): Promise<void> {
    try {
      await event;
    } catch (err) {
      throw this.failure ?? new OutputFileError(this.path, err);
    }
  }

  /** Flushes and puts the file under its real name; returns the number of records. */
  async close(): Promise<number> {
    this.stream.end();
    await this.settled(once(this.stream, 'finish'));
    if (this.failure) throw this.failure;
    await rename(`${this.path}.partial`, this.path);
    return this.count;
  }

  /** Drops the partial file (the export failed). */
  async abort(): Promise<void> {
    this.stream.destroy();
    // The file is opened asynchronously: removed before the open (or a pending write) is through, it would
    // come back, empty or half-written, under PATH.partial. A destroyed stream "fails" to finish: expected.
    await finished(this.stream).catch(() => undefined);
    await rm(`${this.path}.partial`, { force: true });
  }
}
