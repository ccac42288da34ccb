"""Search spaces: turn named categorical decisions into architecture specs. Pure Python."""
