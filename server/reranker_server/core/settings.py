"""Server configuration: one pydantic-settings model, read from the environment.

Every field is an environment variable of the same name in upper case (the predecessor's names
kept: ``PORT``, ``MAX_PARALLEL_REQUESTS``, ``BATCH_SIZE``, ...) and a ``reranker-server`` flag
in kebab case; the flag wins over the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DevicePreference = Literal["auto", "cuda", "mps", "cpu", "mlx"]
DType = Literal["auto", "float32", "float16", "bfloat16", "int8"]
UseMlx = Literal["auto", "true", "false"]
Engine = Literal["auto", "pytorch", "onnxruntime"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", populate_by_name=True)

    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")

    model_name: str | None = Field(
        None,
        description="Hugging Face model id or local directory. Unset: the embedded all-MiniLM-L6-v2.",
    )
    model_revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to load.")
    reranker_template: Literal["auto", "qwen3", "bge-gemma"] = Field(
        "auto",
        description="Prompt template of an LLM reranker (a causal LM scored by yes/no logits); "
        "auto recognises the family from its config and tokenizer.",
    )
    max_input_length: int | None = Field(
        None, ge=8, description="Cap on tokens per (query, document) pair; default: the model's maximum."
    )
    dtype: DType = Field(
        "auto",
        description="Inference dtype. auto: float16 on GPUs when its ranking agrees with float32; on CPUs "
        "the fastest of float32, int8 and (with native bf16) bfloat16, each on its fastest engine, timed at "
        "the first start and kept per machine, that ranks like float32. int8: CPU only.",
    )
    device_preference: DevicePreference = Field("auto", description="Where to run: auto|cuda|mps|cpu|mlx.")
    engine: Engine = Field(
        "auto",
        description="What runs the model on CPUs. auto: ONNX Runtime for encoders (cross-encoders, bi-encoders) "
        "in float32 or int8 when it is installed, else PyTorch; onnxruntime: ONNX Runtime or fail; pytorch: PyTorch.",
    )
    onnx_cache_dir: Path | None = Field(
        None,
        description="Where ONNX Runtime's exported graphs are kept, one per checkpoint, reused on restart; "
        "default $HF_HOME/reranker-onnx (the temp directory where that is read-only).",
    )
    baked_hub_cache: Path | None = Field(
        None,
        description="A read-only Hugging Face hub cache inside the image (the Dockerfile's BAKE_MODEL), "
        "searched for MODEL_NAME after HF_HOME's; it stays visible when HF_HOME points elsewhere.",
    )
    use_mlx: UseMlx = Field("auto", description="MLX on Apple silicon: auto|true|false.")
    mlx_quantize_bits: Literal[0, 4, 8] = Field(
        0, description="MLX only: quantize linear weights to 4 or 8 bits (0 = off)."
    )

    batch_size: int = Field(32, ge=1, description="Most sequences in one forward pass.")
    max_batch_tokens: int = Field(
        16384, ge=64, description="Most padded tokens (sequences x longest) in one forward pass."
    )
    max_parallel_requests: int = Field(64, ge=1, description="Requests scored at once; their pairs share batches.")
    max_queue_size: int = Field(256, ge=0, description="Requests waiting for a slot; beyond it the server answers 429.")
    max_documents_per_request: int = Field(1000, ge=1, description="Most documents in one request (413).")
    max_text_chars: int = Field(100_000, ge=1, description="Most characters in the query or in one document (413).")
    long_documents: Literal["truncate", "chunk"] = Field(
        "truncate",
        description="A document longer than the model takes: truncate it, or chunk it (scored in windows whose "
        "raw scores are pooled); a request's long_documents wins.",
    )
    chunk_overlap: int = Field(64, ge=0, description="Tokens neighbouring windows share when chunking.")
    chunk_pooling: Literal["max", "mean", "first"] = Field(
        "max", description="How a chunked document's window scores become its score (raw, before the sigmoid)."
    )
    max_chunks_per_doc: int = Field(10, ge=1, description="Most windows scored per document when chunking.")
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest request body (413).")
    worker_timeout: float = Field(120.0, gt=0, description="Seconds a request may take before 504.")
    max_retries: int | None = Field(
        None,
        ge=0,
        description="Accepted for the seed's deployments and ignored: the server retries nothing itself "
        "(clients retry a 429/503 after its Retry-After; the bundled client's max_retries is its own argument).",
    )
    shutdown_delay: float = Field(
        0.0, ge=0, description="Seconds /ready reports draining on SIGTERM before the listener closes."
    )
    shutdown_grace: float = Field(30.0, ge=0, description="Seconds in-flight requests get to finish on SIGTERM.")

    cache_size: int = Field(100_000, ge=0, description="Scores kept in the in-process LRU (0 = off).")
    enable_distributed: bool = Field(False, description="Share the score cache through Redis.")
    redis_url: str | None = Field(
        None,
        description="Redis the fleet shares: the score cache (with ENABLE_DISTRIBUTED) and the rate limits' buckets.",
    )
    redis_ttl_seconds: int = Field(86_400, ge=1, description="How long shared scores live in Redis.")
    redis_timeout: float = Field(0.1, gt=0, description="Seconds a Redis call may take before scoring goes on locally.")
    redis_retry_seconds: float = Field(2.0, gt=0, description="After a Redis error, local-only for this long.")

    rate_limit_requests_per_second: float | None = Field(
        None, gt=0, description="Requests per second each API key may make, across the fleet (unset: no limit)."
    )
    rate_limit_pairs_per_second: float | None = Field(
        None, gt=0, description="(query, document) pairs per second each API key may send, across the fleet."
    )
    rate_limit_request_burst: float | None = Field(
        None, gt=0, description="Requests a key may make at once above its rate (default: one second's worth)."
    )
    rate_limit_pair_burst: float | None = Field(
        None, gt=0, description="Pairs a key may send at once above its rate (default: one second's worth)."
    )
    rate_limit_scope: str | None = Field(
        None,
        description="Servers with the same scope share a key's budget in Redis (the operator sets "
        "<namespace>/<reranker>; default: that of --register, else 'default').",
    )
    fleet_size: int = Field(1, ge=1, description="Servers sharing the limits when each enforces its own share.")
    fleet_size_file: Path | None = Field(
        None, description="A file holding the fleet's size, re-read each second (the operator's ConfigMap)."
    )

    register_endpoint: bool = Field(
        False, alias="register", description="Join a Reranker's fleet as an external endpoint (Mac minis)."
    )
    reranker: str | None = Field(None, description="With --register: the Reranker to join.")
    namespace: str = Field("default", description="With --register: the Reranker's namespace.")
    advertise_address: str | None = Field(
        None, description="With --register: HOST:PORT the cluster reaches this server at."
    )
    endpoint_name: str | None = Field(
        None, description="With --register: the RerankerEndpoint's name (default: <reranker>-<hostname>)."
    )
    lease_seconds: int = Field(30, ge=5, description="With --register: heartbeat Lease duration; renewed every third.")

    api_key: str | None = Field(
        None, description="Keys the rerank routes and /info require as 'Authorization: Bearer <key>' (comma-separated)."
    )
    api_key_file: Path | None = Field(
        None, description="A file of keys, one per line, re-read when it changes (a mounted Secret rotates)."
    )
    metrics_require_key: bool = Field(False, description="Put /metrics behind the API key too.")
    tls_cert_file: Path | None = Field(None, description="Serve HTTPS with this certificate (PEM); needs TLS_KEY_FILE.")
    tls_key_file: Path | None = Field(None, description="The certificate's private key (PEM).")

    load_retries: int = Field(
        0, ge=0, description="More tries when the model fails to load; after the last the process exits (code 1)."
    )
    load_retry_seconds: float = Field(5.0, gt=0, description="Wait before the first retry; doubled after each.")
    access_log: bool = Field(True, description="Log one line per request (method, path, status).")

    api_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes for HTTP, JSON and tokenization, feeding one engine process that owns the model, "
        "the batcher, admission and the score cache (1: one process does everything). More than the "
        "event loop of one process can carry when the model is fast (GPUs, many cores).",
    )
    torch_threads: int | None = Field(
        None, ge=1, description="CPU inference threads (torch or ONNX Runtime); default: the container's CPU quota."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")

    @model_validator(mode="after")
    def _registration_complete(self) -> Settings:
        if self.enable_distributed and not self.redis_url:
            raise ValueError("ENABLE_DISTRIBUTED needs REDIS_URL")
        if self.register_endpoint and not (self.reranker and self.advertise_address):
            raise ValueError("--register needs --reranker and --advertise-address HOST:PORT")
        if self.register_endpoint and self.api_processes > 1:
            raise ValueError("--register serves from one process: leave API_PROCESSES at 1")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE go together")
        for name in ("api_key_file", "tls_cert_file", "tls_key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name.upper()}: no such file: {path}")
        return self
