"""llama.cpp's own OpenAI-compatible HTTP server on loopback, through ``xllamacpp``.

The tests' real server (``tests/providers/conftest.py``, fixture ``llama_server``), run as
a child process::

    python tests/llama_http_server.py --model M.gguf --ready-file F [--port 0]

It serves ``/v1/models``, ``/v1/chat/completions`` (streamed or not), ``/health``... on
127.0.0.1 (``--port 0``: a free port chosen by the system, so no port is ever raced for),
with no API key. Once llama.cpp's main loop answers, the base URL
(``http://127.0.0.1:PORT/v1``) is written to ``--ready-file`` (atomically: written to a
temporary name, then renamed). SIGTERM or SIGINT stops the engine (dropping the last
reference to ``xllamacpp.Server`` joins its threads and closes the listener) and exits 0.

Only ``xllamacpp`` is used (never llama-cpp-python), as in :mod:`rlhf_desktop.providers.local`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="the GGUF file")
    parser.add_argument("--ready-file", required=True, type=Path,
                        help="where the base URL is written once the server answers")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--alias", default="smollm2", help="the model id /v1/models lists")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=1, help="llama.cpp slots")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(args.model)
    params.model_alias = {args.alias}
    params.n_ctx = args.n_ctx
    params.n_parallel = args.parallel
    params.kv_unified = True  # the slots share n_ctx (as llama-server does by default)
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.ui = False
    params.n_threads_http = 4
    params.endpoint_metrics = True
    server = xllamacpp.Server(params)
    # Server() returns just before llama.cpp's main loop starts; a metrics request is answered
    # by that loop, so after it the server both serves and can be stopped at any time
    # (a stop before the loop starts would be lost: see rlhf_desktop/providers/local.py).
    server.handle_metrics()
    address = str(server.listening_address).rstrip("/")
    tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
    tmp.write_text(f"{address}/v1\n", encoding="utf-8")
    os.replace(tmp, args.ready_file)
    print(f"llama.cpp server listening on {address}", flush=True)

    while not stop.wait(0.5):
        pass
    print("stopping", flush=True)
    del server  # the last reference: ~Server stops the main loop and the HTTP listener
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
