"""Human approval of high-impact calls: the store, sealed request state, the page, webhooks."""
