"""Shared pieces of the foreign HBONE peers (h2_server.py, h2_client.py).

Only the standard library (ssl, socket, select, json) and Debian's python3-h2. Everything that
touches the network is bounded: every socket has a timeout and every loop a deadline, so a peer
exits on its own even if the test that started it died.

FrameTap reads the raw HTTP/2 frames the other side sends, before h2 interprets them: h2's events
say what a frame meant, the tap says what was on the wire (which SETTINGS identifiers and values,
in which order; the WINDOW_UPDATE on stream 0 and where it sits; how END_STREAM was carried).
"""

import json
import select
import socket
import ssl
import sys
import time

PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'

FRAME_TYPES = {
    0x0: 'DATA',
    0x1: 'HEADERS',
    0x2: 'PRIORITY',
    0x3: 'RST_STREAM',
    0x4: 'SETTINGS',
    0x5: 'PUSH_PROMISE',
    0x6: 'PING',
    0x7: 'GOAWAY',
    0x8: 'WINDOW_UPDATE',
    0x9: 'CONTINUATION',
}

FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1

# How many non-DATA frames a tap keeps (DATA frames are only counted): bounds memory.
MAX_RECORDED_FRAMES = 256


def emit(obj, out=None):
    """One JSON object on one line, flushed at once (the test reads line by line)."""
    line = json.dumps(obj, separators=(',', ':'), sort_keys=False)
    stream = out or sys.stdout
    stream.write(line + '\n')
    stream.flush()


class FrameTap:
    """Incremental parser of the raw frames one side sends (RFC 9113 section 4.1)."""

    def __init__(self, expect_preface):
        self.preface_pending = len(PREFACE) if expect_preface else 0
        self.preface_seen = bytearray()
        self.preface_ok = None if expect_preface else True
        self.buf = bytearray()
        self.skip = 0  # DATA payload bytes still to pass over
        self.frames = []  # non-DATA frames, in order, with their position among all frames
        self.frame_count = 0
        self.data_frames = 0
        self.data_bytes = 0
        # Per stream: how END_STREAM arrived: {'type': 'DATA'|'HEADERS', 'length', 'index'}.
        self.end_stream = {}
        self.headers_frames = {}  # stream id -> HEADERS frames received on it (>1 means trailers)
        self.first_data_index = None

    def feed(self, data):
        mv = memoryview(data)
        if self.preface_pending:
            take = min(self.preface_pending, len(mv))
            self.preface_seen += mv[:take]
            self.preface_pending -= take
            mv = mv[take:]
            if self.preface_pending == 0:
                self.preface_ok = bytes(self.preface_seen) == PREFACE
        while len(mv):
            if self.skip:
                take = min(self.skip, len(mv))
                self.skip -= take
                mv = mv[take:]
                continue
            need = 9 - len(self.buf) if len(self.buf) < 9 else 0
            if need:
                self.buf += mv[:need]
                mv = mv[need:]
                if len(self.buf) < 9:
                    return
            length = int.from_bytes(self.buf[0:3], 'big')
            ftype = self.buf[3]
            flags = self.buf[4]
            stream = int.from_bytes(self.buf[5:9], 'big') & 0x7FFFFFFF
            if ftype == 0x0:
                self.frame_count += 1
                self.data_frames += 1
                self.data_bytes += length
                if self.first_data_index is None:
                    self.first_data_index = self.frame_count - 1
                if flags & FLAG_END_STREAM:
                    self.end_stream.setdefault(
                        stream, {'type': 'DATA', 'length': length, 'index': self.frame_count - 1}
                    )
                self.buf = bytearray()
                self.skip = length
                continue
            have = len(self.buf) - 9
            if have < length:
                self.buf += mv[: length - have]
                mv = mv[length - have:]
                if len(self.buf) - 9 < length:
                    return
            payload = bytes(self.buf[9:9 + length])
            self.buf = bytearray()
            self._record(ftype, flags, stream, payload)

    def _record(self, ftype, flags, stream, payload):
        index = self.frame_count
        self.frame_count += 1
        if ftype == 0x1:
            self.headers_frames[stream] = self.headers_frames.get(stream, 0) + 1
            if flags & FLAG_END_STREAM:
                self.end_stream.setdefault(stream, {'type': 'HEADERS', 'length': len(payload), 'index': index})
        if len(self.frames) >= MAX_RECORDED_FRAMES:
            return
        f = {
            'index': index,
            'type': FRAME_TYPES.get(ftype, '0x%x' % ftype),
            'flags': flags,
            'stream': stream,
            'length': len(payload),
        }
        if ftype == 0x4:
            f['ack'] = bool(flags & FLAG_ACK)
            f['settings'] = [
                [int.from_bytes(payload[i:i + 2], 'big'), int.from_bytes(payload[i + 2:i + 6], 'big')]
                for i in range(0, len(payload) - len(payload) % 6, 6)
            ]
        elif ftype == 0x8 and len(payload) >= 4:
            f['increment'] = int.from_bytes(payload[0:4], 'big') & 0x7FFFFFFF
        elif ftype == 0x3 and len(payload) >= 4:
            f['code'] = int.from_bytes(payload[0:4], 'big')
        elif ftype == 0x7 and len(payload) >= 8:
            f['last_stream'] = int.from_bytes(payload[0:4], 'big') & 0x7FFFFFFF
            f['code'] = int.from_bytes(payload[4:8], 'big')
        self.frames.append(f)

    def report(self):
        return {
            'preface_ok': self.preface_ok,
            'frames': self.frames,
            'frame_count': self.frame_count,
            'data_frames': self.data_frames,
            'data_bytes': self.data_bytes,
            'first_data_index': self.first_data_index,
            'end_stream': {str(k): v for k, v in sorted(self.end_stream.items())},
            'headers_frames': {str(k): v for k, v in sorted(self.headers_frames.items())},
        }


