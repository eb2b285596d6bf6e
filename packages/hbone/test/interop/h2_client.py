#!/usr/bin/env python3
"""A foreign HBONE client: mutual TLS 1.3 + Python's h2, to test our server against a stack we did
not write (docs/interop.md).

Connects to 127.0.0.1:--port (no SNI, like ztunnel), checks that the server's URI SAN is
--expect-server-id (exit 3 otherwise, before any HTTP/2 byte), waits for the server's SETTINGS,
then sends every request at once, each on its own stream:

  connect                     :method CONNECT, :authority (a valid HBONE request). After a 200 it
                              sends --bytes random bytes, then END_STREAM, and reads until the
                              server's END_STREAM (half-close both ways).
  connect-with-path           ... plus :path /           (malformed: RFC 9113 section 8.5)
  connect-with-scheme         ... plus :scheme https     (malformed)
  connect-with-path-and-scheme  both                     (malformed)
  connect-with-protocol       ... plus :protocol websocket, no :path/:scheme (malformed unless the
                              server enabled extended CONNECT, which HBONE servers do not)
  extended-connect            RFC 8441 form: :protocol, :scheme, :path (refused the same way)
  connect-without-authority   :method CONNECT only        (malformed)
  get                         :method GET, :scheme, :path, :authority (not CONNECT: expect 400)

A request is KIND or KIND@AUTHORITY (--authority is the default). Prints one JSON line: TLS
facts, the peer's URI SANs, the raw frames the server sent (its SETTINGS, its WINDOW_UPDATEs,
RST_STREAMs, GOAWAY), and per stream its :status or RST_STREAM code, byte counts and sha256 of
what was sent and received. Exit codes: 0 done (with --expect-echo: every connect got 200 and its
bytes back unchanged, then END_STREAM or RST_STREAM NO_ERROR/CANCEL, which HBONE reads as
end-of-file), 1 an expectation failed, 3 identity mismatch, 4 TLS or connection failure,
5 timeout.
"""

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402
from h2.settings import SettingCodes  # noqa: E402

from hbone_peer import (  # noqa: E402
    Deadline,
    FrameTap,
    close_quietly,
    Pump,
    Stalled,
    emit,
    error_text,
    tls_context,
    tls_facts,
    uri_sans,
)

DEFAULT_WINDOW = 65535
# ztunnel's client settings and windows (HBONE-WIRE.md): our server meets a ztunnel-shaped client.
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
MAX_FRAME = 1024 * 1024
SEND_CHUNK = 64 * 1024
# Stop turning payload into DATA frames while this much waits for the socket.
MAX_BACKLOG = 512 * 1024

EXIT_OK, EXIT_EXPECTATION, EXIT_IDENTITY, EXIT_CONNECTION, EXIT_TIMEOUT = 0, 1, 3, 4, 5

# HBONE reads RST_STREAM(NO_ERROR) and RST_STREAM(CANCEL) as end-of-file, like END_STREAM
# (HBONE-WIRE.md; ztunnel src/proxy/h2.rs poll_bytes_inner). Any other code is an error.
EOF_RESET_CODES = (0x0, 0x8)

KINDS = (
    'connect',
    'connect-with-path',
    'connect-with-scheme',
    'connect-with-path-and-scheme',
    'connect-with-protocol',
    'extended-connect',
    'connect-without-authority',
    'get',
)


def request_headers(kind, authority):
    m = [(':method', 'CONNECT')]
    a = [(':authority', authority)]
    if kind == 'connect':
        return m + a
    if kind == 'connect-with-path':
        return m + a + [(':path', '/')]
    if kind == 'connect-with-scheme':
        return m + [(':scheme', 'https')] + a
    if kind == 'connect-with-path-and-scheme':
        return m + [(':scheme', 'https')] + a + [(':path', '/')]
    if kind == 'connect-with-protocol':
        return m + [(':protocol', 'websocket')] + a
    if kind == 'extended-connect':
        return m + [(':protocol', 'websocket'), (':scheme', 'https')] + a + [(':path', '/')]
    if kind == 'connect-without-authority':
        return m
    if kind == 'get':
        return [(':method', 'GET'), (':scheme', 'https')] + a + [(':path', '/')]
    raise ValueError(kind)


