"""``stt bench`` against a peer: the server (``--serve``) and the client (``--to``)."""
