"""The optional peers (`pip install -e ".[bench]"`): each module, or None and why it is missing.

FASTDL_BENCH_PEERS=0 leaves them out of this process (their benchmarks skip), so that fastdl's
contenders run with the OpenMP runtime as fastdl alone loads it; the peers then run in a process
of their own (`-k torch`), and benchmarks/ratios.py reports the two runs together.
"""

import os

PEERS_ENV = "FASTDL_BENCH_PEERS"
_left_out = os.environ.get(PEERS_ENV, "").strip().lower() in ("0", "false", "no", "off")
_LEFT_OUT = f"left out of this process ({PEERS_ENV}=0): run it in a process of its own"

torch = faiss = None
if _left_out:
    TORCH_MISSING = FAISS_MISSING = _LEFT_OUT
else:
    try:
        import torch
    except ImportError as exc:
        TORCH_MISSING = f"torch is not installed ({exc}); `pip install 'torch==2.13.0'` (CPU build)"
    else:
        TORCH_MISSING = None

    try:
        import faiss
    except ImportError as exc:
        FAISS_MISSING = f"faiss is not installed ({exc}); `pip install faiss-cpu`"
    else:
        FAISS_MISSING = None
