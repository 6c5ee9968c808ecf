"""Talking to a model: the OpenAI-compatible server, web UI, feedback store, moderation and terminal chat."""
