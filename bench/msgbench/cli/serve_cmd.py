"""``msgbench serve``: run msgbench's servers as programs of their own.

``msgbench serve chat`` is the WebSocket chat server the ``ws`` target
benchmarks (see :mod:`msgbench.targets.ws.chat_server`). A server that cannot
start (port in use, bridge unreachable) prints one line and exits 2; one
that loses its bridge while running exits 1.
"""

from __future__ import annotations

import logging
import sys

import click

from msgbench.api.target import secret_env_name

EXIT_FAILED = 1
EXIT_USAGE = 2
MAX_SIZE = 1024**3
"""Largest --max-size / --max-client-buffer (the chat server's MAX_CLIENT_BUFFER; the
server module is not imported before it is needed)."""
REDIS_URL_ENV = secret_env_name("--redis-url")
"""Where --redis-url may come from instead (the chat server's run passes it so)."""


def _size(text: str) -> int:
    """``65536``, ``64k``, ``4M`` (binary multiples) -> bytes."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    mult = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(t[-1:], 1)
    digits = t[:-1] if mult > 1 else t
    try:
        value = int(float(digits) * mult)
    except (ValueError, OverflowError):  # "inf", "1e999"
        raise click.BadParameter(f"expected a size like 65536, 64k or 4M, got {text!r}") from None
    if value <= 0:
        raise click.BadParameter(f"must be positive, got {text!r}")
    if value > MAX_SIZE:
        raise click.BadParameter(f"at most {MAX_SIZE // 1024**2}M, got {text!r}")
    return value


class _Size(click.ParamType):  # type: ignore[type-arg, unused-ignore]
    name = "size"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return _size(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


@click.group("serve")
def serve() -> None:
    """Run one of msgbench's servers in the foreground."""


@serve.command("chat")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback unless you mean otherwise).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="TCP port for the page (/), the WebSocket (/ws) and /stats.")
@click.option("--bridge", type=click.Choice(["none", "redis", "zmq"]), default="none",
              show_default=True, help="How several servers share messages.")
@click.option("--redis-url", default=None, envvar=REDIS_URL_ENV,
              help="Redis for --bridge redis (redis://[:password@]host:port); or set "
                   f"{REDIS_URL_ENV}, which keeps a password out of `ps`.")
@click.option("--zmq-bind", default=None,
              help="PUB endpoint of this server for --bridge zmq (tcp://127.0.0.1:PORT).")
@click.option("--zmq-peer", "zmq_peers", multiple=True,
              help="PUB endpoint of another server (repeat for each peer).")
@click.option("--server-id", default=None,
              help="Name in /stats and on bridged messages (default host:port).")
@click.option("--max-size", type=_Size(), default="64k", show_default=True,
              help="Largest message a client may send; bigger ones close it with 1009.")
@click.option("--max-client-buffer", type=_Size(), default="4M", show_default=True,
              help="Bytes waiting for a client beyond which it is disconnected (1008).")
@click.option("--allow-origin", "allow_origins", multiple=True,
              help="Web origin (https://chat.example.com) whose pages may use the WebSocket "
                   "besides this server's own page; repeat for more, '*' for any. Clients "
                   "without an Origin header (not browsers) are always let in.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def chat(host: str, port: int, bridge: str, redis_url: str | None, zmq_bind: str | None,
         zmq_peers: tuple[str, ...], server_id: str | None, max_size: int,
         max_client_buffer: int, allow_origins: tuple[str, ...], log_level: str) -> None:
    """The WebSocket chat server: a page at /, broadcast within rooms at /ws?room=NAME."""
    import uvloop

    from msgbench.targets.ws.chat_server import ServerConfig, StartError, run

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # websockets logs every handshake failure with a traceback at error level; our own
    # connect / disconnect lines say what matters.
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    if bridge == "redis" and not redis_url:
        _fail("--bridge redis needs --redis-url redis://host:port")
    if bridge == "zmq" and not zmq_bind:
        _fail("--bridge zmq needs --zmq-bind tcp://127.0.0.1:PORT")
    config = ServerConfig(
        host=host, port=port, server_id=server_id or f"{host}:{port}", bridge=bridge,
        redis_url=redis_url, zmq_bind=zmq_bind, zmq_peers=zmq_peers, max_size=max_size,
        max_client_buffer=max_client_buffer, allow_origins=allow_origins,
    )
    try:
        failure = uvloop.run(run(config))
    except StartError as exc:
        _fail(str(exc))
        return
    except KeyboardInterrupt:
        return
    if failure:
        click.echo(f"msgbench serve chat: {failure}", err=True)
        sys.exit(EXIT_FAILED)


def _fail(message: str) -> None:
    click.echo(f"msgbench: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    # ``python -m msgbench.cli.serve_cmd chat ...`` is ``msgbench serve chat ...`` without
    # loading every target for ``msgbench run``'s options: the ws target starts servers
    # this way, a second faster.
    serve(prog_name="msgbench serve")
