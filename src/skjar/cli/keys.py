"""``skjar keygen`` and ``skjar sign``: Ed25519 keys and signed jars."""

from __future__ import annotations

import click

from .. import api, signing


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
def keygen(path: str, force: bool) -> None:
    """Create an Ed25519 key pair: PATH (private, mode 0600) and PATH.pub.pem (public).

    \b
    Example:
      skjar keygen ci-signer.pem
      skjar sign model.skjar --key ci-signer.pem
      SKJAR_VERIFY_KEYS=ci-signer.pub.pem python serve.py
    """
    import os

    if os.path.exists(path) and not force:
        raise click.UsageError(f"{path} exists; pass --force to overwrite it")
    key = signing.generate_key()
    pub = signing.save_key(key, path)
    fp = signing.fingerprint(signing.raw_public(key.public_key()))
    click.echo(f"private key: {path}\npublic key:  {pub}\nfingerprint: {fp}")


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--key",
    "key",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Private key (PEM).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the signed jar here instead of in place.",
)
def sign(model: str, key: str, output: str | None) -> None:
    """Sign MODEL with an Ed25519 private key (after checking its integrity).

    \b
    Example:
      skjar sign model.skjar --key ci-signer.pem
    """
    fp = api.sign(model, key, output=output)
    click.echo(f"signed {output or model} with key {fp}")