class Stream:
    def __init__(self, kind, authority, size):
        self.kind = kind
        self.authority = authority
        self.sid = None
        self.payload = os.urandom(size) if kind == 'connect' else b''
        self.offset = 0
        self.sending = False
        self.ended_local = False
        self.ended_remote = False
        self.status = None
        self.response_headers = None
        self.trailers = None
        self.reset_code = None
        self.bytes_in = 0
        self.sha_in = hashlib.sha256()

    @property
    def done(self):
        if self.reset_code is not None:
            return True
        return self.ended_remote and (self.ended_local or not self.sending)

    def report(self):
        sent_sha = hashlib.sha256(self.payload[: self.offset]).hexdigest()
        received_sha = self.sha_in.hexdigest()
        return {
            'kind': self.kind,
            'authority': self.authority,
            'stream': self.sid,
            'status': self.status,
            'response_headers': self.response_headers,
            'trailers': self.trailers,
            'reset_code': self.reset_code,
            'bytes_sent': self.offset,
            'bytes_received': self.bytes_in,
            'sent_sha256': sent_sha,
            'received_sha256': received_sha,
            'ended_local': self.ended_local,
            'ended_remote': self.ended_remote,
            # How the server's direction ended: 'end_stream', 'reset' (see reset_code) or None.
            'eof': 'end_stream' if self.ended_remote else ('reset' if self.reset_code is not None else None),
            'echo_ok': self.offset == len(self.payload) and self.bytes_in == self.offset and sent_sha == received_sha,
        }


def new_h2():
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding='utf-8',
        # h2 4.1 insists on :scheme/:path for every request (even CONNECT, against RFC 9113 8.5),
        # and the malformed modes need to send what a validator would stop.
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    conn.local_settings = h2.settings.Settings(
        client=True,
        initial_values={
            SettingCodes.ENABLE_PUSH: 0,
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
            SettingCodes.MAX_HEADER_LIST_SIZE: 16384,
        },
    )
    conn.max_inbound_frame_size = MAX_FRAME
    conn.initiate_connection()
    conn.increment_flow_control_window(CONNECTION_WINDOW - DEFAULT_WINDOW)
    return conn


def flush_data(conn, streams):
    for st in streams:
        if not st.sending or st.ended_local or st.reset_code is not None:
            continue
        try:
            if st.offset < len(st.payload):
                window = conn.local_flow_control_window(st.sid)
                n = min(len(st.payload) - st.offset, window, conn.max_outbound_frame_size, SEND_CHUNK)
                if n > 0:
                    conn.send_data(st.sid, st.payload[st.offset : st.offset + n])
                    st.offset += n
            if st.offset == len(st.payload):
                conn.end_stream(st.sid)
                st.ended_local = True
        except h2.exceptions.StreamClosedError:
            st.ended_local = True


def by_id(streams, sid):
    for st in streams:
        if st.sid == sid:
            return st
    return None


def handle(conn, events, streams, rep):
    """Applies h2 events; returns False once the connection is over."""
    for ev in events:
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            rep['settings_received'] = True
        elif isinstance(ev, h2.events.ResponseReceived):
            st = by_id(streams, ev.stream_id)
            if st is None:
                continue
            st.response_headers = [[n, v] for (n, v) in ev.headers]
            st.status = int(dict(ev.headers).get(':status', '0'))
            if ev.stream_ended is not None:
                st.ended_remote = True
            if st.status == 200 and st.kind == 'connect':
                st.sending = True  # no DATA before the 200 (HBONE-WIRE.md)
            elif not st.ended_local and st.reset_code is None:
                # Refused (or a malformed request answered): close our side too.
                try:
                    conn.end_stream(st.sid)
                except h2.exceptions.StreamClosedError:
                    pass
                st.ended_local = True
        elif isinstance(ev, h2.events.DataReceived):
            st = by_id(streams, ev.stream_id)
            if st is not None:
                st.bytes_in += len(ev.data)
                st.sha_in.update(ev.data)
                if ev.stream_ended is not None:
                    st.ended_remote = True
            try:
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            except h2.exceptions.StreamClosedError:
                pass
        elif isinstance(ev, h2.events.TrailersReceived):
            st = by_id(streams, ev.stream_id)
            if st is not None:
                st.trailers = [[n, v] for (n, v) in ev.headers]
        elif isinstance(ev, h2.events.StreamEnded):
            st = by_id(streams, ev.stream_id)
            if st is not None:
                st.ended_remote = True
        elif isinstance(ev, h2.events.StreamReset):
            st = by_id(streams, ev.stream_id)
            if st is not None:
                st.reset_code = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            rep['goaway'] = {'code': ev.error_code, 'last_stream': ev.last_stream_id}
            return False
    return True


def parse_requests(args):
    specs = []
    for r in args.request or []:
        kind, _, authority = r.partition('@')
        if kind not in KINDS:
            raise SystemExit('unknown request kind %r (one of %s)' % (kind, ', '.join(KINDS)))
        specs.append((kind, authority or args.authority))
    specs += [('connect', args.authority)] * args.streams
    return specs


