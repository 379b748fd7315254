"""What the server and the operator agree on, in one place both import.

They never import each other (an import-linter contract); this package imports neither:
- ``api``: the API group, version and kinds;
- ``endpoint``: the RerankerEndpoint and Lease a ``reranker-server --register`` applies and the
  operator reads;
- ``server_env``: the environment variables the operator sets on server pods;
- ``health``: the paths and ``/health`` keys the probes read;
- ``termination``: the server's last words on a fatal exit, which the operator classifies;
- ``kubeconfig``: credentials (in-cluster, else kubeconfig) -> an HTTP client for the API server.
"""
