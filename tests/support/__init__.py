"""Shared test fixtures and helpers (servers, chains, Redis, Chromium, media), registered as pytest plugins."""
