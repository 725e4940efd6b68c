"""Run the reference server under uvicorn with Kubernetes-friendly shutdown.

On SIGTERM the pod first reports not ready (``/api/system/ready`` answers 503)
and keeps serving for ``shutdown_delay`` seconds, so endpoints and kube-proxy
drop it while it still answers; then uvicorn closes the listener, waits for
in-flight requests (up to ``drain_timeout``) and the process exits 0.
A second SIGTERM or SIGINT skips the delay.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import uvicorn

from yuxi_k8s.server.app import MAX_BODY_BYTES, ServerState, WriteAccess, create_app

log = logging.getLogger("yuxi_k8s.server")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState, shutdown_delay: float) -> None:
        super().__init__(config)
        self.state = state
        self.shutdown_delay = shutdown_delay

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded in _captured_signals: a drained shutdown is a clean exit (0), not a death by signal.
        if self.state.draining or self.shutdown_delay <= 0:
            self.should_exit = True
            return
        self.state.draining = True
        log.info(
            "signal %s: not ready now, serving %.1fs more, then draining %d in-flight request(s)",
            signal.Signals(sig).name,
            self.shutdown_delay,
            self.state.in_flight,
        )
        timer = threading.Timer(self.shutdown_delay, self._stop)
        timer.daemon = True
        timer.start()

    def _stop(self) -> None:
        log.info("closing the listener; %d request(s) in flight", self.state.in_flight)
        self.should_exit = True


def serve(
    host: str,
    port: int,
    shutdown_delay: float,
    drain_timeout: float,
    access: WriteAccess | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(access=access, max_body_bytes=max_body_bytes)
    state: ServerState = app.state.server
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=int(drain_timeout),
        access_log=False,
        log_level="info",
        lifespan="on",
    )
    server = DrainingServer(config, state, shutdown_delay)
    log.info(
        "reference server %s on %s:%d (CONFIG_MODE=%s; writes: %s)",
        state.pod,
        host,
        port,
        state.settings.mode,
        state.access.describe,
    )
    server.run()
    return 0
