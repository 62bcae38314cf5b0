"""controller.certs: a CA and a serving certificate that TLS clients actually accept."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

from cryptography import x509

from controller.certs import make_ca, make_serving_cert, write_webhook_certs


def test_serving_cert_is_signed_by_the_ca_and_names_the_hosts() -> None:
    ca = make_ca()
    serving = make_serving_cert(ca, hosts=["webhook.ns.svc", "127.0.0.1"])
    cert = x509.load_pem_x509_certificate(serving.cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["webhook.ns.svc"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


async def test_a_tls_handshake_with_the_written_files_succeeds(tmp_path: Path) -> None:
    ca, cert, key = write_webhook_certs(tmp_path, hosts=["localhost"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cafile=str(ca))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                   server_hostname="localhost")
    assert await reader.read() == b"ok"
    writer.close()
    server.close()
    await server.wait_closed()
