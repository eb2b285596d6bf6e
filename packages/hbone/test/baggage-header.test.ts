import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type BaggageEntry,
  decodeBaggageValue,
  encodeBaggageValue,
  formatBaggage,
  parseBaggage,
  parseWorkloadAttributes,
  type WorkloadAttributes,
} from '../src/baggage.js';
import { InvalidBaggageError } from '../src/codec-errors.js';
import * as codec from './codec-properties.js';
import { oracleParseBaggage } from './oracles/baggage.js';

describe('formatBaggage writes what ztunnel writes (src/baggage.rs baggage_header_val)', () => {
  it('all attributes, in ztunnel order, no spaces', () => {
    expect(
      formatBaggage({
        zone: 'us-east-1a',
        region: 'us-east-1',
        serviceVersion: 'v1',
        serviceName: 'reviews',
        workloadName: 'reviews-v1',
        workloadKind: 'deployment',
        namespace: 'default',
        clusterName: 'Kubernetes',
      }),
    ).toBe(
      'k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=reviews-v1,' +
        'service.name=reviews,service.version=v1,cloud.region=us-east-1,cloud.availability_zone=us-east-1a',
    );
  });

  it('the ztunnel unit-test attribute set', () => {
    // src/baggage.rs baggage_header_val_can_be_parsed: cluster, default, workload, service.
    expect(
      formatBaggage({
        clusterName: 'cluster',
        namespace: 'default',
        workloadName: 'workload',
        serviceName: 'service',
      }),
    ).toBe(
      'k8s.cluster.name=cluster,k8s.namespace.name=default,k8s.deployment.name=workload,service.name=service',
    );
  });

  it('an empty set gives the empty string', () => {
    expect(formatBaggage({})).toBe('');
  });

  it('empty values are omitted (src/state/workload.rs Workload::baggage)', () => {
    expect(formatBaggage({ clusterName: '', namespace: 'ns', workloadName: '' })).toBe(
      'k8s.namespace.name=ns',
    );
  });

  it.each(['deployment', 'cronjob', 'pod', 'job'] as const)('workload kind %s names the key', (kind) => {
    expect(formatBaggage({ workloadKind: kind, workloadName: 'w' })).toBe(`k8s.${kind}.name=w`);
  });

  it('kind defaults to deployment (workload.proto WorkloadType DEPLOYMENT = 0)', () => {
    expect(formatBaggage({ workloadName: 'w' })).toBe('k8s.deployment.name=w');
  });

  it('a kind alone writes nothing', () => {
    expect(formatBaggage({ workloadKind: 'pod' })).toBe('');
  });

  it('rejects an unknown kind', () => {
    expect(() => formatBaggage({ workloadKind: 'statefulset' as 'pod', workloadName: 'w' })).toThrow(
      InvalidBaggageError,
    );
  });

  it('percent-encodes only what W3C requires (Kubernetes names pass through untouched)', () => {
    expect(formatBaggage({ clusterName: 'a b,c;d%e"f\\g\u00e9' })).toBe(
      'k8s.cluster.name=a%20b%2Cc%3Bd%25e%22f%5Cg%C3%A9',
    );
    expect(formatBaggage({ serviceVersion: 'v1.2_3-x=y/z:w' })).toBe('service.version=v1.2_3-x=y/z:w');
  });
});

