/**
 * A strict JSON reader (RFC 8259) that keeps each number's text, so a 64-bit `spiffe_sequence`
 * survives (JSON.parse would round it to a double). It also refuses duplicate member names, which
 * different parsers resolve differently, and bounds nesting so hostile input cannot exhaust the
 * stack. Errors are plain `SyntaxError`s; callers wrap them in their own typed error.
 */

/** A JSON number, unconverted. */
export class JsonNumber {
  constructor(readonly raw: string) {}
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | { [key: string]: JsonValue };

const MAX_DEPTH = 64;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
// A JSON string with only the escapes RFC 8259 allows; JSON.parse then refuses raw control characters.
const STRING = /"(?:[^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;
const WS = /[ \t\n\r]*/y;

export function parseStrictJson(text: string): JsonValue {
  let pos = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at offset ${pos}`);
  };
  const ws = (): void => {
    WS.lastIndex = pos;
    WS.exec(text);
    pos = WS.lastIndex;
  };
  const str = (): string => {
    STRING.lastIndex = pos;
    const m = STRING.exec(text);
    if (m === null) return fail('invalid string');
    pos = STRING.lastIndex;
    return JSON.parse(m[0]) as string;
  };
  const value = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail('JSON nested too deeply');
    ws();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const obj: { [key: string]: JsonValue } = Object.create(null);
      ws();
      if (text[pos] === '}') {
        pos++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[pos] !== '"') fail('expected a member name');
        const key = str();
        if (Object.hasOwn(obj, key)) fail(`duplicate member "${key.slice(0, 64)}"`);
        ws();
        if (text[pos] !== ':') fail("expected ':'");
        pos++;
        obj[key] = value(depth + 1);
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      pos++;
      const arr: JsonValue[] = [];
      ws();
      if (text[pos] === ']') {
        pos++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (text.startsWith('true', pos)) {
      pos += 4;
      return true;
    }
    if (text.startsWith('false', pos)) {
      pos += 5;
      return false;
    }
    if (text.startsWith('null', pos)) {
      pos += 4;
      return null;
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (m === null) return fail('unexpected token');
    pos = NUMBER.lastIndex;
    return new JsonNumber(m[0]);
  };
  const v = value(0);
  ws();
  if (pos !== text.length) fail('unexpected data after JSON value');
  return v;
}

export function isJsonObject(v: JsonValue | undefined): v is { [key: string]: JsonValue } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);
}
