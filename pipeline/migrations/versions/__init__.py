"""One module per schema revision, in a single line of history (a test checks it stays linear)."""