def run(args, rep):
    specs = parse_requests(args)
    alpn = tuple(a for a in args.alpn.split(',') if a)
    ctx = tls_context(False, args.bundle, args.cert, args.key, alpn=alpn)
    deadline = Deadline(args.timeout)
    raw = socket.create_connection((args.host, args.port), timeout=args.io_timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        # server_hostname=None: no SNI, as ztunnel dials pod IPs.
        sock = ctx.wrap_socket(raw, server_side=False, server_hostname=None)
    except (ssl.SSLError, OSError) as e:
        close_quietly(raw)
        rep['error'] = 'tls-handshake'
        rep['detail'] = error_text(e)
        return EXIT_CONNECTION
    tap = FrameTap(expect_preface=False)
    streams = []
    try:
        rep['tls'] = tls_facts(sock)
        rep['peer_ids'] = uri_sans(sock)
        if rep['peer_ids'] != [args.expect_server_id]:
            rep['error'] = 'identity-mismatch'
            return EXIT_IDENTITY
        conn = new_h2()
        pump = Pump(sock, args.io_timeout)
        pump.queue(conn.data_to_send())
        streams += [Stream(kind, authority, args.bytes) for (kind, authority) in specs]
        started = False
        alive = True
        while alive:
            if deadline.expired():
                rep['error'] = 'timeout'
                return EXIT_TIMEOUT
            if not started and rep.get('settings_received'):
                # The server's SETTINGS arrived: it accepted us. Send every request at once.
                for st in streams:
                    st.sid = conn.get_next_available_stream_id()
                    end = st.kind == 'get'
                    conn.send_headers(st.sid, request_headers(st.kind, st.authority), end_stream=end)
                    st.ended_local = end
                started = True
            if started and all(st.done for st in streams):
                break
            if pump.backlog < MAX_BACKLOG:
                flush_data(conn, streams)
            pump.queue(conn.data_to_send())
            try:
                data = pump.step(0.05)
            except Stalled as e:
                rep['error'] = 'stalled'
                rep['detail'] = str(e)
                break
            if data is None:
                continue
            if data == b'':
                rep['error'] = 'connection-closed' if started else 'connection-closed-before-settings'
                break
            tap.feed(data)
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                rep['error'] = 'h2-protocol-error'
                rep['detail'] = error_text(e)
                break
            alive = handle(conn, events, streams, rep)
        rep['streams'] = [st.report() for st in streams]
        if 'error' not in rep:
            conn.close_connection()
            pump.queue(conn.data_to_send())
            pump.drain(1.0)
        if rep.get('error'):
            return EXIT_CONNECTION
        if args.expect_echo:
            good = all(
                s['status'] == 200
                and s['echo_ok']
                and (s['ended_remote'] or s['reset_code'] in EOF_RESET_CODES)
                and s['trailers'] is None
                for s in rep['streams']
                if s['kind'] == 'connect'
            )
            if not good:
                rep['error'] = 'echo-mismatch'
                return EXIT_EXPECTATION
        return EXIT_OK
    except (ssl.SSLError, OSError) as e:
        rep['error'] = 'connection-error'
        rep['detail'] = error_text(e)
        return EXIT_CONNECTION
    finally:
        if streams:
            rep['streams'] = [st.report() for st in streams]
        rep['tap'] = tap.report()
        close_quietly(sock)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--bundle', required=True, help='PEM roots the server chain must verify against')
    p.add_argument('--cert', required=True, help='our leaf (+ intermediates), PEM')
    p.add_argument('--key', required=True)
    p.add_argument('--expect-server-id', required=True, help='the SPIFFE ID the server must present')
    p.add_argument('--authority', default='127.0.0.1:9', help='default :authority of requests')
    p.add_argument('--request', action='append', help='KIND or KIND@AUTHORITY; repeatable')
    p.add_argument('--streams', type=int, default=0, help='add this many connect requests')
    p.add_argument('--bytes', type=int, default=0, help='bytes each connect stream sends')
    p.add_argument('--expect-echo', action='store_true', help='exit 1 unless every connect echoed')
    p.add_argument('--alpn', default='h2', help='comma-separated ALPN offer; empty for none')
    p.add_argument('--timeout', type=float, default=30.0, help='seconds for the whole run')
    p.add_argument('--io-timeout', type=float, default=10.0, help='seconds per socket operation')
    args = p.parse_args()
    if args.streams < 0 or args.bytes < 0 or args.streams > 1000:
        raise SystemExit('--streams must be 0..1000 and --bytes >= 0')
    rep = {'event': 'result'}
    try:
        code = run(args, rep)
    except (ssl.SSLError, OSError) as e:
        rep.setdefault('error', 'connection-error')
        rep.setdefault('detail', error_text(e))
        code = EXIT_CONNECTION
    rep['exit_code'] = code
    emit(rep)
    sys.exit(code)


if __name__ == '__main__':
    main()
