"""The engine: the method in plain torch (no Lightning, no configuration). Layers and their
keys (``layer``), the linear associative memory (``memory``), requests and their goals
(``request``, ``goal``), key statistics as a service (``stats``), the ways of editing
(``methods``) and the edit files they produce (``edit``)."""
