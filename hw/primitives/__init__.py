"""Small parts shared by the blocks: block RAM read ports, a stream register slice, a registered
multiplier."""
