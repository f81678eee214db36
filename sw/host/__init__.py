"""The host side of a board: byte transports and the protocol client (:class:`BoardLink`)."""
