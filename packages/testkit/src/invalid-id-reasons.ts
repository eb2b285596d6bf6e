/**
 * The classes of invalid SPIFFE ID (SPIFFE-ID standard, section 2) and the message for each, worded
 * exactly as the standard's reference implementation words them (go-spiffe v2, spiffeid/errors.go),
 * so that property tests can check a parser's errors against the same text every SPIFFE library logs.
 */

export type InvalidIdReason =
  | 'empty'
  | 'wrong-scheme'
  | 'missing-trust-domain'
  | 'bad-trust-domain-char'
  | 'bad-path-segment-char'
  | 'empty-segment'
  | 'dot-segment'
  | 'trailing-slash';

export const INVALID_ID_REASONS: readonly InvalidIdReason[] = [
  'empty',
  'wrong-scheme',
  'missing-trust-domain',
  'bad-trust-domain-char',
  'bad-path-segment-char',
  'empty-segment',
  'dot-segment',
  'trailing-slash',
];

export const INVALID_ID_MESSAGES: Readonly<Record<InvalidIdReason, string>> = {
  empty: 'cannot be empty',
  'wrong-scheme': 'scheme is missing or invalid',
  'missing-trust-domain': 'trust domain is missing',
  'bad-trust-domain-char':
    'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
  'bad-path-segment-char':
    'path segment characters are limited to letters, numbers, dots, dashes, and underscores',
  'empty-segment': 'path cannot contain empty segments',
  'dot-segment': 'path cannot contain dot segments',
  'trailing-slash': 'path cannot have a trailing slash',
};
