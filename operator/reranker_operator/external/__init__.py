"""External endpoints (Mac minis and other machines outside the cluster): the pure rules for
addresses, hysteresis and EndpointSlices (``endpoints``), the /health probe (``probe``), and the
status each probe writes (``status``)."""
