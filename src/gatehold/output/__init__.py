"""Output defences: hidden-content sanitiser, injection detector, secret redaction."""
