"""Test helpers: a tiny on-disk causal LM and a local OpenAI-compatible server."""