describe('parseBaggage (W3C Baggage)', () => {
  const e = (key: string, value: string, properties: BaggageEntry['properties'] = []) => ({
    key,
    value,
    properties,
  });

  it.each<[string, BaggageEntry[]]>([
    // Examples of https://www.w3.org/TR/baggage/ section 3.3.
    ['key1=value1,key2=value2', [e('key1', 'value1'), e('key2', 'value2')]],
    ['key1 = value1, key2 = value2', [e('key1', 'value1'), e('key2', 'value2')]],
    [
      'key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue',
      [
        e('key1', 'value1', [{ key: 'property1' }, { key: 'property2' }]),
        e('key2', 'value2'),
        e('key3', 'value3', [{ key: 'propertyKey', value: 'propertyValue' }]),
      ],
    ],
    [
      'userId=alice,serverNode=DF%2028,isProduction=false',
      [e('userId', 'alice'), e('serverNode', 'DF 28'), e('isProduction', 'false')],
    ],
    ['key1=value1=x', [e('key1', 'value1=x')]],
    ['key1=', [e('key1', '')]],
    ['', []],
    [' \t ', []],
    ['a=1,,b=2,', [e('a', '1'), e('b', '2')]],
    ['a=1,a=2', [e('a', '1'), e('a', '2')]],
    ['a=%E2%82%AC', [e('a', '\u20ac')]],
    ['a=%FF%41', [e('a', '\ufffdA')]],
    ['a=100%,b=%4', [e('a', '100%'), e('b', '%4')]],
    ['a=1;p=%20x', [e('a', '1', [{ key: 'p', value: ' x' }])]],
  ])('%j', (header, expected) => {
    expect(parseBaggage(header)).toEqual(expected);
  });

  it('joins several header lines with ","', () => {
    expect(parseBaggage(['a=1', 'b=2'])).toEqual([e('a', '1'), e('b', '2')]);
  });

  it.each([
    ['non-ASCII anywhere rejects the whole header', 'a=1,b=\u00e9'],
    ['a control character', 'a=1\u0000'],
    ['DEL', 'a=1\u007f'],
    ['CR LF', 'a=1\r\nb=2'],
    ['a member without "="', 'a=1,b'],
    ['an empty key', '=1'],
    ['a key with a separator', 'a b=1'],
    ['a value with a space inside', 'a=1 2'],
    ['a value with a quote', 'a="1"'],
    ['a value with a backslash', 'a=1\\2'],
    ['an empty property', 'a=1;'],
    ['a property with a bad key', 'a=1;p q'],
  ])('rejects %s', (_what, header) => {
    expect(() => parseBaggage(header)).toThrow(InvalidBaggageError);
  });

  it('never returns a partial result: valid members before a bad byte are not returned', () => {
    const caught = codec.expectStableCode(
      () => parseBaggage('k8s.cluster.name=c1,k8s.namespace.name=n\u0080s'),
      'ERR_INVALID_BAGGAGE',
      'InvalidBaggageError',
    );
    expect(caught).toBeInstanceOf(InvalidBaggageError);
  });

  it('enforces 180 members and 8192 bytes by default, both configurable', () => {
    const members = (n: number) => Array.from({ length: n }, (_, i) => `k${i}=v`).join(',');
    expect(parseBaggage(members(180))).toHaveLength(180);
    expect(() => parseBaggage(members(181))).toThrow(/more than 180 members/);
    expect(parseBaggage(members(3), { maxMembers: 3 })).toHaveLength(3);
    expect(() => parseBaggage(members(4), { maxMembers: 3 })).toThrow(InvalidBaggageError);
    const big = `a=${'x'.repeat(8190)}`;
    expect(parseBaggage(big)[0]!.value).toHaveLength(8190);
    expect(() => parseBaggage(`${big}x`)).toThrow(/longer than 8192 bytes/);
    expect(() => parseBaggage('a=12345', { maxBytes: 4 })).toThrow(InvalidBaggageError);
    expect(() => parseBaggage('a=1', { maxBytes: -1 })).toThrow(RangeError);
  });

  it('returns frozen entries', () => {
    const out = parseBaggage('a=1;p');
    expect(Object.isFrozen(out)).toBe(true);
    expect(Object.isFrozen(out[0])).toBe(true);
    expect(Object.isFrozen(out[0]!.properties)).toBe(true);
  });
});

describe('parseWorkloadAttributes (src/baggage.rs parse_baggage_header)', () => {
  it('maps the ztunnel unit-test header', () => {
    expect(
      parseWorkloadAttributes(
        'k8s.cluster.name=K1,k8s.namespace.name=NS1,k8s.deployment.name=N1,service.name=N2,service.version=V1',
      ),
    ).toEqual({
      clusterName: 'K1',
      namespace: 'NS1',
      workloadKind: 'deployment',
      workloadName: 'N1',
      serviceName: 'N2',
      serviceVersion: 'V1',
    });
  });

  it('empty values give no attribute (baggage_parser_empty_values)', () => {
    expect(
      parseWorkloadAttributes(
        'k8s.cluster.name=,k8s.namespace.name=,k8s.deployment.name=,service.name=,service.version=',
      ),
    ).toEqual({});
  });

  it('several header lines (baggage_parser_multiline)', () => {
    expect(
      parseWorkloadAttributes([
        'k8s.cluster.name=K1',
        'k8s.namespace.name=NS1',
        'k8s.job.name=N1',
        'cloud.region=r',
      ]),
    ).toEqual({ clusterName: 'K1', namespace: 'NS1', workloadKind: 'job', workloadName: 'N1', region: 'r' });
  });

  it('the last occurrence wins and an empty value clears, as in ztunnel', () => {
    expect(parseWorkloadAttributes('k8s.cluster.name=a,k8s.cluster.name=b')).toEqual({ clusterName: 'b' });
    expect(parseWorkloadAttributes('k8s.cluster.name=a,k8s.cluster.name=')).toEqual({});
    expect(parseWorkloadAttributes('k8s.pod.name=p,k8s.cronjob.name=c')).toEqual({
      workloadKind: 'cronjob',
      workloadName: 'c',
    });
    expect(parseWorkloadAttributes('k8s.pod.name=p,k8s.job.name=')).toEqual({});
  });

  it('ignores other keys, matches keys case-sensitively, decodes and strips properties', () => {
    expect(
      parseWorkloadAttributes(
        'userId=alice, K8S.CLUSTER.NAME=x, cloud.availability_zone = z%201 ;p=1, service.name=s',
      ),
    ).toEqual({ zone: 'z 1', serviceName: 's' });
  });

  it('rejects what parseBaggage rejects', () => {
    expect(() => parseWorkloadAttributes('k8s.cluster.name=\u00e9')).toThrow(InvalidBaggageError);
  });
});

