"""`uvicorn server.main:app` (the manifests' API command, workingDir /app) serves the reference server."""

from yuxi_k8s.server.app import create_app

app = create_app(wrap_sigterm=True)
