"""ctrpy's runtime: all logic lives here. Never imports click or rich."""
