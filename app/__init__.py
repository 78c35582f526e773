"""The serving app: loads artifacts from models/ through the artifact contract and serves them over REST."""
