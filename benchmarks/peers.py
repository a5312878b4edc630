"""The optional peers (`pip install -e ".[bench]"`): each module, or None and why it is missing."""

try:
    import torch
except ImportError as exc:
    torch = None
    TORCH_MISSING = f"torch is not installed ({exc}); `pip install 'torch==2.13.0'` (CPU build)"
else:
    TORCH_MISSING = None

try:
    import faiss
except ImportError as exc:
    faiss = None
    FAISS_MISSING = f"faiss is not installed ({exc}); `pip install faiss-cpu`"
else:
    FAISS_MISSING = None