// ------------------------------------------------------------------------ properties

const attrValue = fc.oneof(
  fc.stringMatching(/^[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?$/),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
);
const attributes: fc.Arbitrary<WorkloadAttributes> = fc.record(
  {
    clusterName: attrValue,
    namespace: attrValue,
    workloadKind: fc.constantFrom('deployment', 'cronjob', 'pod', 'job'),
    workloadName: attrValue,
    serviceName: attrValue,
    serviceVersion: attrValue,
    region: attrValue,
    zone: attrValue,
  },
  { requiredKeys: [] },
);

/** What parseWorkloadAttributes should return for the attributes formatBaggage was given. */
function normalise(a: WorkloadAttributes): WorkloadAttributes {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(a)) if (v !== '' && v !== undefined && k !== 'workloadKind') out[k] = v;
  if (out.workloadName !== undefined) out.workloadKind = a.workloadKind ?? 'deployment';
  return out;
}

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,8}$/);
const rawValue = fc.stringMatching(/^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{0,8}$/);
const ows = fc.constantFrom('', ' ', '\t', '  ');
const member = fc
  .tuple(
    token,
    ows,
    ows,
    rawValue,
    fc.array(fc.tuple(ows, token, fc.option(fc.tuple(ows, rawValue))), { maxLength: 2 }),
  )
  .map(
    ([k, o1, o2, v, props]) =>
      `${k}${o1}=${o2}${v}${props.map(([o, pk, pv]) => `${o};${o}${pk}${pv === null ? '' : `${pv[0]}=${pv[0]}${pv[1]}`}`).join('')}`,
  );
const validHeader = fc
  .tuple(fc.array(fc.tuple(ows, member, ows), { maxLength: 6 }), fc.boolean())
  .map(([ms, trailing]) => ms.map(([a, m, b]) => `${a}${m}${b}`).join(',') + (trailing ? ',' : ''));
const NASTY = [...'=,; \t%"\\\u00e9\u0000\u007fA0'];
const mutatedHeader = codec.mutated(validHeader, NASTY, ['set', 'ins']);
const outcome = codec.outcomeOf(parseBaggage, InvalidBaggageError);

describe('properties', () => {
  it('round-trips: parseWorkloadAttributes(formatBaggage(a)) equals a (less empty values)', () => {
    fc.assert(
      fc.property(attributes, (a) => {
        expect(parseWorkloadAttributes(formatBaggage(a))).toEqual(normalise(a));
      }),
      { numRuns: 2000 },
    );
  });

  it('formatBaggage output is always a valid W3C header with no spaces', () => {
    fc.assert(
      fc.property(attributes, (a) => {
        const h = formatBaggage(a);
        expect(h).not.toMatch(/[ \t]/);
        expect(oracleParseBaggage(h)).not.toBe('error');
      }),
    );
  });

  it('percent-encoding round-trips any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        expect(decodeBaggageValue(encodeBaggageValue(s))).toBe(s);
      }),
    );
  });

  it('agrees with the naive oracle on valid headers', () => {
    codec.expectOracleAgreement(validHeader, outcome, oracleParseBaggage, { numRuns: 2000 });
  });

  it('agrees with the naive oracle on mutated headers', () => {
    codec.expectOracleAgreement(mutatedHeader, outcome, oracleParseBaggage, { numRuns: 5000 });
  });

  it('agrees with the naive oracle on percent-encoded bytes, valid UTF-8 or not', () => {
    const percentEncoded = fc
      .uint8Array({ maxLength: 12 })
      .map((bytes) => `k=${[...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')}`);
    codec.expectOracleAgreement(percentEncoded, outcome, oracleParseBaggage);
  });

  it('garbage never throws anything but InvalidBaggageError', () => {
    codec.expectOnlyThrows(
      InvalidBaggageError,
      codec.garbage(mutatedHeader),
      [parseBaggage, parseWorkloadAttributes],
      { numRuns: 3000 },
    );
  });
});
