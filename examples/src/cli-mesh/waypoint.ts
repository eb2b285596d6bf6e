/** `hbone waypoint --config F`: a waypoint (server-side L7 proxy) for the services that name it. */
import { Waypoint } from '../mesh/waypoint.js';
import { type RunOptions, runComponent } from './run-component.js';

export function run(argv: string[], opts: RunOptions = {}): Promise<number> {
  return runComponent('waypoint', argv, opts, async (cfg, identities, write) => {
    if (cfg.kind !== 'waypoint') throw new Error('unreachable');
    const w = await Waypoint.start({
      mesh: cfg.mesh,
      waypoint: cfg.waypoint,
      identities,
      accessLogWrite: write,
    });
    const services = cfg.mesh.services.filter((s) => s.waypoint === w.name).map((s) => s.hostname);
    return {
      summary: `hbone waypoint: ${w.name} ready on ${w.config.address}:${w.port} (identity ${w.config.identity}) for ${services.join(', ') || 'no services'}\n`,
      close: () => w.close(),
    };
  });
}
