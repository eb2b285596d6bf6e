/**
 * A small, strict argument parser for the `hbone` command: `--flag value` and `--flag=value`,
 * boolean switches, repeatable flags, required flags, and a fixed number of positional
 * arguments. Anything it does not know is an error (a typo must never be silently ignored,
 * least of all in a security tool: `--alow` would otherwise open the door to everyone).
 */

/** Every error the command reports carries a stable `code`, printed on its one stderr line. */
export class CliError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
    this.code = code;
  }
}

/** A mistake in how the command was called: exit status 2. */
export class UsageError extends CliError {
  constructor(message: string) {
    super('ERR_USAGE', message);
    this.name = 'UsageError';
  }
}

export interface FlagSpec {
  /** `string` takes a value; `boolean` is a switch (`--echo`), which takes none. */
  readonly type: 'string' | 'boolean';
  /** May be given more than once; the values are collected in order. */
  readonly repeat?: boolean;
  readonly required?: boolean;
  /** Shown in `--help`, e.g. `HOST:PORT`. */
  readonly value?: string;
  readonly help: string;
}

export interface CommandSpec {
  /** Full command name, e.g. `ca issue`. */
  readonly name: string;
  readonly summary: string;
  /** Names of the positional arguments, all required. */
  readonly positionals?: readonly string[];
  readonly flags: Readonly<Record<string, FlagSpec>>;
  /** Extra paragraphs for `--help`. */
  readonly details?: string;
}

export interface ParsedArgs {
  /** Last value of each string flag given once (repeatable flags: see `all`). */
  readonly strings: ReadonlyMap<string, string>;
  readonly all: ReadonlyMap<string, readonly string[]>;
  readonly switches: ReadonlySet<string>;
  readonly positionals: readonly string[];
  /** `--help` or `-h` was given: nothing else was checked. */
  readonly help: boolean;
}

/** Parses `argv` (without the command words) against `spec`. Throws `UsageError`. */
export function parseArgs(spec: CommandSpec, argv: readonly string[]): ParsedArgs {
  if (argv.includes('--help') || argv.includes('-h')) {
    return { strings: new Map(), all: new Map(), switches: new Set(), positionals: [], help: true };
  }
  const all = new Map<string, string[]>();
  const switches = new Set<string>();
  const positionals: string[] = [];
  let onlyPositionals = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (onlyPositionals || !arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    if (arg === '--') {
      onlyPositionals = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`unknown option ${arg} (options are spelled --name)`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const flag = Object.hasOwn(spec.flags, name) ? spec.flags[name] : undefined;
    if (!flag) throw new UsageError(`unknown option --${name}${suggest(name, Object.keys(spec.flags))}`);
    let value: string | undefined;
    if (flag.type === 'boolean') {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`);
      if (switches.has(name)) throw new UsageError(`--${name} given twice`);
      switches.add(name);
      continue;
    }
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      value = argv[i + 1];
      // A value may not look like an option: `--cert --key k` is a forgotten value, not a file
      // named "--key". Use `--cert=--odd-name` for the odd case.
      if (value === undefined || (value.startsWith('--') && value.length > 2)) {
        throw new UsageError(`--${name} needs a value${flag.value ? ` (${flag.value})` : ''}`);
      }
      i++;
    }
    if (value === '') throw new UsageError(`--${name} needs a non-empty value`);
    const list = all.get(name) ?? [];
    if (list.length > 0 && !flag.repeat) throw new UsageError(`--${name} given twice`);
    list.push(value);
    all.set(name, list);
  }
  for (const [name, flag] of Object.entries(spec.flags)) {
    const given = flag.type === 'boolean' ? switches.has(name) : all.has(name);
    if (flag.required && !given) throw new UsageError(`--${name} is required`);
  }
  const wanted = spec.positionals ?? [];
  if (positionals.length < wanted.length) {
    throw new UsageError(`missing ${wanted.slice(positionals.length).join(' ')}`);
  }
  if (positionals.length > wanted.length) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[wanted.length])}`);
  }
  const strings = new Map<string, string>();
  for (const [k, v] of all) strings.set(k, v[v.length - 1]!);
  return { strings, all, switches, positionals, help: false };
}

/** The value of a flag that `parseArgs` has already checked to be present. */
export function required(args: ParsedArgs, name: string): string {
  const v = args.strings.get(name);
  if (v === undefined) throw new UsageError(`--${name} is required`);
  return v;
}

/** `--help` text for a command. */
export function helpText(spec: CommandSpec): string {
  const pos = (spec.positionals ?? []).map((p) => ` ${p}`).join('');
  const lines = [`usage: hbone ${spec.name}${pos} [options]`, '', spec.summary, ''];
  const entries = Object.entries(spec.flags).map(([name, f]) => {
    const left = `--${name}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}`;
    const notes = [f.required ? 'required' : '', f.repeat ? 'repeatable' : ''].filter(Boolean).join(', ');
    return { left, right: `${f.help}${notes ? ` (${notes})` : ''}` };
  });
  entries.push({ left: '--help', right: 'show this help' });
  const width = Math.max(...entries.map((e) => e.left.length)) + 2;
  lines.push('options:');
  for (const e of entries) lines.push(`  ${e.left.padEnd(width)}${e.right}`);
  if (spec.details) lines.push('', spec.details.trim());
  return `${lines.join('\n')}\n`;
}

/** `HOST:PORT`, `[IPv6]:PORT`. Port 0 is allowed only where `allowZero` (listening). */
export function parseHostPort(flag: string, s: string, allowZero = false): { host: string; port: number } {
  let host: string;
  let portText: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close === -1 || s[close + 1] !== ':')
      throw new UsageError(`--${flag}: expected [IPv6]:PORT, got ${s}`);
    host = s.slice(1, close);
    portText = s.slice(close + 2);
  } else {
    const colon = s.lastIndexOf(':');
    if (colon <= 0) throw new UsageError(`--${flag}: expected HOST:PORT, got ${s}`);
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (host.includes(':')) throw new UsageError(`--${flag}: write an IPv6 address as [ADDRESS]:PORT`);
  }
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= (allowZero ? 0 : 1) && port <= 65535) || host === '') {
    throw new UsageError(
      `--${flag}: expected HOST:PORT with a port ${allowZero ? '0' : '1'}..65535, got ${s}`,
    );
  }
  return { host, port };
}

