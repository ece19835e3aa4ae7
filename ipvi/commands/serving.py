"""CLI commands of the serving stage: ``ipvi serve`` and ``ipvi keys add|list|revoke``."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import typer

from ipvi.commands.context import emit_json, get_config, get_engine, info
from ipvi.errors import IpviError

REPO_ROOT = Path(__file__).resolve().parents[2]

keys_app = typer.Typer(help="Manage the service's API keys.", no_args_is_help=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = typer.Option(None, help="Address to bind (default serving.host: loopback)."),
    port: int = typer.Option(None, help="Port (default serving.port)."),
    model_version: str = typer.Option(
        None, "--model-version", help="Serve this model version instead of the champion alias."
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow a non-loopback address without TLS."
    ),
    ssl_certfile: Path = typer.Option(None, "--ssl-certfile", help="TLS certificate (PEM)."),
    ssl_keyfile: Path = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM)."),
) -> None:
    """Start the decision-support service (BentoML) on loopback unless told otherwise."""
    settings = get_config().serving
    host = host or settings.host
    port = port or settings.port
    tls = ssl_certfile is not None or ssl_keyfile is not None
    if tls and (ssl_certfile is None or ssl_keyfile is None):
        raise IpviError("TLS needs both --ssl-certfile and --ssl-keyfile")
    for option, path in (("--ssl-certfile", ssl_certfile), ("--ssl-keyfile", ssl_keyfile)):
        if path is not None and not path.is_file():
            raise IpviError(f"{option}: file not found: {path}")
    if not _is_loopback(host) and not tls and not insecure:
        raise IpviError(
            f"refusing to serve on {host} without TLS: give --ssl-certfile and --ssl-keyfile, "
            "or --insecure if a TLS proxy sits in front"
        )
    if model_version:
        os.environ["IPVI_SERVING_MODEL_VERSION"] = model_version
    # The service's workers read the same configuration file.
    from ipvi.commands import context

    if context._config_path:
        os.environ["IPVI_CONFIG"] = str(Path(context._config_path).resolve())

    # Refuse to start (one clear line, exit 2) without a usable model, before spawning workers.
    from serving.model import load_scorer

    config = get_config()
    load_scorer(
        config.tracking_uri, config.mlflow.model_name, model_version or settings.model_alias
    )
    info(f"serving on {'https' if tls else 'http'}://{host}:{port} (docs at /docs)")
    # Hand over to `bentoml serve` from the project root (the bentofile names the service), so
    # `ipvi serve` and `bentoml serve` start exactly the same server.
    from serving.launch import serve_command

    command = serve_command(host, port, settings.keep_alive_seconds)
    if tls:
        command += ["--ssl-certfile", str(ssl_certfile), "--ssl-keyfile", str(ssl_keyfile)]
    os.chdir(REPO_ROOT)
    os.execv(command[0], command)


@keys_app.command("add")
def keys_add(
    name: str = typer.Argument(..., help="A name for the key (recorded in the audit log)."),
    role: str = typer.Option(
        ..., "--role", help="scoring, advocate, admin or reviewer (the /review pages)."
    ),
) -> None:
    """Create a key; it is printed once, alone, as the last line of standard output."""
    from ipvi.db import session_scope
    from serving.auth import add_key

    with session_scope(get_engine()) as session:
        key = add_key(session, name=name, role=role)
    info(f"created key {name!r} with role {role}; it is shown once, store it now")
    print(key)


@keys_app.command("list")
def keys_list(
    as_json: bool = typer.Option(False, "--json", help="One JSON line per key."),
) -> None:
    """List keys: name, role, created, revoked (never the key or its hash)."""
    from ipvi.db import session_scope
    from serving.auth import list_keys

    with session_scope(get_engine()) as session:
        keys = list_keys(session)
    for key in keys:
        if as_json:
            emit_json(key)
        else:
            state = f"revoked {key['revoked_at']:%Y-%m-%d %H:%M}" if key["revoked_at"] else "active"
            print(f"{key['name']}\t{key['role']}\t{key['created_at']:%Y-%m-%d %H:%M}\t{state}")
    if not keys:
        info("no keys yet: create one with `ipvi keys add NAME --role scoring`")


@keys_app.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="The key's name.")) -> None:
    """Revoke a key; running services refuse it within serving.key_cache_seconds."""
    from ipvi.db import session_scope
    from serving.auth import revoke_key

    with session_scope(get_engine()) as session:
        revoke_key(session, name=name)
    seconds = get_config().serving.key_cache_seconds
    info(f"revoked key {name!r}; running services refuse it within {seconds:g} s")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ipvi app."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
