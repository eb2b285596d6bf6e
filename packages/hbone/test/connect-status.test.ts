import { describe, expect, it } from 'vitest';
import {
  BadRequestError,
  ConnectDeniedError,
  ConnectRefusedError,
  H2_CODES,
  type HboneTunnel,
  StreamResetError,
  UpstreamUnavailableError,
} from '../src/index.js';
import { readAll } from './fixtures.js';
import { useHarness } from './harness.js';

const h = useHarness();

describe('CONNECT answers other than 200', () => {
  it.each([
    [400, BadRequestError, 'ERR_HBONE_BAD_REQUEST', 'CONNECT'],
    [401, ConnectDeniedError, 'ERR_HBONE_DENIED', 'CONNECT'],
    [503, UpstreamUnavailableError, 'ERR_HBONE_UPSTREAM_UNAVAILABLE', 'CONNECT'],
    [421, ConnectRefusedError, 'ERR_HBONE_REFUSED', 'CONNECT'],
  ])('status %i rejects with %s', async (status, cls, code, flag) => {
    const { port } = await h.server_((t) => t.reject(status));
    const session = await h.connect(port);
    const err = await session.open({ authority: '10.0.0.2:80' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(cls);
    expect((err as ConnectRefusedError).status).toBe(status);
    expect((err as ConnectRefusedError).code).toBe(code);
    expect((err as ConnectRefusedError).responseFlag).toBe(flag);
    // The connection survives a refused tunnel.
    expect(session.available).toBe(true);
  });

  it('a reset before the answer rejects with StreamResetError carrying the h2 code', async () => {
    const { port } = await h.server_((t) => t.reset(H2_CODES.REFUSED_STREAM));
    const session = await h.connect(port);
    const err = await session.open({ authority: '10.0.0.2:80' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StreamResetError);
    expect((err as StreamResetError).h2Code).toBe(H2_CODES.REFUSED_STREAM);
  });

  it('a handler that never answers gets the client a 503 after handlerTimeoutMs', async () => {
    const { port } = await h.server_(() => {}, { handlerTimeoutMs: 100 });
    const session = await h.connect(port);
    await expect(session.open({ authority: '10.0.0.2:80' })).rejects.toBeInstanceOf(UpstreamUnavailableError);
  });

  it('a handler that throws gets the client a 503', async () => {
    const { srv, port } = await h.server_(() => {
      throw new Error('boom');
    });
    const errors: unknown[] = [];
    srv.on('handlerError', (e) => errors.push(e));
    const session = await h.connect(port);
    await expect(session.open({ authority: '10.0.0.2:80' })).rejects.toBeInstanceOf(UpstreamUnavailableError);
    expect(errors).toHaveLength(1);
  });

  it('the CONNECT response wait is bounded on the client', async () => {
    const { port } = await h.server_(() => {}, { handlerTimeoutMs: 0 });
    const session = await h.connect(port, { connectResponseTimeoutMs: 100 });
    const err = await session.open({ authority: '10.0.0.2:80' }).catch((e: unknown) => e);
    expect((err as { code: string }).code).toBe('ERR_HBONE_TIMEOUT');
  });
});

describe('resets during transfer', () => {
  /** Opens a tunnel whose server writes 'partial', then resets the stream with `code`. */
  async function partialThenReset(code: number): Promise<HboneTunnel> {
    const { port } = await h.server_((t) => {
      const tunnel = t.accept();
      tunnel.on('error', () => {}); // the client side may go first in teardown
      tunnel.write('partial', () => setTimeout(() => tunnel.reset(code), 20));
    });
    const session = await h.connect(port);
    return session.open({ authority: '10.0.0.2:80' });
  }

  it.each([
    ['NO_ERROR', H2_CODES.NO_ERROR],
    ['CANCEL', H2_CODES.CANCEL],
  ])('RST_STREAM(%s) is a clean end-of-file', async (_name, code) => {
    const tunnel = await partialThenReset(code);
    expect((await readAll(tunnel)).toString()).toBe('partial');
  });

  it.each([
    ['INTERNAL_ERROR', H2_CODES.INTERNAL_ERROR],
    ['CONNECT_ERROR', H2_CODES.CONNECT_ERROR],
  ])('RST_STREAM(%s) errors the tunnel with StreamResetError', async (_name, code) => {
    const tunnel = await partialThenReset(code);
    const err = await readAll(tunnel).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StreamResetError);
    expect((err as StreamResetError).h2Code).toBe(code);
  });
});
