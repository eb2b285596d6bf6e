/**
 * The property-test shapes the codec tests share: a parser's outcome (`'error'` for its own
 * error class), valid inputs mutated with hostile characters, agreement with a naive oracle, and
 * garbage that may only ever throw the codec's error class.
 */
import fc from 'fast-check';
import { expect } from 'vitest';

/** A codec's error class (InvalidBaggageError, ...). */
export type ErrorClass = abstract new (...args: never[]) => Error;

/** `parse(input)`, or `'error'` where it throws `errorClass`; any other throw fails the property. */
export function outcomeOf<I, T>(parse: (input: I) => T, errorClass: ErrorClass): (input: I) => T | 'error' {
  return (input) => {
    try {
      return parse(input);
    } catch (err) {
      if (!(err instanceof errorClass)) throw err;
      return 'error';
    }
  };
}

/** An edit of one place in a string: insert a character, delete one, or set (replace) one. */
export type Edit = 'ins' | 'del' | 'set';

/**
 * `valid` strings with 1 to `maxEdits` edits at random places, each an `ops` edit with a
 * character from `nasty` (shrinking prefers the first op).
 */
export function mutated(
  valid: fc.Arbitrary<string>,
  nasty: readonly string[],
  ops: readonly Edit[] = ['ins', 'del', 'set'],
  maxEdits = 3,
): fc.Arbitrary<string> {
  return fc
    .tuple(
      valid,
      fc.array(fc.tuple(fc.nat(), fc.constantFrom(...nasty), fc.constantFrom(...ops)), {
        minLength: 1,
        maxLength: maxEdits,
      }),
    )
    .map(([s, edits]) => {
      let out = s;
      for (const [at, ch, op] of edits) {
        const i = at % (out.length + 1);
        if (op === 'ins') out = out.slice(0, i) + ch + out.slice(i);
        else if (op === 'del') out = out.slice(0, i) + out.slice(i + 1);
        else out = out.slice(0, i) + ch + out.slice(i + 1);
      }
      return out;
    });
}

/** Any strings, binary strings (of `binaryLength`), and `mutations` of valid ones. */
export function garbage(
  mutations: fc.Arbitrary<string>,
  binaryLength: { minLength?: number; maxLength?: number } = {},
): fc.Arbitrary<string> {
  return fc.oneof(fc.string(), fc.string({ unit: 'binary', ...binaryLength }), mutations);
}

/** Property: on every input, `outcome` equals what the naive `oracle` says. */
export function expectOracleAgreement<I>(
  inputs: fc.Arbitrary<I>,
  outcome: (input: I) => unknown,
  oracle: (input: I) => unknown,
  params?: fc.Parameters<[I]>,
): void {
  fc.assert(
    fc.property(inputs, (input) => {
      expect(outcome(input)).toEqual(oracle(input));
    }),
    params,
  );
}

/** Property: on every input, each of `parsers` returns or throws `errorClass`, nothing else. */
export function expectOnlyThrows<I>(
  errorClass: ErrorClass,
  inputs: fc.Arbitrary<I>,
  parsers: ReadonlyArray<(input: I) => unknown>,
  params?: fc.Parameters<[I]>,
): void {
  fc.assert(
    fc.property(inputs, (input) => {
      for (const parse of parsers) {
        try {
          parse(input);
        } catch (err) {
          expect(err).toBeInstanceOf(errorClass);
        }
      }
    }),
    params,
  );
}

/** `fail` must throw an error with the codec's stable `code` and `name`; returns it for more checks. */
export function expectStableCode<E extends Error>(fail: () => unknown, code: string, name: string): E {
  try {
    fail();
  } catch (err) {
    expect((err as { code?: unknown }).code).toBe(code);
    expect((err as Error).name).toBe(name);
    return err as E;
  }
  return expect.unreachable();
}
