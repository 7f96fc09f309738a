"""Call-outcome webhooks: target checks (no SSRF), signing, the durable outbox and its delivery."""