/** `K=V` (the value may contain `=`). */
export function parseKeyValue(flag: string, s: string): { key: string; value: string } {
  const eq = s.indexOf('=');
  if (eq <= 0) throw new UsageError(`--${flag}: expected KEY=VALUE, got ${JSON.stringify(s)}`);
  return { key: s.slice(0, eq), value: s.slice(eq + 1) };
}

/** A positive integer, at most `max`. */
export function parseCount(flag: string, s: string, max: number): number {
  const n = /^[0-9]+$/.test(s) ? Number(s) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new UsageError(`--${flag}: expected a whole number 1..${max}, got ${s}`);
  }
  return n;
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  k: 1024,
  ki: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
};

/** A byte count: `65536`, `64k`, `64KiB`, `1M`, `1MiB`, `2G` (binary units). */
export function parseSize(flag: string, s: string, max: number): number {
  const m = /^([0-9]+)\s*([a-zA-Z]*)$/.exec(s);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  const n = m && unit !== undefined ? Number(m[1]) * unit : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > max) {
    throw new UsageError(
      `--${flag}: expected a byte count such as 65536, 64KiB or 1MiB (at most ${max}), got ${s}`,
    );
  }
  return n;
}

/** A duration in milliseconds: `500ms`, `10s`, `2m`, or a bare number of milliseconds. */
export function parseDurationMs(flag: string, s: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$/.exec(s);
  const scale = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m?.[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h'];
  const n = m ? Math.round(Number(m[1]) * scale) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new UsageError(`--${flag}: expected a duration such as 500ms, 10s, 2m or 24h, got ${s}`);
  }
  return n;
}

function suggest(name: string, known: readonly string[]): string {
  const close = known.filter((k) => distance(k, name) <= 2);
  return close.length > 0 ? ` (did you mean --${close[0]}?)` : '';
}

/** Levenshtein distance, for "did you mean". Names are short. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