def tls_context(server, bundle, cert, key, alpn=('h2',)):
    """Mutual TLS 1.3 as HBONE wants it: client certificate required, chain checked against the
    bundle, ALPN h2. Hostnames are not checked: the SPIFFE URI SAN is, by the caller."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    if not server:
        ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=bundle)
    ctx.load_cert_chain(certfile=cert, keyfile=key)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def uri_sans(sock):
    """The URI SANs of the verified peer leaf, in certificate order."""
    cert = sock.getpeercert() or {}
    return [v for (k, v) in cert.get('subjectAltName', ()) if k == 'URI']


def tls_facts(sock):
    cipher = sock.cipher()
    return {
        'version': sock.version(),
        'cipher': cipher[0] if cipher else None,
        'alpn': sock.selected_alpn_protocol(),
    }


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()

    def expired(self):
        return self.left() <= 0


class Stalled(Exception):
    """Bytes waited to be sent and the peer took none for io_timeout seconds."""


class Pump:
    """Moves bytes both ways on a non-blocking TLS socket, never blocking on one direction.

    A peer that blocks in sendall() while the other side also writes deadlocks as soon as both
    TCP send buffers fill: real HTTP/2 stacks (node's, Rust's h2) stop reading while their own
    writes are stuck. So we queue what h2 produces and write only what the socket takes, reading
    all the while. `backlog` lets callers stop producing DATA while the queue is long.
    """

    SEND_SLICE = 64 * 1024
    RECV_SIZE = 1 << 20

    def __init__(self, sock, io_timeout):
        self.sock = sock
        self.io_timeout = io_timeout
        self.out = bytearray()
        self.last_write = time.monotonic()
        sock.setblocking(False)

    @property
    def backlog(self):
        return len(self.out)

    def queue(self, data):
        if data:
            if not self.out:
                self.last_write = time.monotonic()
            self.out += data

    def step(self, timeout):
        """Writes what it can, then reads once if there is something: the bytes read, b'' at end
        of file, or None. Raises Stalled, ssl.SSLError or OSError."""
        if self.sock.pending():
            readable, writable = True, bool(self.out)
        else:
            r, w, _ = select.select([self.sock], [self.sock] if self.out else [], [], max(0.0, timeout))
            readable, writable = bool(r), bool(w)
        if writable:
            try:
                n = self.sock.send(self.out[: self.SEND_SLICE])
                if n:
                    del self.out[:n]
                    self.last_write = time.monotonic()
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        if self.out and time.monotonic() - self.last_write > self.io_timeout:
            raise Stalled('the peer took none of our %d queued bytes for %.1f s' % (len(self.out), self.io_timeout))
        if not readable:
            return None
        try:
            return self.sock.recv(self.RECV_SIZE)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except ssl.SSLZeroReturnError:
            return b''

    def drain(self, seconds):
        """Best effort: sends what is queued (e.g. a last END_STREAM or GOAWAY) within `seconds`."""
        deadline = time.monotonic() + seconds
        while self.out and time.monotonic() < deadline:
            try:
                self.step(0.05)
            except (Stalled, ssl.SSLError, OSError):
                return


def error_text(err):
    return '%s: %s' % (type(err).__name__, err)


def close_quietly(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
