"""The ``operator`` autoscaling engine: read the fleet's load (``fleet_load``), decide
(``decision``, pure), and set the Deployment's replicas (``loop``)."""
