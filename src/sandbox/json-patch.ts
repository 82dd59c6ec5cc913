/**
 * The final state of an episode as a patch on its initial state, for the checks (issue 14).
 *
 * A check batch starts from a check template that has parsed the initial state twice already: once
 * as `initialState`, once as the base of `finalState`. The final state's JSON text mostly repeats the
 * initial state's (an episode changes a few records of a large state), so instead of parsing all of
 * it in the guest, the host (V8, where scanning text is cheap) finds the values whose text changed
 * and sends only those: the guest parses them and puts them in place on the base.
 *
 * The result is the object `JSON.parse(finalText)` would give, key order included, because a value is
 * only descended into when both texts have the same keys in the same order (or arrays the same length),
 * and everything else is replaced by the final text's own span of it, which the guest parses. A value
 * whose text is equal in both is kept from the base, which the guest parsed from the initial text: same
 * text, same parse. Keys are compared as they are written (an escape in one text and not the other
 * counts as a different key, so the object is replaced whole), and an object with a key twice in
 * either text is replaced whole (the parse keeps the last; a member-wise patch could not).
 */

/** A value's span in a JSON text: [start, end). */
interface Span {
  readonly start: number;
  readonly end: number;
}

interface Member extends Span {
  /** The key as written, quotes included (an object member), or null (an array element). */
  readonly key: string | null;
  /** Where the member begins: its key's opening quote (an object member), or its value (an array element). */
  readonly at: number;
}

// Character codes.
const CH_TAB = 9;
const CH_NEWLINE = 10;
const CH_RETURN = 13;
const CH_SPACE = 32;
const CH_QUOTE = 34;
const CH_COMMA = 44;
const CH_COLON = 58;
const CH_OPEN_BRACKET = 91;
const CH_BACKSLASH = 92;
const CH_CLOSE_BRACKET = 93;
const CH_OPEN_BRACE = 123;
const CH_CLOSE_BRACE = 125;

class Malformed extends Error {}

const isSpace = (c: number) => c === CH_SPACE || c === CH_NEWLINE || c === CH_RETURN || c === CH_TAB;

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i += 1;
  return i;
}

