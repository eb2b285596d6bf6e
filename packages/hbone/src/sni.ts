import type { SpiffeId } from '@hbone/spiffe';

/**
 * Which SNI a client sends. ztunnel sends none (HBONE dials pod IPs, HBONE-WIRE.md "TLS"), and
 * that is our default. The first seed's east-west gateway routes on an SNI naming a SPIFFE
 * identity: `{ identity }` sends the ID's string form; `{ name }` sends a fixed name.
 */
export type SniPolicy = 'none' | { readonly name: string } | { readonly identity: SpiffeId | string };

/**
 * The `servername` to hand to `tls.connect`. An empty string is how Node is told to send no
 * SNI at all (a hostname target would otherwise be sent as SNI).
 */
export function sniFor(policy: SniPolicy | undefined): string {
  if (policy === undefined || policy === 'none') return '';
  if ('name' in policy) return policy.name;
  return String(policy.identity);
}
