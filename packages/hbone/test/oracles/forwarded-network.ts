/** Naive oracle for parseForwardedNetwork: trim, then one token regex. */
export function oracleParseForwardedNetwork(s: string): string | 'error' {
  const t = s.replace(/^[ \t]+/, '').replace(/[ \t]+$/, '');
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$/.test(t) ? t : 'error';
}
