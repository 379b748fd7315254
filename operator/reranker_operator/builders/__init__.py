"""Pure builders: a Reranker (spec + resolved profile) -> the manifests of its children.

Nothing here talks to the API; ``kube`` sends what these return, by server-side apply.
``children.desired_children`` is the one entry, fed by one ``BuildInput``; a module per kind of
child: ``deployment``, ``scaling`` (HPA, ScaledObject, PDB), ``network`` (Service,
NetworkPolicy), ``model_cache`` (claim, loader Job), ``fleet`` (the fleet-size ConfigMap).
"""
