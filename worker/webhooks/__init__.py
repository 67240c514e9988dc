"""Webhook delivery: signing (Standard Webhooks), the address guard (SSRF), the pinned transport,
the retry schedule, the delivery task, and turning job events into deliveries."""
