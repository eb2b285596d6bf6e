/**
 * PEM framing (RFC 7468): a label line, base64 of the DER wrapped at 64 columns, an end line.
 * Written by hand because it is a dozen lines and the same text OpenSSL writes, byte for byte.
 */

export function derToPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export function certificatesToPem(ders: readonly Uint8Array[]): string {
  return ders.map((der) => derToPem(der, 'CERTIFICATE')).join('');
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/** Every PEM block in `text`, in order; text between blocks (OpenSSL's "Bag Attributes", comments) is skipped. */
export function pemBlocks(text: string): { label: string; der: Uint8Array }[] {
  const blocks: { label: string; der: Uint8Array }[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    const label = m[1] ?? '';
    const body = (m[2] ?? '').replace(/\s+/g, '');
    blocks.push({ label, der: new Uint8Array(Buffer.from(body, 'base64')) });
  }
  return blocks;
}
