"""Vendors only: one module per provider (or family), registered by the stage that uses it.

Offline: ``template`` (script), ``cards`` (scenes), ``tts``/``espeak`` (voice), ``outbox`` (publish).
Network, each an ``stages.http.HttpProvider``: ``llm`` (OpenAI-compatible chat), ``cloud_tts``
(ElevenLabs, OpenAI speech), ``pexels``, ``webhook``, ``youtube``. Trend sources: ``reddit``,
``hackernews``, ``google_trends``. What they share (HTTP, chains, text, payload reading) sits beside
the stage base in ``stages/``; each stage's protocol and registry are in the stage's module.
"""
