/** `hbone proxy --config F`: a node proxy (ztunnel's role) for the node the config names. */
import { NodeProxy } from '../mesh/node-proxy.js';
import { type RunOptions, runComponent } from './run-component.js';

export function run(argv: string[], opts: RunOptions = {}): Promise<number> {
  return runComponent('proxy', argv, opts, async (cfg, identities, write) => {
    if (cfg.kind !== 'proxy') throw new Error('unreachable');
    const p = await NodeProxy.start({ mesh: cfg.mesh, proxy: cfg.proxy, identities, accessLogWrite: write });
    const at = (name: 'socks5' | 'outbound' | 'metrics' | 'readiness' | 'admin'): string =>
      p.port(name) === undefined ? 'off' : `${cfg.proxy.address}:${p.port(name)}`;
    const hbone = p
      .localWorkloads()
      .filter((w) => w.protocol === 'HBONE')
      .map((w) => `${w.name} ${w.ip}:${w.hbonePort}`);
    return {
      summary:
        `hbone proxy: ${p.name} ready (node ${cfg.proxy.node}, ${p.peerAuthentication}): socks5 ${at('socks5')}, ` +
        `outbound ${at('outbound')}, metrics ${at('metrics')}, readiness ${at('readiness')}, admin ${at('admin')}; ` +
        `HBONE for ${hbone.join(', ') || 'no workloads'}\n`,
      close: () => p.close(),
    };
  });
}
