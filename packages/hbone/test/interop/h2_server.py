#!/usr/bin/env python3
"""A foreign HBONE server: mutual TLS 1.3 + Python's h2, to test our client against a stack we
did not write (docs/interop.md).

Listens on 127.0.0.1:0 and prints {"event":"listening","port":N} first. For each connection:
TLS 1.3 with a required client certificate verified against --bundle, ALPN h2, then the client's
URI SAN must equal --expect-client-id (otherwise the connection is closed before any HTTP/2 byte).
Each request is answered with --status; any status but 200 is sent alone with END_STREAM, as
ztunnel answers errors. After a 200, --reply says what the stream carries back:
  echo        the client's bytes as they arrive; our END_STREAM after the client's (half-close)
  after-eof   nothing until the client's END_STREAM, then all its bytes and our END_STREAM: the
              client must keep reading after its own END_STREAM
  first       --greeting and our END_STREAM at once, then we keep reading the client's bytes: the
              client must keep sending after our END_STREAM When the connection ends one JSON line {"event":"connection",...}
reports the TLS facts, the exact header list of each request (names, values, order, pseudo-headers
included), and the raw frames the client sent (its SETTINGS, its WINDOW_UPDATEs, ...).

Bounded: every socket op has --io-timeout, each connection and the whole process have deadlines.
"""

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import threading  # noqa: E402

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
    Pump,
    Stalled,
    close_quietly,
    emit,
    error_text,
    tls_context,
    tls_facts,
    uri_sans,
)

DEFAULT_WINDOW = 65535
# ztunnel's server settings and windows (HBONE-WIRE.md), so our client meets a ztunnel-shaped peer.
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
MAX_FRAME = 1024 * 1024
SEND_CHUNK = 256 * 1024
# Stop turning echo bytes into DATA frames while this much waits for the socket.
MAX_BACKLOG = 512 * 1024

_out_lock = threading.Lock()


def report(args, obj):
    with _out_lock:
        if args.report:
            with open(args.report, 'a', encoding='utf-8') as f:
                emit(obj, f)
        else:
            emit(obj)


class Stream:
    def __init__(self, sid, headers):
        self.sid = sid
        self.headers = headers
        self.status = None
        self.pending = bytearray()  # bytes to echo
        self.unacked = 0  # received bytes not yet given back to the peer's window
        self.end_requested = False
        self.ended_local = False
        self.ended_remote = False
        self.reset_code = None
        self.gone = False  # h2 no longer knows the stream
        self.bytes_in = 0
        self.bytes_out = 0
        self.sha_in = hashlib.sha256()

    def report(self):
        return {
            'stream': self.sid,
            'headers': [[n, v] for (n, v) in self.headers],
            'status': self.status,
            'bytes_in': self.bytes_in,
            'sha256_in': self.sha_in.hexdigest(),
            'bytes_out': self.bytes_out,
            'ended_remote': self.ended_remote,
            'ended_local': self.ended_local,
            'reset_code': self.reset_code,
        }


def new_h2():
    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding='utf-8',
        # h2 4.1 requires :scheme and :path on every request, CONNECT included (RFC 9113 8.5
        # forbids them there): with its validation on, it refuses every HBONE CONNECT. We record
        # the headers exactly as received instead, and the test checks them.
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    conn.local_settings = h2.settings.Settings(
        client=False,
        initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: 200,
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
            SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
        },
    )
    conn.max_inbound_frame_size = MAX_FRAME
    conn.initiate_connection()
    conn.increment_flow_control_window(CONNECTION_WINDOW - DEFAULT_WINDOW)
    return conn


def flush_echo(conn, streams, reply):
    for st in streams.values():
        if st.reset_code is not None or st.ended_local or st.gone:
            continue
        if reply == 'after-eof' and not st.end_requested:
            continue
        try:
            while st.pending:
                window = conn.local_flow_control_window(st.sid)
                n = min(len(st.pending), window, conn.max_outbound_frame_size, SEND_CHUNK)
                if n <= 0:
                    break
                conn.send_data(st.sid, bytes(st.pending[:n]))
                del st.pending[:n]
                st.bytes_out += n
                # Give the window back only once the bytes left again: echo back-pressure.
                give = min(n, st.unacked)
                if give:
                    st.unacked -= give
                    conn.acknowledge_received_data(give, st.sid)
            if not st.pending and st.end_requested and not st.ended_local:
                conn.end_stream(st.sid)
                st.ended_local = True
        except (h2.exceptions.StreamClosedError, KeyError):
            st.pending.clear()
            st.gone = True


