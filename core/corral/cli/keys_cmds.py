"""``corral keys add|ls|rm``: the server's API keys in ``CORRAL_HOME/keys`` (stored as SHA-256 only)."""

from __future__ import annotations

import click

from corral.cli.base import emit_json, json_option, table

SCOPE_HELP = "full: everything; inference: run models and read status, not load, unload, pull or delete."


@click.group("keys")
def keys_group() -> None:
    """Manage the server's API keys (CORRAL_HOME/keys; a running server picks changes up)."""


@keys_group.command("add")
@click.argument("name")
@click.option("--scope", type=click.Choice(["full", "inference"]), default="full", show_default=True,
              help=SCOPE_HELP)
@json_option
def keys_add(name, scope, as_json) -> None:
    """Create a key called NAME and print it (once: only its hash is kept)."""
    from corral.keys import add_key

    key, secret = add_key(name, scope)
    if as_json:
        emit_json({"name": key.name, "scope": key.scope, "key": secret})
        return
    click.echo(secret)
    click.echo(f"Added key {key.name!r} ({key.scope}). It is shown only now; clients send it as "
               f"Authorization: Bearer KEY.", err=True)


@keys_group.command("ls")
@json_option
def keys_ls(as_json) -> None:
    """List the keys the server accepts: the keys file, CORRAL_API_KEY and CORRAL_API_KEYS."""
    from corral.keys import list_keys

    keys = list_keys()
    if as_json:
        emit_json([{"name": k.name, "scope": k.scope, "source": k.source} for k in keys])
        return
    if not keys:
        click.echo("No API key: the server answers anyone who can reach it (keep it on 127.0.0.1).")
        return
    table([(k.name, k.scope, k.source) for k in keys], ["NAME", "SCOPE", "SOURCE"])


@keys_group.command("rm")
@click.argument("name")
@json_option
def keys_rm(name, as_json) -> None:
    """Remove the key NAME from the keys file."""
    from corral.keys import remove_key

    key = remove_key(name)
    if as_json:
        emit_json({"removed": key.name})
        return
    click.echo(f"Removed key {key.name!r}.")


COMMANDS = (keys_group,)