/** The end of the string that starts at `i` (its opening quote). */
function skipString(text: string, i: number): number {
  for (let from = i + 1; ; ) {
    const quote = text.indexOf('"', from);
    if (quote < 0) throw new Malformed();
    let slashes = 0;
    while (text.charCodeAt(quote - 1 - slashes) === CH_BACKSLASH) slashes += 1;
    if (slashes % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** The end of the value that starts at `i` (no space before it). */
function skipValue(text: string, i: number): number {
  const first = text.charCodeAt(i);
  if (first === CH_QUOTE) return skipString(text, i);
  if (first === CH_OPEN_BRACE || first === CH_OPEN_BRACKET) {
    let depth = 0;
    for (let k = i; k < text.length; ) {
      const c = text.charCodeAt(k);
      if (c === CH_QUOTE) {
        k = skipString(text, k);
        continue;
      }
      if (c === CH_OPEN_BRACE || c === CH_OPEN_BRACKET) depth += 1;
      else if (c === CH_CLOSE_BRACE || c === CH_CLOSE_BRACKET) {
        depth -= 1;
        if (depth === 0) return k + 1;
      }
      k += 1;
    }
    throw new Malformed();
  }
  // A number or a literal: up to the next delimiter.
  let k = i;
  while (k < text.length) {
    const c = text.charCodeAt(k);
    if (c === CH_COMMA || c === CH_CLOSE_BRACE || c === CH_CLOSE_BRACKET || isSpace(c)) break;
    k += 1;
  }
  if (k === i) throw new Malformed();
  return k;
}

/** The members of the object or array that starts at `start`. */
function membersOf(text: string, start: number): Member[] {
  const object = text.charCodeAt(start) === CH_OPEN_BRACE;
  const close = object ? CH_CLOSE_BRACE : CH_CLOSE_BRACKET;
  const out: Member[] = [];
  let i = skipSpace(text, start + 1);
  if (text.charCodeAt(i) === close) return out;
  for (;;) {
    const at = i;
    let key: string | null = null;
    if (object) {
      if (text.charCodeAt(i) !== CH_QUOTE) throw new Malformed();
      const keyEnd = skipString(text, i);
      key = text.slice(i, keyEnd);
      i = skipSpace(text, keyEnd);
      if (text.charCodeAt(i) !== CH_COLON) throw new Malformed();
      i = skipSpace(text, i + 1);
    }
    const end = skipValue(text, i);
    out.push({ key, at, start: i, end });
    i = skipSpace(text, end);
    const c = text.charCodeAt(i);
    if (c === close) return out;
    if (c !== CH_COMMA) throw new Malformed();
    i = skipSpace(text, i + 1);
  }
}

/**
 * What two texts share: the length of their common beginning, and of their common end (no longer than what
 * is left of the shorter one after the beginning). Compared a kilobyte at a time, natively, then by character.
 */
interface Common {
  readonly prefix: number;
  readonly suffix: number;
}

const COMPARE_CHUNK = 1024;

function commonOf(a: string, b: string): Common {
  const n = Math.min(a.length, b.length);
  let prefix = 0;
  while (prefix + COMPARE_CHUNK <= n && a.slice(prefix, prefix + COMPARE_CHUNK) === b.slice(prefix, prefix + COMPARE_CHUNK)) prefix += COMPARE_CHUNK;
  while (prefix < n && a.charCodeAt(prefix) === b.charCodeAt(prefix)) prefix += 1;
  const most = n - prefix;
  let suffix = 0;
  while (suffix + COMPARE_CHUNK <= most && a.slice(a.length - suffix - COMPARE_CHUNK, a.length - suffix) === b.slice(b.length - suffix - COMPARE_CHUNK, b.length - suffix)) suffix += COMPARE_CHUNK;
  while (suffix < most && a.charCodeAt(a.length - 1 - suffix) === b.charCodeAt(b.length - 1 - suffix)) suffix += 1;
  return { prefix, suffix };
}

/**
 * membersOf(final, start) for the final text's containers, without scanning what both texts share (the
 * common beginning and end, `commonOf`): a member that ends within the common beginning is the initial
 * text's (same text, same place, when its container starts at the same place in both); once a member begins
 * within the common end where the initial container has one beginning at the same distance from the end, the
 * rest are the initial ones moved by the difference in length; and a member whose value is an object or an
 * array starting within the common beginning is measured through its own members, the same way, rather than
 * scanned to its end. So only what lies along the changes is read. Gives exactly what membersOf gives
 * (test/unit/sandbox/json-patch.test.ts compares the two on random states and changes).
 */
class FinalScan {
  private readonly lists = new Map<number, Member[]>();
  private readonly delta: number;
  private readonly suffixFrom: number;

  constructor(
    private readonly final: string,
    initial: string,
    private readonly initialMembers: (start: number) => Member[],
    private readonly common: Common,
  ) {
    this.delta = final.length - initial.length;
    this.suffixFrom = final.length - common.suffix;
  }

  /** The members of the final text's container at `start`, whose initial counterpart starts at `initialStart`. */
  membersAt(start: number, initialStart: number, depth = 0): Member[] {
    let found = this.lists.get(start);
    if (!found) {
      found = this.scan(start, initialStart, depth);
      this.lists.set(start, found);
    }
    return found;
  }

  private scan(start: number, initialStart: number, depth: number): Member[] {
    const { final, delta, suffixFrom, common } = this;
    const known = this.initialMembers(initialStart);
    const object = final.charCodeAt(start) === CH_OPEN_BRACE;
    const close = object ? CH_CLOSE_BRACE : CH_CLOSE_BRACKET;
    let k = 0;
    if (initialStart === start) while (k < known.length && known[k]!.end <= common.prefix) k += 1;
    const out: Member[] = known.slice(0, k);
    let i: number;
    if (k === 0) {
      i = skipSpace(final, start + 1);
      if (final.charCodeAt(i) === close) return out;
    } else {
      i = skipSpace(final, known[k - 1]!.end);
      const c = final.charCodeAt(i);
      if (c === close) return out;
      if (c !== CH_COMMA) throw new Malformed();
      i = skipSpace(final, i + 1);
    }
    let j = k;
    for (;;) {
      if (i >= suffixFrom) {
        // The rest of the final text is the initial text's from i − delta on: if a member of the initial
        // container begins there, the rest of the members are the same, moved.
        while (j < known.length && known[j]!.at < i - delta) j += 1;
        if (j < known.length && known[j]!.at === i - delta) {
          for (; j < known.length; j += 1) {
            const m = known[j]!;
            out.push({ key: m.key, at: m.at + delta, start: m.start + delta, end: m.end + delta });
          }
          return out;
        }
      }
      const at = i;
      let key: string | null = null;
      if (object) {
        if (final.charCodeAt(i) !== CH_QUOTE) throw new Malformed();
        const keyEnd = skipString(final, i);
        key = final.slice(i, keyEnd);
        i = skipSpace(final, keyEnd);
        if (final.charCodeAt(i) !== CH_COLON) throw new Malformed();
        i = skipSpace(final, i + 1);
      }
      const end = this.valueEnd(i, depth);
      out.push({ key, at, start: i, end });
      i = skipSpace(final, end);
      const c = final.charCodeAt(i);
      if (c === close) return out;
      if (c !== CH_COMMA) throw new Malformed();
      i = skipSpace(final, i + 1);
    }
  }

  /**
   * The end of the final text's value at `i`: an object or array that starts within the common beginning is
   * the initial text's value at the same place up to there, so its members are found as above; anything else
   * is scanned.
   */
  valueEnd(i: number, depth = 0): number {
    const c = this.final.charCodeAt(i);
    if ((c !== CH_OPEN_BRACE && c !== CH_OPEN_BRACKET) || i >= this.common.prefix || depth >= MAX_DEPTH) return skipValue(this.final, i);
    const members = this.membersAt(i, i, depth + 1);
    const e = skipSpace(this.final, members.length ? members[members.length - 1]!.end : i + 1);
    if (this.final.charCodeAt(e) !== (c === CH_OPEN_BRACE ? CH_CLOSE_BRACE : CH_CLOSE_BRACKET)) throw new Malformed();
    return e + 1;
  }
}

/** The span of a text's one value (space around it allowed); Malformed when there is anything else. */
function rootOf(text: string): Span {
  const start = skipSpace(text, 0);
  const end = skipValue(text, start);
  if (skipSpace(text, end) !== text.length) throw new Malformed();
  return { start, end };
}

/** membersOf on one text, each container scanned once (a patch computed without an InitialIndex). */
function memoMembers(text: string): (start: number) => Member[] {
  const lists = new Map<number, Member[]>();
  return start => {
    let found = lists.get(start);
    if (!found) {
      found = membersOf(text, start);
      lists.set(start, found);
    }
    return found;
  };
}

/**
 * What a check template keeps of its initial text for the patches of its batches: the members of each object
 * and array of it that a patch looked into, by where the value starts. Every batch of the template scans only
 * the final text, and of it only what differs (FinalScan).
 */
export class InitialIndex {
  private readonly members = new Map<number, Member[]>();

  private root: Span | undefined;

  constructor(readonly text: string) {}

  /** rootOf(text), once. */
  rootSpan(): Span {
    return (this.root ??= rootOf(this.text));
  }

  membersAt(start: number): Member[] {
    let found = this.members.get(start);
    if (!found) {
      found = membersOf(this.text, start);
      this.members.set(start, found);
    }
    return found;
  }
}

const same = (a: string, as: Span, b: string, bs: Span) => as.end - as.start === bs.end - bs.start && a.slice(as.start, as.end) === b.slice(bs.start, bs.end);

/**
 * Whether two member lists can be patched member by member: the same keys written the same way in the
 * same order, none twice (or arrays of one length). A key is "twice" when two keys decode to the same
 * string, however they are written (`"a"` and `"\u0061"`): a parse keeps the last of them.
 */
function alike(a: readonly Member[], b: readonly Member[]): boolean {
  if (a.length !== b.length) return false;
  const keys = new Set<string>();
  for (let i = 0; i < a.length; i += 1) {
    const key = a[i]!.key;
    if (key !== b[i]!.key) return false;
    if (key !== null) {
      const decoded = key.includes('\\') ? (JSON.parse(key) as string) : key.slice(1, -1);
      if (keys.has(decoded)) return false;
      keys.add(decoded);
    }
  }
  return true;
}

/** Deeper than this, the final text is parsed whole (the scan would cost depth × size, and recursion). */
const MAX_DEPTH = 64;

/**
 * The patch that turns the parse of `initialText` into the parse of `finalText`, as JSON text for the
 * harness's `prepareFinalPatch`: `[[path, value], ...]`, each path a list of keys and indexes, each
 * value the final text's own span. `[]` when the texts are equal. Null when patching would not save
 * the guest a parse (the root itself changed, or the changed values make up more than half the final
 * text) or a text is not JSON the scanner can read (the caller then parses the final text whole).
 * `index`: the initial text's members kept from earlier patches on it (a check template's). The final
 * text is scanned only where it differs from the initial one (FinalScan), unless `scanShared`
 * (the whole of every container looked into, as before: the tests' reference).
 */
export function finalStatePatch(initialText: string, finalText: string, index?: InitialIndex, scanShared = false): string | null {
  if (initialText === finalText) return '[]';
  const initialIndex = index && index.text === initialText ? index : undefined;
  try {
    const a = initialIndex ? initialIndex.rootSpan() : rootOf(initialText);
    const initialMembers = initialIndex ? (start: number) => initialIndex.membersAt(start) : memoMembers(initialText);
    let scan: FinalScan | undefined;
    let b: Span;
    if (scanShared) b = rootOf(finalText);
    else {
      scan = new FinalScan(finalText, initialText, initialMembers, commonOf(initialText, finalText));
      const start = skipSpace(finalText, 0);
      const end = scan.valueEnd(start);
      if (skipSpace(finalText, end) !== finalText.length) throw new Malformed();
      b = { start, end };
    }
    const out: string[] = [];
    // What the guest is sent (paths included) stays under half the final text, and what the host scans
    // under four times both texts: past either, a parse of the final text is the cheaper way.
    let bytes = 0;
    const budget = finalText.length / 2;
    let scanned = 0;
    const scanBudget = 4 * (initialText.length + finalText.length);
    const walk = (as: Span, bs: Span, path: readonly (string | number)[]): boolean => {
      if (same(initialText, as, finalText, bs)) return true;
      const ca = initialText.charCodeAt(as.start);
      const cb = finalText.charCodeAt(bs.start);
      if (ca === cb && (ca === CH_OPEN_BRACE || ca === CH_OPEN_BRACKET) && path.length < MAX_DEPTH) {
        scanned += as.end - as.start + (bs.end - bs.start);
        if (scanned > scanBudget) return false;
        const ma = initialMembers(as.start);
        const mb = scan ? scan.membersAt(bs.start, as.start) : membersOf(finalText, bs.start);
        if (alike(ma, mb)) {
          for (let i = 0; i < ma.length; i += 1) {
            const x = ma[i]!;
            const y = mb[i]!;
            // Most members are equal: compared here, before their path is built.
            if (same(initialText, x, finalText, y)) continue;
            if (!walk(x, y, [...path, x.key === null ? i : (JSON.parse(x.key) as string)])) return false;
          }
          return true;
        }
      }
      if (path.length === 0) return false;
      const entry = `[${JSON.stringify(path)},${finalText.slice(bs.start, bs.end)}]`;
      bytes += entry.length + 1;
      if (bytes > budget) return false;
      out.push(entry);
      return true;
    };
    return walk(a, b, []) ? `[${out.join(',')}]` : null;
  } catch (err) {
    if (err instanceof Malformed) return null;
    throw err;
  }
}
