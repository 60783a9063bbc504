"""``corral ui``: open the web UI of the library's server, starting the server first when none runs."""

from __future__ import annotations

import click


@click.command("ui")
@click.option("--no-browser", is_flag=True, help="Print the address only; do not open a browser.")
def ui_cmd(no_browser: bool) -> None:
    """Open the web UI in a browser (starts `corral serve` in the background if none runs)."""
    import webbrowser

    from corral.api import connect_or_start

    client = connect_or_start()
    url = client.url + "/"
    click.echo(f"Corral's web UI: {url}")
    if not no_browser and not webbrowser.open(url):
        click.echo("No browser could be opened here; open the address above.", err=True)
