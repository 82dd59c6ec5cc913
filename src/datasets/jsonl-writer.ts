import { createWriteStream, type WriteStream } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { lstat, rename, rm, writeFile } from 'node:fs/promises';
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
  private readonly partial: string;

  /** `stage`: the file is put under its name by the stage's commit (with the export's other files), not by close(). */
  constructor(
    readonly path: string,
    private readonly stage?: ExportStage,
  ) {
    this.partial = stage ? stage.partialOf(path) : `${path}.partial`;
    this.stream = createWriteStream(this.partial, { encoding: 'utf8' });
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
    if (this.stage) this.stage.add(this.path);
    else await rename(this.partial, this.path);
    return this.count;
  }

  /** Drops the partial file (the export failed). */
  async abort(): Promise<void> {
    this.stream.destroy();
    // The file is opened asynchronously: removed before the open (or a pending write) is through, it would
    // come back, empty or half-written, under PATH.partial. A destroyed stream "fails" to finish: expected.
    await finished(this.stream).catch(() => undefined);
    await rm(this.partial, { force: true });
  }
}

/**
 * The files of one export, each complete in `PATH.partial`, put under their names together once all are written
 * (commit): an export that fails (a full disk) or is killed part way leaves the folder's earlier export as it was,
 * not some of its files replaced by the new run's (a stranger's probe: environments.jsonl and scenarios.jsonl of one
 * run beside sft-*.jsonl of another, under a manifest naming the first). Only a kill inside the renames themselves
 * (milliseconds) can still leave a mix.
 */
export class ExportStage {
  private readonly paths: string[] = [];
  /** Partial files of this export only: two exports into one folder at once do not write into each other's. */
  private readonly tag = randomUUID().slice(0, 8);

  /** Where `path` is written until the commit. */
  partialOf(path: string): string {
    return `${path}.${this.tag}.partial`;
  }

  /** A complete file at `partialOf(path)`, to be put under `path` at commit (`first`: before every other file). */
  add(path: string, first = false): void {
    if (this.paths.includes(path)) return;
    if (first) this.paths.unshift(path);
    else this.paths.push(path);
  }

  /** Writes `text` into `partialOf(path)` now, for the commit (writeWholeFile's contract: a failure leaves no partial file). */
  async addText(path: string, text: string, first = false): Promise<void> {
    try {
      await writeFile(this.partialOf(path), text, 'utf8');
    } catch (err) {
      await rm(this.partialOf(path), { force: true });
      throw new OutputFileError(path, err);
    }
    this.add(path, first);
  }

  /** Takes `path` back out of the export (its partial removed): a file that turned out to have nothing to hold. */
  async drop(path: string): Promise<void> {
    const i = this.paths.indexOf(path);
    if (i >= 0) this.paths.splice(i, 1);
    await rm(this.partialOf(path), { force: true });
  }

  /** The files the commit puts under their names. */
  files(): readonly string[] {
    return [...this.paths];
  }

  /** Puts every file under its name; a name held by a folder stops it before any file is renamed. */
  async commit(): Promise<void> {
    for (const path of this.paths) {
      const held = await lstat(path).catch(() => null);
      if (held?.isDirectory()) throw new OutputFileError(path, Object.assign(new Error(`a folder holds the name ${path}`), { code: 'EISDIR' }));
    }
    for (const path of this.paths.splice(0)) {
      try {
        await rename(this.partialOf(path), path);
      } catch (err) {
        throw new OutputFileError(path, err);
      }
    }
  }

  /** Removes every file not yet committed (the export failed). */
  async abort(): Promise<void> {
    await Promise.all(this.paths.splice(0).map(path => rm(this.partialOf(path), { force: true })));
  }
}
