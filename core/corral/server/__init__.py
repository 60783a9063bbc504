"""The HTTP server (``corral serve``) and the client the CLI uses to reach it.

Starlette and uvicorn are imported only when an app is built or served, so CLI commands that merely look
for a running server stay light.
"""
