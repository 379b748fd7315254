"""Layer 7, core: what every layer may use. Settings, Prometheus collectors, domain problems."""
