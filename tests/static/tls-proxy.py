#!/usr/bin/env python3
"""TLS-terminating TCP proxy for tests/static/chroot-test.sh: listens on 127.0.0.1 with the
given certificate and forwards each connection in plain text to the fake GitHub, so the
static binary's HTTPS path (rustls, aws-lc, the CA bundle in the chroot) is exercised.

usage: tls-proxy.py CERT KEY UPSTREAM_HOST:PORT PORT_FILE
"""
import socket
import ssl
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, ctx, upstream):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        # a client that rejects our certificate ends here (the negative test)
        conn.close()
        return
    up = socket.create_connection(upstream)
    threading.Thread(target=pump, args=(up, tls), daemon=True).start()
    pump(tls, up)


def main():
    cert, key, upstream, port_file = sys.argv[1:5]
    host, port = upstream.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    with open(port_file, "w") as f:
        f.write(str(srv.getsockname()[1]))
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, ctx, (host, int(port))), daemon=True).start()


if __name__ == "__main__":
    main()
