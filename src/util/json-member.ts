/** End (exclusive) of the JSON string token that starts at `i` (a `"`). */
function stringEnd(text: string, i: number): number {
  let j = i + 1;
  while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
  return j + 1;
}

/** End (exclusive) of the JSON value that starts at `i`: a container counted by depth, never by recursion. */
function valueEnd(text: string, i: number): number {
  const c = text[i];
  if (c === '"') return stringEnd(text, i);
  if (c !== '{' && c !== '[') {
    let j = i;
    while (j < text.length && !',}] \t\n\r'.includes(text[j]!)) j += 1;
    return j;
  }
  let depth = 0;
  let j = i;
  while (j < text.length) {
    const d = text[j]!;
    if (d === '"') {
      j = stringEnd(text, j);
      continue;
    }
    if (d === '{' || d === '[') depth += 1;
    else if (d === '}' || d === ']') {
      depth -= 1;
      if (depth === 0) return j + 1;
    }
    j += 1;
  }
  return j;
}

const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r';

/**
 * The text of member `name` of a JSON object, as written (its numbers as the file spells them: `5.0`, an integer past
 * 2^53), or undefined when the object has no such member. `objectText` must be valid JSON (already read by
 * JSON.parse); a repeated member gives its last text, as JSON.parse keeps the last value. One pass over the text.
 */
export function jsonMemberText(objectText: string, name: string): string | undefined {
  return jsonMemberTexts(objectText)?.findLast(([key]) => key === name)?.[1];
}

/**
 * Every member of a JSON object's text as written, in the order written: `[key, value text]`, a repeated key each time
 * it comes; undefined when the text is not an object. `objectText` must be valid JSON (already read by JSON.parse). One
 * pass over the text.
 */
export function jsonMemberTexts(objectText: string): [string, string][] | undefined {
  let i = 0;
  while (isSpace(objectText[i])) i += 1;
  if (objectText[i] !== '{') return undefined;
  i += 1;
  const members: [string, string][] = [];
  for (;;) {
    while (isSpace(objectText[i]) || objectText[i] === ',') i += 1;
    if (i >= objectText.length || objectText[i] === '}') return members;
    const keyEnd = stringEnd(objectText, i);
    const key = JSON.parse(objectText.slice(i, keyEnd)) as string;
    i = keyEnd;
    while (isSpace(objectText[i]) || objectText[i] === ':') i += 1;
    const end = valueEnd(objectText, i);
    members.push([key, objectText.slice(i, end)]);
    i = end;
  }
}

/**
 * The text of member `name` of a JSON object's text (a model's answer) when it holds `value`, the member as JavaScript
 * read it and a schema kept it; undefined when the member is absent or a schema changed it (a default filled in, a
 * key dropped). What a caller passes on for Python to read the member as written.
 */
export function jsonMemberHolding(objectText: string, name: string, value: unknown): string | undefined {
  const text = jsonMemberText(objectText, name);
  return text !== undefined && JSON.stringify(JSON.parse(text)) === JSON.stringify(value) ? text : undefined;
}

/**
 * The texts of the items of a JSON array's text, as written (`[{"n": 1.0}, 2]` → `{"n": 1.0}`, `2`); undefined when
 * the text is not an array. `arrayText` must be valid JSON (already read by JSON.parse). One pass over the text.
 */
export function jsonItemTexts(arrayText: string): string[] | undefined {
  let i = 0;
  while (isSpace(arrayText[i])) i += 1;
  if (arrayText[i] !== '[') return undefined;
  i += 1;
  const items: string[] = [];
  for (;;) {
    while (isSpace(arrayText[i]) || arrayText[i] === ',') i += 1;
    if (i >= arrayText.length || arrayText[i] === ']') return items;
    const end = valueEnd(arrayText, i);
    items.push(arrayText.slice(i, end));
    i = end;
  }
}
