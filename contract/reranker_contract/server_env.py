"""Environment variables the operator sets on server pods.

``SERVER_SETTINGS`` are read by ``reranker_server.settings.Settings`` (a test checks every name
against its fields, so renaming a setting can't silently stop the operator's value from landing);
``LIBRARY_ENV`` are read by the libraries underneath (torch, OpenMP, MKL, Hugging Face).
"""

from __future__ import annotations

HOST = "HOST"
PORT = "PORT"
MODEL_NAME = "MODEL_NAME"
MODEL_REVISION = "MODEL_REVISION"
DTYPE = "DTYPE"
ENGINE = "ENGINE"
DEVICE_PREFERENCE = "DEVICE_PREFERENCE"
BATCH_SIZE = "BATCH_SIZE"
MAX_BATCH_TOKENS = "MAX_BATCH_TOKENS"
MAX_PARALLEL_REQUESTS = "MAX_PARALLEL_REQUESTS"
MAX_QUEUE_SIZE = "MAX_QUEUE_SIZE"
CACHE_SIZE = "CACHE_SIZE"
SHUTDOWN_DELAY = "SHUTDOWN_DELAY"
SHUTDOWN_GRACE = "SHUTDOWN_GRACE"
TORCH_THREADS = "TORCH_THREADS"
ENABLE_DISTRIBUTED = "ENABLE_DISTRIBUTED"
REDIS_URL = "REDIS_URL"
REDIS_TTL_SECONDS = "REDIS_TTL_SECONDS"
API_KEY_FILE = "API_KEY_FILE"
TLS_CERT_FILE = "TLS_CERT_FILE"
TLS_KEY_FILE = "TLS_KEY_FILE"

HF_HOME = "HF_HOME"
HF_HUB_OFFLINE = "HF_HUB_OFFLINE"  # set with a model cache: the pods never ask the hub
HF_TOKEN = "HF_TOKEN"  # gated models: on the loader Job only, from spec.model.tokenSecretRef
HF_ENDPOINT = "HF_ENDPOINT"  # a hub mirror: spec.model.hubEndpoint, else the chart's hub.endpoint
OMP_NUM_THREADS = "OMP_NUM_THREADS"
MKL_NUM_THREADS = "MKL_NUM_THREADS"

SERVER_SETTINGS = frozenset(
    {HOST, PORT, MODEL_NAME, MODEL_REVISION, DTYPE, ENGINE, DEVICE_PREFERENCE, BATCH_SIZE, MAX_BATCH_TOKENS,
     MAX_PARALLEL_REQUESTS, MAX_QUEUE_SIZE, CACHE_SIZE, SHUTDOWN_DELAY, SHUTDOWN_GRACE, TORCH_THREADS,
     ENABLE_DISTRIBUTED, REDIS_URL, REDIS_TTL_SECONDS, API_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE}
)  # fmt: skip
LIBRARY_ENV = frozenset({HF_HOME, HF_HUB_OFFLINE, HF_TOKEN, HF_ENDPOINT, OMP_NUM_THREADS, MKL_NUM_THREADS})

# Set from spec fields, so spec.env may not override them (the operator refuses such a spec).
RESERVED = frozenset(
    {HOST, PORT, MODEL_NAME, MODEL_REVISION, SHUTDOWN_DELAY, SHUTDOWN_GRACE, HF_HOME, ENABLE_DISTRIBUTED, REDIS_URL,
     API_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE}
)  # fmt: skip

# The DTYPE values ONNX Runtime runs: ENGINE=auto picks it for an encoder on a CPU when DTYPE is
# one of these (DTYPE=auto is float32 on CPUs without native bf16), and the operator's loader Job
# makes these graphs for such pods.
ONNX_RUNTIME_DTYPES = ("float32", "int8")
