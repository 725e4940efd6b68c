"""Small programs the end-to-end tier runs inside pods: standard library only, so any Python image runs them.

- :mod:`.loadgen`: a steady, bounded HTTP load that counts failures (failover figures);
- :mod:`.model_standin`: an OpenAI-compatible stand-in for a model provider (no real
  model can be reached from the test cluster), streaming slowly enough to see
  whether a proxy buffers; its embeddings and rerank scores come from
  :mod:`.standin_vectors` (hashed bags of words), its answers to LightRAG's prompts
  from :mod:`.standin_graph`;
- :mod:`.propagation`: writes a setting through one replica and times when every
  other replica serves it.
"""
