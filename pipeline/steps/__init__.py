"""The five renewal steps as plain functions over device sessions: decide (pure), then act (thin)."""
