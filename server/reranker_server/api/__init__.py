"""Layer 2, api: HTTP only. The app factory, routes, request and response shapes, API keys, and
self-registration with a cluster; domain problems from ``serving`` become HTTP answers here."""