def handle_events(args, conn, events, streams, rep):
    for ev in events:
        if isinstance(ev, h2.events.RequestReceived):
            st = Stream(ev.stream_id, ev.headers)
            streams[ev.stream_id] = st
            rep['events'].append('request:%d' % ev.stream_id)
            st.status = args.status
            if args.status == 200:
                headers = [(':status', '200')]
                if args.response_baggage is not None:
                    headers.append(('baggage', args.response_baggage))
                conn.send_headers(ev.stream_id, headers)
                if args.reply == 'first':
                    greeting = args.greeting.encode()
                    conn.send_data(ev.stream_id, greeting, end_stream=True)
                    st.bytes_out += len(greeting)
                    st.ended_local = True
            else:
                conn.send_headers(ev.stream_id, [(':status', str(args.status))], end_stream=True)
                st.ended_local = True
            if ev.stream_ended is not None:
                st.ended_remote = True
                st.end_requested = True
        elif isinstance(ev, h2.events.DataReceived):
            st = streams.get(ev.stream_id)
            if st is None:
                continue
            st.bytes_in += len(ev.data)
            st.sha_in.update(ev.data)
            if st.status == 200 and not st.ended_local:
                st.pending += ev.data
                st.unacked += ev.flow_controlled_length
            else:
                try:
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                except h2.exceptions.StreamClosedError:
                    pass
            if ev.stream_ended is not None:
                st.ended_remote = True
                st.end_requested = True
        elif isinstance(ev, h2.events.StreamEnded):
            st = streams.get(ev.stream_id)
            if st is not None:
                st.ended_remote = True
                st.end_requested = True
        elif isinstance(ev, h2.events.StreamReset):
            st = streams.get(ev.stream_id)
            if st is not None:
                st.reset_code = ev.error_code
                st.pending.clear()
        elif isinstance(ev, h2.events.TrailersReceived):
            rep['trailers'].append({'stream': ev.stream_id, 'headers': [[n, v] for (n, v) in ev.headers]})
        elif isinstance(ev, h2.events.ConnectionTerminated):
            rep['goaway'] = {'code': ev.error_code, 'last_stream': ev.last_stream_id}
            return False
    return True


def serve(args, ctx, raw, addr):
    rep = {
        'event': 'connection',
        'remote': '%s:%d' % addr[:2],
        'events': [],
        'trailers': [],
        'requests': [],
    }
    tap = FrameTap(expect_preface=True)
    tls = None
    streams = {}
    try:
        raw.settimeout(args.io_timeout)
        try:
            tls = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            rep['error'] = 'tls-handshake'
            rep['detail'] = error_text(e)
            return
        rep['tls'] = tls_facts(tls)
        rep['peer_ids'] = uri_sans(tls)
        if rep['peer_ids'] != [args.expect_client_id]:
            # Refuse before HTTP/2: the client gets no SETTINGS, only the end of the connection.
            rep['error'] = 'identity-mismatch'
            return
        conn = new_h2()
        pump = Pump(tls, args.io_timeout)
        deadline = Deadline(args.connection_lifetime)
        alive = True
        try:
            while alive:
                if deadline.expired():
                    rep['error'] = 'timeout'
                    break
                if pump.backlog < MAX_BACKLOG:
                    flush_echo(conn, streams, args.reply)
                pump.queue(conn.data_to_send())
                data = pump.step(0.05)
                if data is None:
                    continue
                if data == b'':
                    rep['eof'] = True
                    break
                tap.feed(data)
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError as e:
                    rep['error'] = 'h2-protocol-error'
                    rep['detail'] = error_text(e)
                    break
                alive = handle_events(args, conn, events, streams, rep)
        except Stalled as e:
            rep['error'] = 'stalled'
            rep['detail'] = str(e)
        # Whatever is queued (a last END_STREAM, our GOAWAY after a protocol error) goes out.
        if 'error' not in rep or rep['error'] == 'h2-protocol-error':
            try:
                flush_echo(conn, streams, args.reply)
            except h2.exceptions.ProtocolError:
                pass
            pump.queue(conn.data_to_send())
            pump.drain(1.0)
    except (ssl.SSLError, OSError) as e:
        rep.setdefault('error', 'connection-error')
        rep.setdefault('detail', error_text(e))
    finally:
        rep['requests'] = [streams[k].report() for k in sorted(streams)]
        rep['tap'] = tap.report()
        close_quietly(tls or raw)
        report(args, rep)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--bundle', required=True, help='PEM roots the client chain must verify against')
    p.add_argument('--cert', required=True, help='our leaf (+ intermediates), PEM')
    p.add_argument('--key', required=True)
    p.add_argument('--expect-client-id', required=True, help='the SPIFFE ID the client must present')
    p.add_argument('--status', type=int, default=200, help='answer to every CONNECT; 200 echoes')
    p.add_argument('--response-baggage', default=None, help='baggage header on the 200')
    p.add_argument('--reply', choices=('echo', 'after-eof', 'first'), default='echo')
    p.add_argument('--greeting', default='hello', help="what --reply first sends")
    p.add_argument('--lifetime', type=float, default=60.0, help='seconds before the process exits')
    p.add_argument('--connection-lifetime', type=float, default=30.0)
    p.add_argument('--io-timeout', type=float, default=10.0, help='seconds per socket operation')
    p.add_argument('--max-connections', type=int, default=32)
    p.add_argument('--report', default=None, help='append connection reports to this file, not stdout')
    p.add_argument('--exit-on-stdin-eof', action='store_true', help='exit when our parent goes away')
    args = p.parse_args()

    ctx = tls_context(True, args.bundle, args.cert, args.key)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(('127.0.0.1', 0))
    listener.listen(16)
    listener.settimeout(0.25)
    emit({'event': 'listening', 'port': listener.getsockname()[1]})

    if args.exit_on_stdin_eof:
        def watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            finally:
                os._exit(0)

        threading.Thread(target=watch_stdin, daemon=True).start()

    deadline = Deadline(args.lifetime)
    accepted = 0
    threads = []
    while not deadline.expired() and accepted < args.max_connections:
        try:
            raw, addr = listener.accept()
        except socket.timeout:
            continue
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        accepted += 1
        t = threading.Thread(target=serve, args=(args, ctx, raw, addr), daemon=True)
        t.start()
        threads.append(t)
    listener.close()
    for t in threads:
        t.join(timeout=max(0.0, deadline.left()) + 1)
    sys.stdout.flush()
    os._exit(0)


if __name__ == '__main__':
    main()
