/** `hbone gateway --config F`: an east-west gateway. */
import { EastWestGateway } from '../mesh/east-west-gateway.js';
import { type RunOptions, runComponent } from './run-component.js';

export function run(argv: string[], opts: RunOptions = {}): Promise<number> {
  return runComponent('gateway', argv, opts, async (cfg, identities, write) => {
    if (cfg.kind !== 'gateway') throw new Error('unreachable');
    const g = await EastWestGateway.start({
      mesh: cfg.mesh,
      gateway: cfg.gateway,
      identities,
      accessLogWrite: write,
    });
    const host = cfg.gateway.listen?.address ?? g.config.address;
    return {
      summary:
        `hbone gateway: ${g.name} ready on ${host}:${g.port} (network ${g.config.network}, identity ${g.config.identity}, ` +
        `accepts ${cfg.gateway.acceptTrustDomains.join(', ')}, SNI routing ${cfg.gateway.sniRouting})\n`,
      close: () => g.close(),
    };
  });
}
