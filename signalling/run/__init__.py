"""Composition roots (all-in-one server, control plane, cluster processes): the only place the planes meet."""
