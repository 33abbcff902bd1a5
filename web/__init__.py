"""roomwire's browser client as package data: pages, ES modules and the npm socket.io-client.

The folder holds no Python beyond this file; `WEB_DIR` is where the server finds the pages,
both in a checkout (an editable install) and in an installed wheel.
"""

from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent
